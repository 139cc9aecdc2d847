// The same calls as main.c from C++, through a tiny RAII layer: `Array` owns aligned
// memory (freed with it, outputs born NaN), `call` turns a status into an exception.
//
//   c++ -O2 -std=c++17 -I OUT_DIR examples/aot/main.cpp -L OUT_DIR -laot_example
//       -Wl,-rpath,OUT_DIR -o aot_main_cpp
//   ./aot_main_cpp RESULTS_DIR
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

#include "libaot_example.h"

namespace {

constexpr int64_t M = 200, N = 136, K = 96, D = 64, ROWS = 37;  // export_kernels.py's sizes

class Array {
  public:
    explicit Array(int64_t count)
        : count_(count),
          data_(static_cast<float*>(std::aligned_alloc(64, bytes_rounded(count))), &std::free) {
        if (!data_) throw std::bad_alloc();
        for (int64_t i = 0; i < count_; i++) data_.get()[i] = NAN;
    }
    // element i of input `seed`, as main.c and the test compute it
    static Array input(int64_t count, int seed) {
        Array a(count);
        for (int64_t i = 0; i < count; i++)
            a.data()[i] = static_cast<float>((i * 37 + seed * 11) % 101) / 50.0f - 1.0f;
        return a;
    }
    float* data() { return data_.get(); }
    const float* data() const { return data_.get(); }
    int64_t size() const { return count_; }

    void save(const std::string& path) const {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(data()), count_ * sizeof(float));
        if (!out) throw std::runtime_error("cannot write " + path);
    }

  private:
    static size_t bytes_rounded(int64_t count) {
        return (static_cast<size_t>(count) * sizeof(float) + 63) / 64 * 64;
    }
    int64_t count_;
    std::unique_ptr<float, decltype(&std::free)> data_;
};

void call(const char* kernel, int32_t status) {
    if (status != TD_STATUS_OK)
        throw std::runtime_error(std::string(kernel) + " returned status " +
                                 std::to_string(status));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s RESULTS_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    try {
        Array a = Array::input(M * K, 1), b = Array::input(K * N, 2), c(M * N);
        call("matmul", tensordsl_matmul(a.data(), b.data(), c.data()));
        c.save(dir + "/matmul.f32");

        Array x = Array::input(M * N, 3), bias = Array::input(N, 4), y(M * N);
        call("bias_tanh", tensordsl_bias_tanh(x.data(), bias.data(), y.data()));
        y.save(dir + "/bias_tanh.f32");

        Array rows = Array::input(ROWS * D, 5), norms(ROWS);
        call("row_norms", tensordsl_row_norms(rows.data(), norms.data(), ROWS));
        norms.save(dir + "/row_norms.f32");

        try {
            call("row_norms", tensordsl_row_norms(rows.data(), norms.data(), -1));
            std::fprintf(stderr, "row_norms accepted n = -1\n");
            return 1;
        } catch (const std::runtime_error&) {
            // TD_STATUS_BAD_SIZES, as it should be
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    std::printf("ok (C++)\n");
    return 0;
}
