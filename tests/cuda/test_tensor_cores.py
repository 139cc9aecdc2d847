"""float16/bfloat16 kernels and the tensor-core (WMMA) matmul: compiled for sm_80 and
sm_90 by NVRTC, emulated on the CPU, compared with numpy."""
import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda.matmul import schedule_matmul_tensorcore

from .helpers import build_all


def _bf16(x):
    """float32 -> bfloat16 bits (round to nearest even), and their float32 values."""
    bits = x.view("uint32")
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("uint16")
    return rounded, (rounded.astype("uint32") << 16).view("float32")


def _inputs(rng, shape, dtype):
    x = rng.standard_normal(shape).astype("float32")
    if dtype == "float16":
        h = x.astype("float16")
        return h, h.astype("float32")
    return _bf16(x)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K,config", [
    (64, 64, 64, {"warps_m": 2, "warps_n": 1, "wm": 1, "wn": 2, "kk": 2}),
    (128, 96, 48, {"warps_m": 2, "warps_n": 2, "wm": 2, "wn": 1, "kk": 3, "double_buffer": 0}),
])
def test_tensor_core_matmul(dtype, M, N, K, config, rng):
    A = td.placeholder((M, K), dtype=dtype, name="A")
    B = td.placeholder((K, N), dtype=dtype, name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = td.create_schedule(C.op)
    schedule_matmul_tensorcore(s, C, config)
    modules = build_all(s, [A, B, C])
    src = modules["sm_90"].get_source()
    assert "nvcuda::wmma::mma_sync" in src and "#include <mma.h>" in src
    (a, a32), (b, b32) = _inputs(rng, (M, K), dtype), _inputs(rng, (K, N), dtype)
    c = np.full((M, N), np.nan, "float32")
    modules["sm_80"].emulate(a, b, c)
    np.testing.assert_allclose(c, a32 @ b32, rtol=1e-5, atol=1e-4)


def test_the_matmul_template_picks_tensor_cores_for_16_bit_inputs():
    from schedules.cuda import schedule_for
    A = td.placeholder((128, 64), dtype="float16", name="A")
    B = td.placeholder((64, 128), dtype="float16", name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = schedule_for("matmul", C)
    assert "wmma.mma_sync" in str(td.lower(s, [A, B, C], target="cuda"))
    C2 = dense.matmul(A, B)                                  # float16 result: SIMT path
    assert "wmma" not in str(td.lower(schedule_for("matmul", C2), [A, B, C2], target="cuda"))


def test_tensorize_checks_shape_and_whole_tiles():
    A = td.placeholder((40, 32), dtype="float16", name="A")
    B = td.placeholder((32, 32), dtype="float16", name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = td.create_schedule(C.op)
    schedule_matmul_tensorcore(s, C, {"warps_m": 1, "warps_n": 1, "wm": 1, "wn": 1, "kk": 1})
    with pytest.raises(td.ScheduleError, match="tiles must be whole"):
        td.lower(s, [A, B, C], target="cuda")
    A = td.placeholder((32, 32), dtype="float16", name="A")
    C = dense.matmul(A, B, out_dtype="float32")
    s = td.create_schedule(C.op)
    CF = s.cache_write(C, "wmma.accumulator")
    i, j = C.op.axis
    s[C].bind(i, td.thread_axis("blockIdx.x"))
    s[CF].compute_at(s[C], i)
    ci, cj = CF.op.axis
    cjo, cj8 = s[CF].split(cj, factor=8)
    s[CF].tensorize(cj8, td.tensor_intrin.wmma_mma_sync())
    with pytest.raises(td.ScheduleError, match=r"expected loops of kinds .* extents \(16, 16, 16\)"):
        td.lower(s, [A, B, C], target="cuda")


def test_tensorize_refuses_a_float16_accumulator():
    A = td.placeholder((16, 16), dtype="float16", name="A")
    B = td.placeholder((16, 16), dtype="float16", name="B")
    C = dense.matmul(A, B)                      # accumulates in float16
    s = td.create_schedule(C.op)
    CF = s.cache_write(C, "wmma.accumulator")
    io, _ = s[C].split(C.op.axis[0], factor=16)
    s[C].bind(io, td.thread_axis("blockIdx.x"))
    s[CF].compute_at(s[C], io)
    s[CF].tensorize(CF.op.axis[0], td.tensor_intrin.wmma_mma_sync())
    with pytest.raises(td.ScheduleError, match="float16 or bfloat16 tiles into float32"):
        td.lower(s, [A, B, C], target="cuda")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_elementwise_matches_numpy(dtype, rng):
    """float16 rounds every operation to float16 (as CUDA's half arithmetic does);
    bfloat16 is a storage type: computed in float, rounded only when stored (here never:
    B is inlined into the float32 C)."""
    n = 300
    A = td.placeholder((n,), dtype=dtype, name="A")
    Bt = td.compute((n,), lambda i: td.exp(A[i]) * 1.5 + A[i] / 3.0, name="B")
    C = td.compute((n,), lambda i: Bt[i].astype("float32"), name="C")
    s = td.create_schedule(C.op)
    s[Bt].compute_inline()
    bx, tx = s[C].split(C.op.axis[0], factor=64)
    s[C].bind(bx, td.thread_axis("blockIdx.x"))
    s[C].bind(tx, td.thread_axis("threadIdx.x"))
    a, a32 = _inputs(rng, (n,), dtype)
    got = np.full(n, np.nan, "float32")
    build_all(s, [A, C])["sm_80"].emulate(a, got)
    x = a32.astype("float64")
    if dtype == "float16":
        # numpy's float16 arithmetic rounds each operation, as the kernel does. exp is
        # expf (float32, within an ulp) rounded to float16, so either float32 neighbour
        # of the true exp may be the one rounded: the result lies between the two
        # per-operation results (which nearly always agree)
        def per_operation(e32):
            e16 = e32.astype("float16")
            return (e16 * np.float16(1.5) + a / np.float16(3.0)).astype("float32")
        e32 = np.exp(x).astype("float32")
        low = per_operation(np.nextafter(e32, np.float32(-np.inf)))
        high = per_operation(np.nextafter(e32, np.float32(np.inf)))
        off = ~((low <= got) & (got <= high))
        assert not off.any(), (f"{off.sum()} of {n} off the float16 result: got {got[off][:4]}, "
                               f"want {low[off][:4]}..{high[off][:4]}")
    else:
        # float32 arithmetic on the bfloat16 values: within a few float32 ulps of the
        # larger term (expf and three roundings; cancellation makes rtol meaningless)
        terms = np.abs(np.exp(x) * 1.5), np.abs(x / 3.0)
        want = np.exp(x) * 1.5 + x / 3.0
        ulps = np.spacing(np.maximum(*terms).astype("float32")).astype("float64")
        np.testing.assert_array_less(np.abs(got - want), 4 * ulps)


def test_a_float_tile_right_after_a_bfloat16_buffer_is_in_bounds(rng):
    # The emulator once sized buffers in elements of the tile's type: C's float tiles,
    # when C lay within twice A's bytes after bfloat16 A, were reported out of A's bounds.
    M, N, K = 128, 96, 48
    config = {"warps_m": 2, "warps_n": 2, "wm": 2, "wn": 1, "kk": 3, "double_buffer": 0}
    A = td.placeholder((M, K), dtype="bfloat16", name="A")
    B = td.placeholder((K, N), dtype="bfloat16", name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = td.create_schedule(C.op)
    schedule_matmul_tensorcore(s, C, config)
    f = td.build(s, [A, B, C], target="cuda -arch=sm_80")
    (a, a32), (b, b32) = _inputs(rng, (M, K), "bfloat16"), _inputs(rng, (K, N), "bfloat16")
    gap = 1696  # as allocated in the run that failed: C's row-16 tiles began in "A"
    arena = np.empty(a.nbytes + gap + M * N * 4 + 128, np.uint8)
    start = (-arena.ctypes.data) % 64
    a_view = arena[start:start + a.nbytes].view("uint16").reshape(M, K)
    c_at = start + a.nbytes + gap
    c_view = arena[c_at:c_at + M * N * 4].view("float32").reshape(M, N)
    a_view[:] = a
    c_view[:] = np.nan
    f.emulate(a_view, b, c_view)
    np.testing.assert_allclose(c_view, a32 @ b32, rtol=1e-5, atol=1e-4)
