"""An exported GPU function: its CUBIN and C launcher compile and link without a GPU. A C
program calls the launcher against a stand-in for the CUDA driver that records each call,
so the launch sequence (module load once per context, temporaries, each kernel's grid and
block from the sizes, the checks before any launch) is checked here; running on a GPU is
``tests/cuda``'s business."""
from __future__ import annotations

import subprocess

import pytest

import tensordsl as td
from tensordsl.errors import BuildError
from tensordsl.export import cuda_launcher

try:
    CUDA_INCLUDE = cuda_launcher.find_cuda_include()
except BuildError as err:
    CUDA_INCLUDE, WHY = None, str(err)
needs_cuda_h = pytest.mark.skipif(CUDA_INCLUDE is None,
                                  reason="no cuda.h (CUDA toolkit) on this machine")

# The driver calls the launcher makes, recorded on stdout; "device memory" is host memory.
FAKE_DRIVER = r"""
#define _POSIX_C_SOURCE 200809L
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int token;
CUresult cuCtxGetCurrent(CUcontext* c) { *c = (CUcontext)&token; return CUDA_SUCCESS; }
CUresult cuModuleLoadData(CUmodule* m, const void* image) {
    printf("load %s\n", memcmp(image, "\x7f" "ELF", 4) == 0 ? "ELF" : "?");
    *m = (CUmodule)&token;
    return CUDA_SUCCESS;
}
CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char* name) {
    (void)m;
    printf("function %s\n", name);
    *f = (CUfunction)strdup(name);
    return CUDA_SUCCESS;
}
CUresult cuModuleUnload(CUmodule m) { (void)m; return CUDA_SUCCESS; }
CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int value) {
    printf("attribute %s %s %d\n", (const char*)f,
           a == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES ? "max-dynamic-shared" : "?",
           value);
    return CUDA_SUCCESS;
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream s) {
    (void)s;
    printf("alloc %zu\n", bytes);
    *p = (CUdeviceptr)calloc(1, bytes);
    return CUDA_SUCCESS;
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    (void)s; free((void*)p); printf("free\n"); return CUDA_SUCCESS;
}
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, CUstream s) {
    (void)s; memset((void*)p, v, n); return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t n, CUstream s) {
    (void)s; memcpy(dst, (const void*)src, n); return CUDA_SUCCESS;
}
CUresult cuStreamSynchronize(CUstream s) { (void)s; printf("sync\n"); return CUDA_SUCCESS; }
static unsigned long long maps_made;
CUresult cuTensorMapEncodeTiled(CUtensorMap* m, CUtensorMapDataType type, cuuint32_t rank,
                                void* address, const cuuint64_t* dims,
                                const cuuint64_t* strides, const cuuint32_t* box,
                                const cuuint32_t* steps, CUtensorMapInterleave interleave,
                                CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                CUtensorMapFloatOOBfill fill) {
    (void)l2; (void)fill;
    printf("map %d rank %u at %llu dims %llu %llu stride %llu box %u %u steps %u %u "
           "interleave %d swizzle %d\n", (int)type, rank, (unsigned long long)address,
           (unsigned long long)dims[0], (unsigned long long)dims[1],
           (unsigned long long)strides[0], box[0], box[1], steps[0], steps[1],
           (int)interleave, swizzle == CU_TENSOR_MAP_SWIZZLE_128B ? 128 : 0);
    memset(m, 0, sizeof *m);
    memcpy(m, &(unsigned long long){++maps_made}, sizeof maps_made);   /* its serial */
    return CUDA_SUCCESS;
}
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, CUstream s, void** args,
                        void** extra) {
    (void)s; (void)extra;
    printf("launch %s grid %u %u %u block %u %u %u shared %u", (const char*)f, gx, gy, gz,
           bx, by, bz, shared);
    if (strcmp((const char*)f, "tmamm_kernel0") == 0)   /* A, B, C, then A's and B's maps */
        printf(" maps %llu %llu", *(unsigned long long*)args[3],
               *(unsigned long long*)args[4]);
    if (strcmp((const char*)f, "gather2_kernel0") == 0) {
        /* A, idx, index_error, T, n, m: a bad index found by the "kernel" when m == 7 */
        long long m = *(long long*)args[5];
        printf(" n %lld m %lld", *(long long*)args[4], m);
        if (m == 7) {
            int64_t* error = (int64_t*)*(CUdeviceptr*)args[2];
            error[0] = 1;
            error[1] = 99;
        }
    }
    printf("\n");
    return CUDA_SUCCESS;
}
"""

def _run_with_fake_driver(tmp_path, program: str, library: str) -> str:
    """What C ``program`` prints, linked with the exported ``library`` and FAKE_DRIVER."""
    (tmp_path / "driver.c").write_text(FAKE_DRIVER)
    (tmp_path / "main.c").write_text(program)
    binary = tmp_path / "prog"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", f"-I{CUDA_INCLUDE}", f"-I{tmp_path}",
                    str(tmp_path / "main.c"), str(tmp_path / "driver.c"),
                    str(tmp_path / library), "-lpthread", "-o", str(binary)], check=True)
    return subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout


PROGRAM = r"""
#include <stdio.h>
#include "libgather2.h"
int main(void) {
    CUdeviceptr A = 1 << 12, idx = 2 << 12, B = 3 << 12;   /* never dereferenced */
    printf("status %d\n", tensordsl_gather2(0, A, idx, B, 10, 130));
    printf("status %d\n", tensordsl_gather2(0, A, idx, B, 10, 7));
    int64_t code, index;
    tensordsl_gather2_index_error(&code, &index);
    printf("error %lld at %lld\n", (long long)code, (long long)index);
    printf("status %d\n", tensordsl_gather2(0, A + 4, idx, B, 10, 130) == TD_STATUS_MISALIGNED);
    printf("status %d\n", tensordsl_gather2(0, A, idx, B, 10, -1) == TD_STATUS_BAD_SIZES);
    return 0;
}
"""


def _gather2():
    """Two kernels: T = 2 * A[idx] (an index read from data: checked), B = T + 1 (T an
    intermediate the launcher allocates), over symbolic sizes."""
    n, m = td.var("n"), td.var("m")
    A = td.placeholder((n,), name="A")
    idx = td.placeholder((m,), dtype="int32", name="idx")
    T = td.compute((m,), lambda i: A[idx[i]] * 2.0, name="T")
    B = td.compute((m,), lambda i: T[i] + 1.0, name="B")
    s = td.create_schedule(B.op)
    for X in (T, B):
        bx, tx = s[X].split(X.op.axis[0], factor=64)
        s[X].bind(bx, td.thread_axis("blockIdx.x"))
        s[X].bind(tx, td.thread_axis("threadIdx.x"))
    return td.build(s, [A, idx, B], target="cuda -arch=sm_80", name="gather2")


@needs_cuda_h
def test_launcher_compiles_links_and_launches_the_plan(tmp_path):
    f = _gather2()
    written = td.export([f], tmp_path / "libgather2.a")
    assert [p.name for p in written] == ["libgather2.a", "libgather2.h"]
    header = (tmp_path / "libgather2.h").read_text()
    assert ("int32_t tensordsl_gather2(CUstream stream, CUdeviceptr A, CUdeviceptr idx, "
            "CUdeviceptr B, int64_t n, int64_t m);") in header
    assert "sm_80" in header
    out = _run_with_fake_driver(tmp_path, PROGRAM, "libgather2.a")
    launch0 = "launch gather2_kernel0 grid {g} 1 1 block 64 1 1 shared 0 n 10 m {m}"
    launch1 = "launch gather2_kernel1 grid {g} 1 1 block 64 1 1 shared 0"
    expected = [
        "load ELF", "function gather2_kernel0", "function gather2_kernel1",
        "alloc 16", "alloc 520", launch0.format(g=3, m=130), launch1.format(g=3),
        "sync", "free", "free", "status 0",
        # the module is loaded once; m = 7: one block, and the bad index comes back
        "alloc 16", "alloc 28", launch0.format(g=1, m=7), launch1.format(g=1),
        "sync", "free", "free", "status 2", "error 1 at 99",
        "status 1", "status 1",      # refused before any driver call
    ]
    assert out.splitlines() == expected


@needs_cuda_h
def test_cubin_holds_the_launched_kernels_and_shared_library_needs_libcuda(tmp_path):
    f = _gather2()
    assert f.cubin[:4] == b"\x7fELF"
    for k in f.plan.kernels:
        assert k.name.encode() in f.cubin
    if cuda_launcher.find_libcuda() is None:
        with pytest.raises(BuildError, match="no libcuda"):
            td.export([f], tmp_path / "libg.so")
    else:
        td.export([f], tmp_path / "libg.so")
        symbols = subprocess.run(["nm", "-D", str(tmp_path / "libg.so")], capture_output=True,
                                 text=True, check=True).stdout
        assert " T tensordsl_gather2" in symbols
    td.export([f], tmp_path / "libg.o", header=False)
    symbols = subprocess.run(["nm", str(tmp_path / "libg.o")], capture_output=True,
                             text=True, check=True).stdout
    assert " T tensordsl_gather2" in symbols and " U cuLaunchKernel" in symbols


@needs_cuda_h
def test_cli_exports_a_gpu_template(tmp_path, capsys):
    from tensordsl import cli
    assert cli.main(["export", "softmax", "--shape", "4,100", "--cuda", "--arch", "sm_80",
                     "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "libsoftmax.a"),
                                               str(tmp_path / "libsoftmax.h")]
    (tmp_path / "use.c").write_text('#include "libsoftmax.h"\n'
                                    "int main(void) { return tensordsl_softmax(0, 0, 0); }\n")
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-c", f"-I{CUDA_INCLUDE}",
                    f"-I{tmp_path}", str(tmp_path / "use.c"), "-o", str(tmp_path / "use.o")],
                   check=True)


BIG_PROGRAM = r"""
#include <stdio.h>
#include "libbig.h"
int main(void) {
    CUdeviceptr A = 1 << 12, B = 2 << 12;   /* never dereferenced */
    printf("status %d\n", tensordsl_big(0, A, B));
    printf("status %d\n", tensordsl_big(0, A, B));
    return 0;
}
"""


@needs_cuda_h
def test_a_kernel_over_48_kib_of_shared_memory_is_allowed_it_and_launched_with_it(tmp_path):
    """Two shared tiles of 6143 floats and one float: 49280 bytes, carved from dynamic
    shared memory; the launcher allows the kernel that much when it loads the module
    (cuFuncSetAttribute, once) and gives it to every launch."""
    from tests.cuda.helpers import three_shared_arrays
    s, (A, B) = three_shared_arrays()
    f = td.build(s, [A, B], target="cuda -arch=sm_80", name="big")
    td.export([f], tmp_path / "libbig.a")
    out = _run_with_fake_driver(tmp_path, BIG_PROGRAM, "libbig.a")
    launch = "launch big_kernel0 grid 1 1 1 block 32 1 1 shared 49280"
    assert out.splitlines() == [
        "load ELF", "function big_kernel0", "attribute big_kernel0 max-dynamic-shared 49280",
        launch, "status 0", launch, "status 0"]


TMA_PROGRAM = r"""
#include <stdio.h>
#include "libtmamm.h"
int main(void) {
    CUdeviceptr A = 1 << 12, B = 2 << 12, C = 3 << 12;   /* never dereferenced */
    printf("status %d\n", tensordsl_tmamm(0, A, B, C));
    return 0;
}
"""


@needs_cuda_h
def test_a_kernel_copying_by_tma_gets_its_tensor_maps_encoded_per_call(tmp_path):
    """Built for sm_90a the matmul's tiles are copied by the TMA: before each launch the
    launcher encodes A's and B's tensor maps (sizes and row strides innermost first, the
    64 x 64 box, the 128-byte swizzle) and passes them after the buffers, by value."""
    from kernels import dense
    from schedules.cuda import schedule_for
    A = td.placeholder((128, 256), dtype="float16", name="A")
    B = td.placeholder((256, 192), dtype="float16", name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    f = td.build(schedule_for("matmul", C), [A, B, C], target="cuda -arch=sm_90a",
                 name="tmamm")
    td.export([f], tmp_path / "libtmamm.a")
    out = _run_with_fake_driver(tmp_path, TMA_PROGRAM, "libtmamm.a")
    fp16 = 6   # CU_TENSOR_MAP_DATA_TYPE_FLOAT16
    assert out.splitlines()[-4:] == [
        f"map {fp16} rank 2 at {1 << 12} dims 256 128 stride 512 box 64 64 steps 1 1 "
        "interleave 0 swizzle 128",
        f"map {fp16} rank 2 at {2 << 12} dims 192 256 stride 384 box 64 64 steps 1 1 "
        "interleave 0 swizzle 128",
        f"launch tmamm_kernel0 grid 3 2 1 block 32 4 1 shared {f.plan.kernels[0].dynamic_shared}"
        " maps 1 2",
        "status 0"]
