/* Calls three kernels exported by export_kernels.py, from C, with no Python anywhere.
 *
 *   cc -O2 -I OUT_DIR examples/aot/main.c -L OUT_DIR -laot_example -Wl,-rpath,OUT_DIR -o aot_main
 *   ./aot_main RESULTS_DIR
 *
 * Inputs are generated here by a formula numpy repeats exactly (input_value); each output
 * is filled with NaN first, then written to RESULTS_DIR/<kernel>.f32 (raw float32,
 * row-major) for tests/aot to compare with numpy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "libaot_example.h"

enum { M = 200, N = 136, K = 96, D = 64, ROWS = 37 };   /* export_kernels.py's sizes */

/* element i of input `seed`: a multiple of 1/50 in [-1, 1], exact in float32 */
static float input_value(int64_t i, int seed) {
    return (float)((i * 37 + seed * 11) % 101) / 50.0f - 1.0f;
}

static float* new_input(int64_t count, int seed) {
    float* a = aligned_alloc(64, ((size_t)count * sizeof(float) + 63) / 64 * 64);
    if (!a) { perror("aligned_alloc"); exit(1); }
    for (int64_t i = 0; i < count; i++) a[i] = input_value(i, seed);
    return a;
}

static float* new_output(int64_t count) {
    float* a = new_input(count, 0);
    for (int64_t i = 0; i < count; i++) a[i] = NAN;   /* a skipped store shows */
    return a;
}

static void check(int32_t status, const char* kernel) {
    if (status != TD_STATUS_OK) {
        fprintf(stderr, "%s failed with status %d\n", kernel, (int)status);
        exit(1);
    }
}

static void save(const char* dir, const char* name, const float* a, int64_t count) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    FILE* f = fopen(path, "wb");
    if (!f || fwrite(a, sizeof(float), (size_t)count, f) != (size_t)count) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s RESULTS_DIR\n", argv[0]);
        return 2;
    }
    float *a = new_input(M * K, 1), *b = new_input(K * N, 2), *c = new_output(M * N);
    check(tensordsl_matmul(a, b, c), "matmul");
    save(argv[1], "matmul", c, M * N);

    float *x = new_input(M * N, 3), *bias = new_input(N, 4), *y = new_output(M * N);
    check(tensordsl_bias_tanh(x, bias, y), "bias_tanh");
    save(argv[1], "bias_tanh", y, M * N);

    float *rows = new_input(ROWS * D, 5), *norms = new_output(ROWS);
    check(tensordsl_row_norms(rows, norms, ROWS), "row_norms");
    save(argv[1], "row_norms", norms, ROWS);

    /* a size no array can have is refused before the kernel runs */
    if (tensordsl_row_norms(rows, norms, -1) != TD_STATUS_BAD_SIZES) {
        fprintf(stderr, "row_norms accepted n = -1\n");
        return 1;
    }
    printf("ok: matmul %dx%dx%d, bias_tanh %dx%d, row_norms %dx%d\n", M, N, K, M, N, ROWS, D);
    free(a); free(b); free(c); free(x); free(bias); free(y); free(rows); free(norms);
    return 0;
}
