"""Tiles copied by the tensor memory accelerator (issue 20): ``s[T].pipeline(stages,
tma=True)`` (tensordsl/lower/tma.py, async_copies.py), its CUDA C (targets/cuda/tma.py:
``cp.async.bulk.tensor`` on mbarriers, behind ``#if TD_TMA``), the emulator's model of
both (emulate_tma.h), the tensor maps the launch encodes, and the tensor-core template,
which asks for it where the tiles allow. Emulated in random thread order against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda import schedule_for
from targets.cuda import tma
from targets.cuda.emulate import EmulationError, emulate_source
from tensordsl.errors import BuildError, ScheduleError

from .helpers import tensor_core_inputs, tensor_core_matmul


def _matmul(M, N, K, dtype="float16"):
    A = td.placeholder((M, K), dtype=dtype, name="A")
    B = td.placeholder((K, N), dtype=dtype, name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    return schedule_for("matmul", C), [A, B, C]


# ---------------------------------------------------------------- the template
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K", [(64, 64, 128), (128, 192, 448)])
@pytest.mark.parametrize("arch", ["sm_80", "sm_90", "sm_90a"])
def test_the_warpgroup_template_copies_its_tiles_by_tma_from_sm_90(dtype, M, N, K, arch, rng):
    """Whole 64 x 64 x 64 blocks: the template asks for the TMA. For sm_90 the tiles
    are copied by it and multiplied by mma.sync, for sm_90a by wgmma; for sm_80 the same
    source copies them by cp.async. K = 448: 7 slices through 3 stages, so each stage's
    mbarrier goes through both phase parities more than once."""
    s, args = _matmul(M, N, K, dtype)
    f = td.build(s, args, target=f"cuda -arch={arch}")
    source = f.get_source()
    assert "#if defined(TD_TMA)" in source and "td_tma_load_2d(" in source
    assert "const __grid_constant__ td_tensor_map td_map_A" in source
    (a, a32), (b, b32) = tensor_core_inputs(rng, (M, K), dtype), \
        tensor_core_inputs(rng, (K, N), dtype)
    c = np.full((M, N), np.nan, "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a32 @ b32, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("stages", [2, 4])
def test_other_depths_of_pipeline_wait_on_the_right_phase(stages, rng):
    s, args = tensor_core_matmul(64, 64, 384, "float16",
                                 {"warps_m": 4, "warps_n": 1, "wm": 1, "wn": 4, "kk": 4,
                                  "stages": stages})
    f = td.build(s, args, target="cuda -arch=sm_90a")
    (a, a32), (b, b32) = tensor_core_inputs(rng, (64, 384), "float16"), \
        tensor_core_inputs(rng, (384, 64), "float16")
    c = np.full((64, 64), np.nan, "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a32 @ b32, rtol=1e-5, atol=1e-4)


def test_tiles_the_tma_cannot_copy_keep_cp_async():
    """The default (2 x 2 warps) tiles: A's rows are 64 bytes, which the TMA's 128-byte
    swizzle does not lay out as ``swizzle()`` does, so neither tile asks for it."""
    s, args = tensor_core_matmul(128, 128, 64, "float16")
    assert "td_tma_load" not in td.build(s, args, target="cuda -arch=sm_90a").get_source()
    s, args = tensor_core_matmul(64, 64, 64, "float16",
                                 {"warps_m": 4, "warps_n": 1, "wm": 1, "wn": 4, "kk": 4,
                                  "tma": 0})
    assert "td_tma_load" not in td.build(s, args, target="cuda -arch=sm_90a").get_source()


def test_the_lowered_loop_has_both_versions():
    s, args = _matmul(64, 64, 512)
    ir = str(td.lower(s, args, target="cuda"))
    tma_part, cp_async_part = ir.split("else:\n", 1)
    assert "if tma_available():" in tma_part and tma_part.count("tma_load(") == 4
    assert "mbarrier_expect_tx(k.c.outer.mbarrier[(k.c.outer + 2) % 3], int32(16384))" in ir
    assert "mbarrier_wait(k.c.outer.mbarrier[k.c.outer % 3], k.c.outer // 3 % 2)" in ir
    assert "cp_async_wait" not in tma_part and "cp_async_wait(int32(1))" in cp_async_part


def test_a_tma_schedule_replays_from_its_trace():
    from tensordsl.schedule import trace
    s, args = _copy_schedule()
    steps = trace.loads(trace.dumps(s.trace))
    assert {"kind": "pipeline", "stage": "A.shared", "args": {"stages": 3, "tma": True}} in [
        st.to_json() for st in steps]
    assert "tma_load(" in str(td.lower(s, args, target="cuda"))
    again = trace.replay(steps, args[-1].op)
    assert str(td.lower(again, args, target="cuda")) == str(td.lower(s, args, target="cuda"))


def test_the_warpgroup_template_replays_from_its_trace():
    """Its tensorize takes a warp's 16 x 64 block of tiles: the trace records the
    intrinsic's shape (it replayed a 16 x 16 one, refused by the loops' extents)."""
    from tensordsl.schedule import trace
    s, args = _matmul(64, 64, 128)
    steps = trace.loads(trace.dumps(s.trace))
    assert {"kind": "tensorize", "stage": "matmul.wmma.accumulator",
            "args": {"axis": "i.c", "intrin": "wmma.mma_sync", "shape": [16, 64, 16]}} in [
        st.to_json() for st in steps]
    again = trace.replay(steps, args[-1].op)
    assert str(td.lower(again, args, target="cuda")) == str(td.lower(s, args, target="cuda"))


# ---------------------------------------------------------------- what is refused
def _copy_schedule(tile_of=None, swizzle=False, align=None, tma_b=True, rows=64, K=256):
    """C = A x B (float16, 64 x K by K x 64) with A's 64 x rows and B's rows x 64 tiles
    pipelined; ``tile_of`` replaces A by a computed tensor (not a copy of an argument)."""
    A = td.placeholder((64, K), dtype="float16", name="A")
    B = td.placeholder((K, 64), dtype="float16", name="B")
    src = tile_of(A) if tile_of else A
    k = td.reduce_axis((0, K), name="k")
    C = td.compute((64, 64), lambda i, j: td.sum(src[i, k].astype("float32") *
                                                 B[k, j].astype("float32"), axis=k), name="C")
    s = td.create_schedule(C.op)
    AS, BS = s.cache_read(src, "shared", [C]), s.cache_read(B, "shared", [C])
    if tile_of:
        s[src].compute_inline()
    i, j = C.op.axis
    s[C].bind(i, td.thread_axis("threadIdx.x"))
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=rows)
    s[C].reorder(i, ko, j, ki)
    for T in (AS, BS):
        s[T].compute_at(s[C], ko)
        _, tx = s[T].split(s[T].fuse(*T.op.axis), factor=64)
        s[T].bind(tx, td.thread_axis("threadIdx.x"))
    if swizzle:
        s[AS].swizzle()
    if align:
        s[AS].storage_align(AS.op.axis[0], *align)
    s[AS].pipeline(3, tma=True)
    s[BS].pipeline(3, tma=tma_b)
    return s, [A, B, C]


@pytest.mark.parametrize("options,message", [
    ({"tile_of": lambda A: td.compute(A.shape, lambda i, k: A[i, k] * 2.0, name="A2")},
     r"pipeline\(tma=True\) of 'A2.shared': the TMA copies a box of an argument tensor"),
    ({"swizzle": True, "rows": 32},
     r"a swizzled tile copied by the TMA needs rows of 128 bytes .* the rows are 64"),
    ({"align": (64, 8)}, r"it cannot be padded \(storage_align\)"),
    ({"tma_b": False}, r"of the tiles copied in loop 'k.outer' \(A.shared, B.shared\) some "
                       r"ask for tma=True and some do not"),
])
def test_a_tile_the_tma_cannot_copy_is_refused(options, message):
    s, args = _copy_schedule(**options)
    with pytest.raises(BuildError, match=message):
        td.lower(s, args, target="cuda")


def test_a_box_over_256_elements_a_side_is_refused():
    s, args = _copy_schedule(rows=512, K=1024)   # A's tile: 64 x 512, twice
    with pytest.raises(BuildError, match=r"at most 256; the tile is"):
        td.lower(s, args, target="cuda")


def test_tma_must_be_a_bool():
    s, _ = _copy_schedule()
    stage = next(st for st in s.stages if st.op.name == "A.shared")
    with pytest.raises(ScheduleError, match="tma must be True or False, got 1"):
        stage.pipeline(3, tma=1)


def test_an_argument_whose_rows_the_tma_cannot_step_is_refused_at_launch():
    """The TMA steps rows in whole 16 bytes: an argument of 100 halves a row cannot be
    read by it (the tensor map of a symbolic shape is checked when its sizes are known)."""
    m = tma.TensorMap(_buffer("A", "float16"), (64, 64), 128)
    with pytest.raises(ValueError, match=r"argument 'A': .* rows must be a whole number of "
                                         r"16 bytes apart; its shape \(64, 100\) of float16 "
                                         r"has rows of 200 bytes"):
        tma.map_geometry(m, (64, 100), 4096)
    with pytest.raises(ValueError, match=r"argument 'A': .* must start on 16 bytes"):
        tma.map_geometry(m, (64, 128), 4104)
    assert tma.map_geometry(m, (64, 128), 4096) == ([128, 64], [256])


def _buffer(name, dtype):
    from tensordsl.ir import nodes as n
    return n.Buffer(name, dtype, (n.Var("m"), n.Var("k")))


# ---------------------------------------------------------------- the emulator's model
# One block of 64 threads; thread 0 starts a TMA copy of the 8 x 16 float box at (row
# ROW, column COL) of a 16 x 32 float tensor into a shared tile, and every thread then
# reads the tile into out. MODE 0: expect_tx, wait, barrier (right); 1: no wait; 2: wait,
# no barrier; 3: expect_tx of 4 bytes too many (the phase never completes); 4: init
# twice; 5: no mbarrier.init.
TILE = r"""
__global__ void tile(float* x, float* out) {
  __shared__ __align__(1024) float t[8 * 16];
  __shared__ long long bar[1];
  TD_SHARED_STATE(t);
  TD_SHARED_STATE(bar);
  const int k = threadIdx.x;
  if (k == 0) {
    if (MODE != 5) td_mbarrier_init(&bar[0], 1);
    if (MODE == 4) td_mbarrier_init(&bar[0], 1);
    td_tensor_map map{(long long)x, 2, 4, SWIZZLE, {32, 16}, {4, 32 * 4}, {16, 8}};
    td_mbarrier_expect_tx(&bar[0], MODE == 3 ? 8 * 16 * 4 + 4 : 8 * 16 * 4);
    td_tma_load_2d(&t[0], map, &bar[0], COL, ROW);
  }
  __syncthreads();
  if (MODE != 1) td_mbarrier_wait(&bar[0], 0);
  if (MODE != 2) __syncthreads();
  for (int e = k; e < 8 * 16; e += 64) TD_AT(out, e) = TD_SHARED_LOAD(t, e);
}
"""


def _tile(mode=0, row=4, col=8, swizzle=0, seed=0):
    x = np.arange(16 * 32, dtype="float32").reshape(16, 32) + 1
    out = np.full(8 * 16, np.nan, "float32")
    emulate_source(f"#define MODE {mode}\n#define ROW {row}\n#define COL {col}\n"
                   f"#define SWIZZLE {swizzle}\n" + TILE, "tile", (1, 1, 1), (64, 1, 1),
                   x, out, seed=seed)
    return x, out


def _box(x, row, col):
    """The 8 x 16 box at (row, col), zeros outside x (the TMA's fill)."""
    padded = np.zeros((16 + 16, 32 + 32), x.dtype)
    padded[8:24, 16:48] = x
    return padded[row + 8:row + 16, col + 16:col + 32]


@pytest.mark.parametrize("row,col", [(4, 8), (-3, 20), (12, -5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_box_lands_row_major_with_zeros_outside_the_tensor(row, col, seed):
    x, out = _tile(row=row, col=col, seed=seed)
    np.testing.assert_array_equal(out.reshape(8, 16), _box(x, row, col))


def test_the_128_byte_swizzle_permutes_chunks_by_line():
    """Rows of 64 bytes: line l (two rows) keeps its 16-byte chunk c at c ^ (l % 8)."""
    x, out = _tile(swizzle=128)
    box = _box(x, 4, 8).reshape(4, 8, 4)           # lines, chunks, floats
    expect = np.empty_like(box)
    for line in range(4):
        for c in range(8):
            expect[line, c ^ line] = box[line, c]
    np.testing.assert_array_equal(out.reshape(4, 8, 4), expect)


@pytest.mark.parametrize("mode,message", [
    (1, r"race on shared memory: thread \(\d+,0,0\) of block \(0,0,0\) reads t\[\d+\] "
        r"while a cp.async or TMA copy to it is in flight"),
    (2, r"race on shared memory"),
    (3, r"an mbarrier wait in thread \(\d+,0,0\) of block \(0,0,0\) never completes"),
    (4, r"mbarrier.init of bar\[0\] in thread \(0,0,0\) of block \(0,0,0\) while it is "
        r"valid"),
    (5, r"mbarrier.arrive.expect_tx on mbarrier bar\[0\] in thread \(0,0,0\) of block "
        r"\(0,0,0\): it is not initialized"),
])
def test_a_misused_tma_copy_or_mbarrier_is_reported(mode, message):
    with pytest.raises(EmulationError, match=message):
        _tile(mode)


def test_an_argument_with_rows_off_16_bytes_is_refused_when_its_shape_is_known():
    s, args = _copy_schedule(K=260)     # A: 64 x 260 halves, rows 520 bytes apart
    with pytest.raises(BuildError, match=r"the TMA steps through 'A' in whole 16 bytes, but "
                                         r"its shape \(64, 260\) of float16 has rows 520"):
        td.lower(s, args, target="cuda")


def test_the_tensor_map_arguments_are_what_cuda_python_takes():
    """cuda-python refuses plain ints for the sizes, strides and box (it wants its
    cuuint64_t/cuuint32_t objects): the arguments pass its checks, and without a driver
    the call then fails for want of the library, not of the types."""
    from cuda.bindings import driver as cuda
    from targets.cuda.driver import tensor_map_arguments
    m = tma.TensorMap(_buffer("A", "float16"), (64, 64), 128)
    args = tensor_map_arguments(cuda, m, (128, 256), 4096)
    assert [int(d) for d in args[3]] == [256, 128] and [int(s) for s in args[4]] == [512]
    assert [int(b) for b in args[5]] == [64, 64]
    try:
        err, _ = cuda.cuTensorMapEncodeTiled(*args)
    except TypeError:
        raise
    except Exception as e:        # no driver library on this machine
        assert "TypeError" not in type(e).__name__
    else:
        assert err == cuda.CUresult.CUDA_SUCCESS


def test_a_shared_array_in_both_versions_of_a_loop_is_one_array():
    """The readers of a TMA loop appear in both of its versions: an array they allocate
    is one array of the kernel, declared, counted and carved once (it was declared
    twice, which the emulator's compiler refused)."""
    from tensordsl.ir import nodes as n
    from tensordsl.lower.gpu import shared_allocations, shared_bytes
    from tensordsl.lower.tma import TMA_AVAILABLE
    i64 = lambda v: n.IntImm("int64", v)      # noqa: E731
    E = n.Buffer("E", "float16", (i64(128),), "shared")
    readers = n.Allocate(E, i64(128), n.Store(E, n.FloatImm("float16", 1.0), i64(0)))
    both = n.IfThenElse(n.Call("bool", TMA_AVAILABLE, ()), readers, readers)
    assert [a.buffer for a in shared_allocations(both)] == [E]
    assert shared_bytes(both) == shared_bytes(readers) == 256


@pytest.mark.parametrize("tma_tiles", [False, True])
def test_a_shared_tile_inside_the_readers_of_a_pipelined_loop(tma_tiles, rng):
    """D's tile is computed inside the readers (at j): one array of the kernel in both
    versions of the TMA loop (it was declared twice), and the barrier that guards it
    across iterations no longer hides the pipelined copies from the pass (it refused the
    loop, with the TMA or without)."""
    A = td.placeholder((64, 256), dtype="float16", name="A")
    B = td.placeholder((256, 64), dtype="float16", name="B")
    D = td.placeholder((256,), dtype="float16", name="D")
    k = td.reduce_axis((0, 256), name="k")
    C = td.compute((64, 64), lambda i, j: td.sum(A[i, k].astype("float32") *
                                                 B[k, j].astype("float32") *
                                                 D[k].astype("float32"), axis=k), name="C")
    s = td.create_schedule(C.op)
    AS, BS, DS = (s.cache_read(T, "shared", [C]) for T in (A, B, D))
    i, j = C.op.axis
    s[C].bind(i, td.thread_axis("threadIdx.x"))
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=64)
    s[C].reorder(i, ko, j, ki)
    for T in (AS, BS):
        s[T].compute_at(s[C], ko)
        _, tx = s[T].split(s[T].fuse(*T.op.axis), factor=64)
        s[T].bind(tx, td.thread_axis("threadIdx.x"))
        s[T].pipeline(3, tma=tma_tiles)
    s[DS].compute_at(s[C], j)
    s[DS].bind(s[DS].split(DS.op.axis[0], factor=64)[1], td.thread_axis("threadIdx.x"))
    f = td.build(s, [A, B, D, C], target="cuda -arch=sm_90")
    source = f.get_source()
    assert source.count("half* const D_shared = ") == 1        # (dynamic: over 48 KiB)
    assert ("td_tma_load_2d(" in source) == tma_tiles and "td_cp_async_wait<1>();" in source
    a, b = (rng.standard_normal(x).astype("float16") for x in ((64, 256), (256, 64)))
    d = rng.standard_normal(256).astype("float16")
    c = np.full((64, 64), np.nan, "float32")
    f.emulate(a, b, d, c)
    want = (a.astype("float32") * d.astype("float32")) @ b.astype("float32")
    np.testing.assert_allclose(c, want, rtol=1e-3, atol=1e-3)
