"""float16/bfloat16 kernels and the tensor-core (WMMA) matmul: compiled for sm_80 and
sm_90 by NVRTC, emulated on the CPU, compared with numpy."""
import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda.matmul import schedule_matmul_tensorcore

from .helpers import build_all, tensor_core_inputs as _inputs, tensor_core_matmul


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K,config", [
    (64, 64, 64, {"warps_m": 2, "warps_n": 1, "wm": 1, "wn": 2, "kk": 2}),
    (128, 96, 48, {"warps_m": 2, "warps_n": 2, "wm": 2, "wn": 1, "kk": 3, "double_buffer": 0}),
    # the tiles double-buffered (no cp.async), and pipelined 2 and 4 deep (4 stages
    # over 3 iterations: the prologue copies past the end are skipped)
    (64, 64, 64, {"warps_m": 2, "warps_n": 1, "wm": 1, "wn": 2, "kk": 2, "stages": 1}),
    (64, 32, 96, {"warps_m": 1, "warps_n": 1, "wm": 2, "wn": 1, "kk": 1, "stages": 2}),
    (64, 32, 96, {"warps_m": 1, "warps_n": 1, "wm": 2, "wn": 1, "kk": 2, "stages": 4}),
    # a warp's block of 4 x 2 fragments, 3 x 1 (each A and B tile loaded once a step)
    (64, 128, 64, {"warps_m": 1, "warps_n": 2, "wm": 4, "wn": 2, "kk": 1}),
    (96, 32, 32, {"warps_m": 2, "warps_n": 2, "wm": 3, "wn": 1, "kk": 2}),
    # unswizzled tiles, padded or not (float16: through WMMA)
    (64, 64, 64, {"warps_m": 2, "warps_n": 1, "wm": 1, "wn": 2, "kk": 2, "swizzle": 0,
                  "pad": 8}),
    (64, 64, 32, {"warps_m": 2, "warps_n": 2, "wm": 1, "wn": 1, "kk": 2, "swizzle": 0}),
])
def test_tensor_core_matmul(dtype, M, N, K, config, rng):
    modules = build_all(*tensor_core_matmul(M, N, K, dtype, config))
    src = modules["sm_90"].get_source()
    swizzled = "_swizzled(td_a" in src or "_swizzled(td_b" in src
    # (swizzled by default where a tile's rows and size allow: test_banks.py)
    assert not (swizzled and config.get("swizzle", 1) == 0)
    if dtype == "float16" and not swizzled:
        assert "nvcuda::wmma::mma_sync" in src and "#include <mma.h>" in src
    else:   # WMMA would load bfloat16 tiles without ldmatrix, and takes no swizzled
        # tile: ldmatrix and mma.sync
        ctype = "half" if dtype == "float16" else "__nv_bfloat16"
        assert f"td_mma_product<{ctype}>(" in src and "nvcuda::wmma" not in src
        assert "ldmatrix.sync.aligned.m8n8.x4.trans" in src and "m16n8k16" in src
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
    f = td.build(*tensor_core_matmul(M, N, K, "bfloat16", config), target="cuda -arch=sm_80")
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


def _tensor_core_schedule(lanes: int, align=None):
    """The tensor-core template's structure (2x2 warps, one 16x16 fragment each, a
    32-deep K slice staged in shared memory) with ``lanes`` threads along threadIdx.x,
    and the shared tiles' rows optionally padded by ``storage_align(*align)``; the
    tiles are fetched 8 halves (16 bytes) at a time."""
    from schedules.cuda.matmul import cooperative_fetch
    A = td.placeholder((64, 64), dtype="float16", name="A")
    B = td.placeholder((64, 64), dtype="float16", name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = td.create_schedule(C.op)
    AS, BS = s.cache_read(A, "shared", [C]), s.cache_read(B, "shared", [C])
    CF = s.cache_write(C, "wmma.accumulator")
    by, bx, ty, tz, i16, j16 = _warp_tiles(s[C], C.op.axis)
    s[C].tensorize(i16, td.tensor_intrin.wmma_store())
    s[CF].compute_at(s[C], tz)
    ci, cj = CF.op.axis
    ko, k16 = s[CF].split(CF.op.reduce_axis[0], factor=16)
    kt, k16 = s[CF].split(k16, factor=16)
    s[CF].reorder(ko, kt, ci, cj, k16)
    s[CF].tensorize(ci, td.tensor_intrin.wmma_mma_sync())
    for cache in (AS, BS):
        s[cache].compute_at(s[CF], ko)
        if align:
            s[cache].storage_align(cache.op.axis[0], *align)
        cooperative_fetch(s, cache, lanes, 2, 2, vec=8)
    return s, [A, B, C]


def _warp_tiles(stage, axes):
    i, j = axes
    by, i = stage.split(i, factor=32)
    bx, j = stage.split(j, factor=32)
    ty, i16 = stage.split(i, factor=16)
    tz, j16 = stage.split(j, factor=16)
    stage.reorder(by, bx, ty, tz, i16, j16)
    for ax, tag in ((by, "blockIdx.y"), (bx, "blockIdx.x"), (ty, "threadIdx.y"),
                    (tz, "threadIdx.z")):
        stage.bind(ax, td.thread_axis(tag))
    return by, bx, ty, tz, i16, j16


def test_tensor_cores_refuse_warps_that_straddle_fragments():
    """16 threads along x: a warp holds the threads of two (y, z) pairs, i.e. two
    different fragments; mma_sync needs all 32 lanes on the same one."""
    s, args = _tensor_core_schedule(lanes=16)
    with pytest.raises(td.ScheduleError, match=r"stage 'matmul.wmma.accumulator'.*threadIdx.x "
                                               r"extent 16.*multiple of 32"):
        td.build(s, args, target="cuda -arch=sm_80")


def test_tensor_cores_refuse_a_fragment_per_lane():
    """A tensorized stage inside a threadIdx.x loop: each lane would own its own tile."""
    A = td.placeholder((32, 32), dtype="float16", name="A")
    B = td.placeholder((32, 32), dtype="float16", name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = td.create_schedule(C.op)
    CF = s.cache_write(C, "wmma.accumulator")
    io, i16 = s[C].split(C.op.axis[0], factor=16)
    jo, j16 = s[C].split(C.op.axis[1], factor=16)
    s[C].reorder(io, jo, i16, j16)
    s[C].bind(io, td.thread_axis("blockIdx.x"))
    s[C].bind(jo, td.thread_axis("threadIdx.x"))
    s[C].tensorize(i16, td.tensor_intrin.wmma_store())
    s[CF].compute_at(s[C], jo)
    ko, k16 = s[CF].split(CF.op.reduce_axis[0], factor=16)
    s[CF].reorder(ko, *CF.op.axis, k16)
    s[CF].tensorize(CF.op.axis[0], td.tensor_intrin.wmma_mma_sync())
    with pytest.raises(td.ScheduleError, match=r"stage 'matmul.wmma.accumulator'.*inside the "
                                               r"threadIdx.x loop 'j.outer'"):
        td.build(s, [A, B, C], target="cuda -arch=sm_80")


def test_tensor_cores_refuse_a_leading_dimension_not_a_multiple_of_16_bytes():
    """Rows of 36 halves (72 bytes): load_matrix_sync needs a multiple of 8 halves."""
    s, args = _tensor_core_schedule(lanes=32, align=(32, 4))
    with pytest.raises(td.ScheduleError, match=r"stage 'matmul.wmma.accumulator'.*'A.shared'.*"
                                               r"leading dimension 36 .*72 bytes.*"
                                               r"multiple of 16 bytes"):
        td.build(s, args, target="cuda -arch=sm_80")


def test_tensor_cores_with_padded_tiles_whose_rows_stay_16_byte_aligned(rng):
    """Rows of 40 halves (80 bytes): legal, and the fetches still move 16 bytes."""
    s, args = _tensor_core_schedule(lanes=32, align=(32, 8))
    f = build_all(s, args)["sm_80"]
    src = f.get_source()
    assert "float4" in src
    assert "load_matrix_sync(td_a[0], &A_shared[(i_inner_outer * 640)], 40)" in src
    (a, a32), (b, b32) = _inputs(rng, (64, 64), "float16"), _inputs(rng, (64, 64), "float16")
    c = np.full((64, 64), np.nan, "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a32 @ b32, rtol=1e-5, atol=1e-4)


def test_tensor_cores_refuse_a_tile_off_32_bytes():
    """A[i, k + 8]: the A tiles, read straight from global memory, start 16 bytes past a
    32-byte boundary; load_matrix_sync needs 32."""
    from schedules.cuda.matmul import cooperative_fetch
    A = td.placeholder((32, 40), dtype="float16", name="A")
    B = td.placeholder((32, 32), dtype="float16", name="B")
    k = td.reduce_axis((0, 32), name="k")
    C = td.compute((32, 32), lambda i, j: td.sum(
        A[i, k + 8].astype("float32") * B[k, j].astype("float32"), axis=k), name="C")
    s = td.create_schedule(C.op)
    BS = s.cache_read(B, "shared", [C])
    CF = s.cache_write(C, "wmma.accumulator")
    *_, tz, i16, _ = _warp_tiles(s[C], C.op.axis)
    s[C].tensorize(i16, td.tensor_intrin.wmma_store())
    s[CF].compute_at(s[C], tz)
    ko, k16 = s[CF].split(CF.op.reduce_axis[0], factor=16)
    s[CF].reorder(ko, *CF.op.axis, k16)
    s[CF].tensorize(CF.op.axis[0], td.tensor_intrin.wmma_mma_sync())
    s[BS].compute_at(s[CF], ko)
    cooperative_fetch(s, BS, 32, 2, 2)
    with pytest.raises(td.ScheduleError, match=r"stage 'C.wmma.accumulator'.*tile of 'A' "
                                               r"at element .*not provably on 32 bytes"):
        td.build(s, [A, B, C], target="cuda -arch=sm_80")



def test_tensor_core_output_must_start_on_32_bytes():
    """store_matrix_sync writes C's tiles straight to C: a device array 16 bytes past a
    32-byte boundary passes the float4 check but not this one (checked before any
    launch, so no GPU is needed to see it refused)."""
    s, args = _tensor_core_schedule(lanes=32)
    f = td.build(s, args, target="cuda -arch=sm_80")

    def on_device(ptr, dtype):      # array descriptors only: nothing is launched
        return td.nd.NDArray(ptr, (64, 64), dtype, "cuda", 0, None)
    a, b = on_device(1 << 20, "float16"), on_device(2 << 20, "float16")
    with pytest.raises(ValueError, match=r"argument 'matmul'.*32-byte aligned .*tensor cores"):
        f(a, b, on_device((3 << 20) + 16, "float32"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tiles_over_48_kib_go_to_dynamic_shared_memory(dtype, rng):
    """4 stages of 64x64 A and B tiles 64 deep: 64 KiB, over the static limit, so the
    arrays are carved from one dynamic array (the launch allows it: cuFuncSetAttribute);
    sm_80 and sm_90a compile it without spills, and it computes the product."""
    from targets.cuda import sass
    M, N, K = 128, 64, 256
    config = {"kk": 4, "stages": 4}
    for arch in ("sm_80", "sm_90a"):
        f = td.build(*tensor_core_matmul(M, N, K, dtype, config), target=f"cuda -arch={arch}")
        (kernel,) = f.plan.kernels
        assert kernel.dynamic_shared == kernel.shared_bytes > 48 * 1024
        src = f.get_source()
        # (on 1024 bytes: the TMA writes the swizzled tiles, by absolute address)
        assert "extern __shared__ __align__(1024) unsigned char td_dynamic_shared[];" in src
        assert "__shared__ __align__(128) half" not in src
        (code,) = sass.disassemble(f.cubin).values()
        assert code.spills == 0 and code.shared_bytes < 48 * 1024
    (a, a32), (b, b32) = _inputs(rng, (M, K), dtype), _inputs(rng, (K, N), dtype)
    c = np.full((M, N), np.nan, "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a32 @ b32, rtol=1e-5, atol=1e-4)


def test_shared_memory_beyond_the_architectures_opt_in_limit_is_refused():
    # 11 stages of swizzled (unpadded) tiles: 176 KiB and the TMA's 11 mbarriers (on 128
    # bytes), over sm_80's 163 (sm_90's 227 take it); 15: over any GPU's
    ten = tensor_core_matmul(64, 64, 704, "float16", {"kk": 4, "stages": 11})
    with pytest.raises(td.BuildError, match=r"180352 bytes of shared memory \(A.shared, "
                                            r"B.shared, k.c.outer.mbarrier\) exceed the "
                                            r"166912-byte limit per block on sm_80"):
        td.build(*ten, target="cuda -arch=sm_80")
    td.build(*ten, target="cuda -arch=sm_90a")
    with pytest.raises(td.BuildError, match="exceed the 232448-byte limit per block of any "
                                            "GPU; use smaller tiles"):
        td.build(*tensor_core_matmul(64, 64, 960, "float16", {"kk": 4, "stages": 15}),
                 target="cuda -arch=sm_90a")


def test_a_block_of_tensor_core_tiles_is_whole_tiles_of_16():
    assert td.tensor_intrin.wmma_mma_sync(64, 32).shape == (64, 32, 16)
    for shape in ((24, 16), (16, 8), (16, 16, 32), (0, 16)):
        with pytest.raises(ValueError, match="m and n multiples of 16, k 16"):
            td.tensor_intrin.wmma_mma_sync(*shape)


def _conv_nhwc_reference(x, w, stride, padding, dilation):
    """float64 NHWC convolution of float32 values: (N, H, W, C) by (KH, KW, C, F)."""
    (pt, pl, pb, pr), (sh, sw), (dh, dw) = padding, stride, dilation
    xp = np.pad(x.astype("float64"), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw = w.shape[:2]
    oh = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for ry in range(kh):
        for rx in range(kw):
            patch = xp[:, ry * dh:ry * dh + sh * oh:sh, rx * dw:rx * dw + sw * ow:sw, :]
            out += patch[:, :oh, :ow] @ w[ry, rx].astype("float64")
    return out


def _as_float32(bits, dtype):
    return bits.astype("float32") if dtype == "float16" else \
        (bits.astype("uint32") << 16).view("float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,config", [
    # 3x3 padded (the windows leave the image on every side), 2 x 2 warps of 1 x 1
    ((2, 8, 8, 32), (3, 3, 32, 64), 1, 1, 1,
     {"warps_m": 2, "warps_n": 2, "wm": 1, "wn": 1}),
    # strided, 16-deep slices, a warp's 1 x 2 fragments
    ((2, 16, 16, 16), (3, 3, 16, 32), 2, 1, 1,
     {"warps_m": 2, "warps_n": 1, "wm": 1, "wn": 2, "kk": 1}),
    # dilated, uneven padding (top, left, bottom, right), 4 pipeline stages
    ((1, 12, 12, 16), (3, 3, 16, 16), 1, (2, 1, 2, 3), 2,
     {"warps_m": 1, "warps_n": 1, "wm": 1, "wn": 1, "kk": 1, "stages": 4}),
    # 1x1: the product of the image by the weights
    ((2, 4, 4, 32), (1, 1, 32, 48), 1, 0, 1,
     {"warps_m": 2, "warps_n": 1, "wm": 1, "wn": 3, "kk": 2}),
])
def test_conv2d_nhwc_implicit_gemm_on_tensor_cores(dtype, x_shape, w_shape, stride, padding,
                                                     dilation, config, rng):
    """The implicit-GEMM form on the tensor-core template: each tile of windows gathered
    straight from the input (zero-filled outside the image), in random thread order,
    against numpy in float64 from the same rounded inputs; the output in the input's
    type (float32 accumulation)."""
    from schedules.cuda import schedule_for
    X = td.placeholder(x_shape, dtype=dtype, name="X")
    W = td.placeholder(w_shape, dtype=dtype, name="W")
    out = dense.conv2d_nhwc(X, W, stride=stride, padding=padding, dilation=dilation,
                            form="implicit_gemm")
    s = schedule_for("conv2d_nhwc", out, config=config)
    modules = build_all(s, [X, W, out])
    src = modules["sm_80"].get_source()
    assert "td_mma_product<" in src or "nvcuda::wmma::mma_sync" in src
    (x, x32), (w, w32) = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype)
    shape = tuple(int(d.value) for d in out.shape)
    got = np.full(shape, np.nan, "float16") if dtype == "float16" else \
        np.full(shape, 0x7FC0, "uint16")                    # bfloat16 NaN
    modules["sm_80"].emulate(x, w, got)
    pads = (padding,) * 4 if isinstance(padding, int) else padding
    want = _conv_nhwc_reference(x32, w32, (stride, stride), pads, (dilation, dilation))
    eps = 2.0 ** -11 if dtype == "float16" else 2.0 ** -8     # the output's rounding
    np.testing.assert_allclose(_as_float32(got, dtype), want, rtol=eps, atol=1e-3)


def test_conv2d_nhwc_implicit_gemm_off_whole_tiles_runs_on_the_simt_template(rng):
    """25 output positions and 3 input channels (a K of 27) are no whole tensor-core
    tiles: the matmul template's SIMT path computes the same product."""
    source = _emulated_fp16_conv((1, 9, 9, 3), (3, 3, 3, 8), 2, "sm_80", rng)
    assert "mma" not in source


def _emulated_fp16_conv(x_shape, w_shape, stride, arch, rng) -> str:
    """The float16 implicit-GEMM conv (padding 1) by its template for ``arch``,
    emulated against numpy; returns the CUDA source."""
    from schedules.cuda import schedule_for
    X = td.placeholder(x_shape, dtype="float16", name="X")
    W = td.placeholder(w_shape, dtype="float16", name="W")
    out = dense.conv2d_nhwc(X, W, stride=stride, padding=1, form="implicit_gemm")
    f = td.build(schedule_for("conv2d_nhwc", out), [X, W, out], target=f"cuda -arch={arch}")
    (x, x32), (w, w32) = _inputs(rng, x_shape, "float16"), _inputs(rng, w_shape, "float16")
    got = np.full([int(d.value) for d in out.shape], np.nan, "float16")
    f.emulate(x, w, got)
    want = _conv_nhwc_reference(x32, w32, (stride, stride), (1, 1, 1, 1), (1, 1))
    np.testing.assert_allclose(got.astype("float32"), want, rtol=2.0 ** -11, atol=1e-3)
    return f.get_source()


# ------------------------------------------------------------------ wgmma (sm_90a)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K", [(64, 64, 64), (128, 192, 192)])
def test_a_warpgroup_block_multiplies_by_wgmma_on_sm_90a(dtype, M, N, K, rng):
    """The default tiles where the shapes are whole 64 x 64 x 64 blocks: one warpgroup,
    4 warps down the tile. Built for sm_90a its products are wgmma from the swizzled
    tiles by descriptor (the emulator decodes the descriptors, swizzles the addresses as
    the hardware does and hands each thread its accumulators); for sm_80 the same
    warps run mma.sync. Both in random thread order against numpy."""
    from schedules.cuda import schedule_for
    A = td.placeholder((M, K), dtype=dtype, name="A")
    B = td.placeholder((K, N), dtype=dtype, name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = schedule_for("matmul", C)
    (a, a32), (b, b32) = _inputs(rng, (M, K), dtype), _inputs(rng, (K, N), dtype)
    for arch in ("sm_80", "sm_90a"):
        f = td.build(s, [A, B, C], target=f"cuda -arch={arch}")
        assert "td_wgmma_slab<" in f.get_source()       # (behind #if TD_WGMMA)
        c = np.full((M, N), np.nan, "float32")
        f.emulate(a, b, c)
        np.testing.assert_allclose(c, a32 @ b32, rtol=1e-5, atol=1e-4)


def test_the_implicit_gemm_conv_runs_wgmma_on_sm_90a(rng):
    source = _emulated_fp16_conv((2, 8, 8, 64), (3, 3, 64, 64), 1, "sm_90a", rng)
    assert "td_wgmma_slab<half>" in source


WGMMA_MISUSE = r"""
__global__ void misuse(float* out) {
  __shared__ __align__(1024) half tile[64 * 64];
  TD_SHARED_STATE(tile);
  for (int i = threadIdx.x; i < 64 * 64; i += blockDim.x) TD_SHARED_STORE(tile, i) = 0.0f;
  __syncthreads();
  float d[32];
  for (int i = 0; i < 32; ++i) d[i] = 0.0f;
  unsigned long long desc = (td_shared_address(tile) >> 4) | (64ull << 32) | (1ull << 62);
  td_wgmma_m64n64k16<half>(d, desc + SKEW * (threadIdx.x / 32), desc);
  TD_AT(out, threadIdx.x) = d[0];
}
"""


@pytest.mark.parametrize("threads,skew,message", [
    (64, 0, r"wgmma.mma_async needs a warpgroup of 128 threads; thread \(0,0,0\) of block "
            r"\(0,0,0\) is in a block of 64"),
    (128, 2, r"gives other descriptors \(the 4 warps multiply one 64-row tile"),
])
def test_wgmma_is_refused_without_one_warpgroup_on_one_tile(threads, skew, message):
    from targets.cuda.emulate import EmulationError, emulate_source
    out = np.full(threads, np.nan, "float32")
    with pytest.raises(EmulationError, match=message):
        emulate_source(f"#define SKEW {skew}\n" + WGMMA_MISUSE, "misuse", (1, 1, 1),
                       (threads, 1, 1), out, order="sequential")


def test_a_compute_capability_9_0_device_is_compiled_for_sm_90a():
    """Where a GPU is found, ``target="cuda"`` compiles for what it runs best: sm_90a on
    an H100/H200 (wgmma is an sm_90a feature), its own architecture elsewhere."""
    from targets.cuda.driver import Device
    h100 = Device(0, None, None, "H100", (9, 0))
    assert (h100.arch, h100.compile_arch) == ("sm_90", "sm_90a")
    assert Device(0, None, None, "A100", (8, 0)).compile_arch == "sm_80"
    assert Device(0, None, None, "L40S", (8, 9)).compile_arch == "sm_89"


def test_a_stored_tile_must_be_rows_of_16_consecutive_elements_all_along():
    """The store's destination may be an n-d tensor whose fused axes are the rows (the
    implicit GEMM's output): every step along a row is checked, not only the first
    (columns j // 8, j % 8 of a 2 x 10 block step by 1, then by 3 at j = 8), and rows
    closer than 16 elements would overlap."""
    from tensordsl.ir import nodes as n
    from tensordsl.lower.tensorize import _check_flat_tile
    i, j = n.Var("i"), n.Var("j")
    eight = n.IntImm("int64", 8)
    T = td.placeholder((64, 2, 10), name="T")
    with pytest.raises(td.ScheduleError, match=r"steps are \{20\} down and \{1, 3\} across"):
        _check_flat_tile("store", T, (i, n.FloorDiv(j, eight), n.FloorMod(j, eight)), i, j, {})
    R = td.placeholder((64, 64), name="R")
    _check_flat_tile("store", R, (i, j), i, j, {})                  # a matrix: fine
    with pytest.raises(td.ScheduleError, match=r"\{8\} down"):       # rows overlap
        _check_flat_tile("store", td.placeholder((1, 512), name="S"),
                         (n.IntImm("int64", 0), i * 8 + j), i, j, {})
