"""GPU lowering: binding checks, barriers, limits, and the emulator's own checks."""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tensordsl as td
from kernels import dense
from schedules.cuda.matmul import schedule_matmul
from tensordsl.ir import nodes as n
from targets.cuda.emulate import EmulationError, Emulator

from .helpers import emulate


def _elementwise(n_elems=100):
    A = td.placeholder((n_elems,), name="A")
    B = td.compute((n_elems,), lambda i: A[i] * 2.0 + 1.0, name="B")
    return A, B, td.create_schedule(B.op)


def test_unbound_loop_is_refused_naming_the_stage():
    A, B, s = _elementwise()
    with pytest.raises(td.BuildError, match="'B'.*outside any GPU kernel"):
        td.build(s, [A, B], target="cuda -arch=sm_80")


def test_parallel_loop_is_refused_for_cuda():
    A, B, s = _elementwise()
    o, i = s[B].split(B.op.axis[0], factor=10)
    s[B].parallel(o)
    with pytest.raises(td.BuildError, match="parallel loop is a CPU construct"):
        td.build(s, [A, B], target="cuda -arch=sm_80")


def test_too_many_threads_is_refused():
    A, B, s = _elementwise(4096)
    o, i = s[B].split(B.op.axis[0], factor=2048)
    s[B].bind(o, td.thread_axis("blockIdx.x"))
    s[B].bind(i, td.thread_axis("threadIdx.x"))
    with pytest.raises(td.BuildError, match="'B'.*threadIdx.x extent 2048 exceeds"):
        td.build(s, [A, B], target="cuda -arch=sm_80")


def test_too_much_shared_memory_is_refused():
    A, B = td.placeholder((512, 512), name="A"), td.placeholder((512, 512), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"ty": 16, "tx": 16, "vm": 8, "vn": 8, "kt": 64})
    with pytest.raises(td.BuildError, match="bytes of shared memory .* exceed"):
        td.build(s, [A, B, C], target="cuda -arch=sm_80")


def test_narrow_thread_loop_is_guarded_and_barrier_reached_by_all(rng):
    """A shared tile filled by 8 of 32 threads: the fill is guarded by the thread index,
    the barrier after it is not (every thread must reach it)."""
    N = 64
    A = td.placeholder((N,), name="A")
    AS_src = td.compute((N,), lambda i: A[i] + 1.0, name="P")
    B = td.compute((N,), lambda i: AS_src[(i + 1) % N] * 3.0, name="B")
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=32)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[AS_src].set_scope("shared")
    s[AS_src].compute_at(s[B], bx)
    fo, fi = s[AS_src].split(AS_src.op.axis[0], factor=8)
    s[AS_src].bind(fi, td.thread_axis("threadIdx.x"))
    ir = str(td.lower(s, [A, B], target="cuda"))
    assert "barrier(shared)" in ir
    a = rng.standard_normal(N).astype("float32")
    got = emulate(s, [A, B], [a])
    np.testing.assert_allclose(got, (np.roll(a, -1) + 1.0) * 3.0, rtol=1e-6)


def _thread_kernel(body_of_tx, threads=4):
    """A one-block kernel over a 4-element buffer, written directly in IR."""
    buf = n.Buffer("X", "float32", (n.IntImm("int64", 4),))
    tx = n.Var("tx")
    root = n.For(tx, n.IntImm("int64", 0), n.IntImm("int64", threads), "thread_binding",
                 body_of_tx(buf, tx), "threadIdx.x")
    return n.PrimFunc("probe", (buf,), root, (buf,), {}), buf


def test_emulator_reports_out_of_bounds_access():
    func, buf = _thread_kernel(lambda b, tx: n.Store(b, n.FloatImm("float32", 1.0),
                                                     n.Add(tx, n.IntImm("int64", 1))))
    x = np.zeros(4, "float32")
    with pytest.raises(EmulationError, match=r"out-of-bounds access X\[4\] \(size 4\)"):
        Emulator(func).run({id(buf): x}, {})


def test_emulator_reports_a_barrier_not_every_thread_reaches():
    def body(b, tx):
        return n.IfThenElse(n.LT(tx, n.IntImm("int64", 2)), n.Barrier("shared"))
    func, buf = _thread_kernel(body)
    with pytest.raises(EmulationError, match="reached by 2 of 4 threads"):
        Emulator(func).run({id(buf): np.zeros(4, "float32")}, {})


@settings(max_examples=8, deadline=None)
@given(M=st.integers(1, 40), N=st.integers(1, 40), K=st.integers(1, 40),
       ty=st.sampled_from([1, 2, 4]), tx=st.sampled_from([2, 4, 8]),
       vm=st.sampled_from([1, 2, 3]), vn=st.sampled_from([1, 2, 4]),
       kt=st.sampled_from([1, 4, 8]), vec=st.sampled_from([1, 2, 4]),
       double=st.booleans(), seed=st.integers(0, 2**16))
def test_random_matmul_tilings_match_numpy(M, N, K, ty, tx, vm, vn, kt, vec, double, seed):
    rng = np.random.default_rng(seed)
    A, B = td.placeholder((M, K), name="A"), td.placeholder((K, N), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"ty": ty, "tx": tx, "vm": vm, "vn": vn, "kt": kt, "vec": vec,
                           "double_buffer": int(double)})
    a, b = rng.standard_normal((M, K), "float32"), rng.standard_normal((K, N), "float32")
    np.testing.assert_allclose(emulate(s, [A, B, C], [a, b]), a @ b, rtol=1e-4, atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 300),
       threads=st.sampled_from([1, 8, 32, 64, 96, 128, 1024]),
       op=st.sampled_from(["sum", "max", "min"]), seed=st.integers(0, 2**16))
def test_random_cross_thread_reductions_match_numpy(rows, cols, threads, op, seed):
    X = td.placeholder((rows, cols), name="X")
    k = td.reduce_axis((0, cols), name="k")
    R = td.compute((rows,), lambda i: getattr(td, op)(X[i, k], axis=k), name="R")
    s = td.create_schedule(R.op)
    ko, ki = s[R].split(k, factor=threads)
    s[R].bind(R.op.axis[0], td.thread_axis("blockIdx.x"))
    s[R].bind(ki, td.thread_axis("threadIdx.x"))
    x = np.random.default_rng(seed).standard_normal((rows, cols)).astype("float32")
    want = getattr(x, op)(axis=1)
    np.testing.assert_allclose(emulate(s, [X, R], [x]), want, rtol=1e-4, atol=1e-4)


def test_emulator_bounds_checks_whole_tensor_core_tiles():
    """A 16x16 store whose first element is in bounds but whose last is not."""
    i64 = lambda v: n.IntImm("int64", v)  # noqa: E731
    out = n.Buffer("C", "float32", (i64(256),))
    acc = n.Buffer("acc", "float32", (i64(256),), "wmma.accumulator")

    def load(b, k):
        return n.Load("float32", b, i64(k))
    fill = n.Evaluate(n.Call("int32", "wmma.fill", (load(acc, 0), load(acc, 16),
                                                    n.FloatImm("float32", 1.0))))
    store = n.Evaluate(n.Call("int32", "wmma.store", (load(out, 16), load(out, 32),
                                                      load(acc, 0), load(acc, 16))))
    root = n.For(n.Var("tx"), i64(0), i64(32), "thread_binding",
                 n.Allocate(acc, i64(256), n.seq(fill, store)), "threadIdx.x")
    func = n.PrimFunc("probe", (out,), root, (out,), {})
    with pytest.raises(EmulationError, match=r"out-of-bounds store_matrix_sync of C: "
                                             r"elements 16\.\.271 \(size 256\)"):
        Emulator(func).run({id(out): np.zeros(256, "float32")}, {})


@settings(max_examples=10, deadline=None)
@given(R=st.integers(1, 24), C=st.integers(1, 40), ty=st.sampled_from([1, 2, 4]),
       tx=st.sampled_from([4, 8, 16, 32]), fetch=st.sampled_from([1, 3, 8, 32, 64]),
       shared=st.booleans(), seed=st.integers(0, 2**16))
def test_random_stencils_with_shared_staging_match_numpy(R, C, ty, tx, fetch, shared, seed):
    """out[i, j] = P[i, j] * P[i, min(j + 1, C - 1)], P = tanh(A) + 1: the block's tile
    of P (plus a halo column) staged in shared memory by ``fetch`` threads, or inlined."""
    A = td.placeholder((R, C), name="A")
    P = td.compute((R, C), lambda i, j: td.tanh(A[i, j]) + 1.0, name="P")
    out = td.compute((R, C), lambda i, j: P[i, j] * P[i, td.minimum(j + 1, C - 1)],
                     name="out")
    s = td.create_schedule(out.op)
    by, yi = s[out].split(out.op.axis[0], factor=ty)
    bx, xi = s[out].split(out.op.axis[1], factor=tx)
    s[out].reorder(by, bx, yi, xi)
    for ax, tag in ((by, "blockIdx.y"), (bx, "blockIdx.x"), (yi, "threadIdx.y"),
                    (xi, "threadIdx.x")):
        s[out].bind(ax, td.thread_axis(tag))
    if shared:
        s[P].set_scope("shared")
        s[P].compute_at(s[out], bx)
        fused = s[P].fuse(*P.op.axis)
        _, f = s[P].split(fused, factor=fetch)
        s[P].bind(f, td.thread_axis("threadIdx.x"))
    else:
        s[P].compute_inline()
    a = np.random.default_rng(seed).standard_normal((R, C)).astype("float32")
    p = np.tanh(a) + 1.0
    want = p * p[:, np.minimum(np.arange(C) + 1, C - 1)]
    np.testing.assert_allclose(emulate(s, [A, out], [a]), want, rtol=1e-5, atol=1e-6)


def test_nontemporal_pragma_becomes_cache_streaming_stores():
    n = 1000
    A = td.placeholder((n,), name="A")
    B = td.compute((n,), lambda i: A[i] * 2.0 + 1.0, name="B")
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=128)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[B].pragma(tx, "nontemporal")
    assert "__stcs(&" in td.build(s, [A, B], target="cuda -arch=sm_80").get_source()
    a = np.random.default_rng(0).standard_normal(n).astype("float32")
    np.testing.assert_allclose(emulate(s, [A, B], [a]), a * 2 + 1, rtol=1e-6)


def _copy_through_local(n_elems=256):
    """B = 2*A, each thread staging its 8 elements of A in a local array with float4s."""
    A = td.placeholder((n_elems,), name="A")
    B = td.compute((n_elems,), lambda i: A[i] * 2.0, name="B")
    s = td.create_schedule(B.op)
    AL = s.cache_read(A, "local", [B])
    bx, tx = s[B].split(B.op.axis[0], factor=32)
    tx, v = s[B].split(tx, factor=8)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[AL].compute_at(s[B], tx)
    _, vi = s[AL].split(AL.op.axis[0], factor=4)
    s[AL].vectorize(vi)
    return s, [A, B]


def test_a_local_array_moved_as_float4s_is_16_byte_aligned():
    """A float array is 4-byte aligned in C; one read and written as float4 must be
    declared 16-byte aligned, or the GPU faults on a misaligned address."""
    s, args = _copy_through_local()
    src = td.build(s, args, target="cuda -arch=sm_80").get_source()
    assert "*(float4*)(&A_local[" in src
    assert "__align__(16) float A_local[8];" in src
    a = np.random.default_rng(0).standard_normal(256).astype("float32")
    np.testing.assert_allclose(emulate(s, args, [a]), a * 2, rtol=1e-6)


def _vector_copy(n_elems=256, shift=0):
    A = td.placeholder((n_elems + shift,), name="A")
    B = td.compute((n_elems,), lambda i: A[i + shift], name="B")
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=32)
    tx, v = s[B].split(tx, factor=4)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[B].vectorize(v)
    return s, [A, B]


def test_emulating_on_a_misaligned_view_is_refused_like_on_the_gpu():
    """The kernels move float4s, so their arrays must start on 16 bytes (the device
    runtime refuses other pointers); a view at an odd offset once crashed the emulator."""
    s, args = _vector_copy()
    f = td.build(s, args, target="cuda -arch=sm_80")
    assert "float4" in f.get_source()
    a = np.arange(257, dtype="float32")[1:]
    b = np.full(256, np.nan, "float32")
    with pytest.raises(ValueError, match=r"argument 'A'.*16-byte aligned"):
        f.emulate(a, b)
    f.emulate(a.copy(), b)
    np.testing.assert_array_equal(b, a)


def test_vectors_whose_start_is_not_16_byte_aligned_are_moved_lane_by_lane(rng):
    """A load at an odd offset (A[i + 1]) and shared rows padded to 17 floats: not
    provably on 16 bytes, so no float4 for them (the aligned store of B may be one);
    the results stay right."""
    s, args = _vector_copy(shift=1)
    src = td.build(s, args, target="cuda -arch=sm_80").get_source()
    assert "float4*)(&A[" not in src
    a = rng.standard_normal(257).astype("float32")
    np.testing.assert_array_equal(emulate(s, args, [a]), a[1:])

    A, B = td.placeholder((64, 64), name="A"), td.placeholder((64, 64), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"double_buffer": 0})
    for stage in s.stages:
        if stage.op.name.endswith(".shared"):
            stage.storage_align(stage.op.axis[0], 16, 1)
    src = td.build(s, [A, B, C], target="cuda -arch=sm_80").get_source()
    assert "float4" not in src and "__shared__" in src
    a, b = rng.standard_normal((64, 64), "float32"), rng.standard_normal((64, 64), "float32")
    np.testing.assert_allclose(emulate(s, [A, B, C], [a, b]), a @ b, rtol=1e-4, atol=1e-4)


def test_a_warp_shuffle_reduction_in_a_block_of_several_warps_ends_with_a_barrier(rng):
    """insert_barriers counts an AllReduce as a block-wide barrier; a 32-wide reduction in
    a block of 4 warps is shuffles only, which order just one warp, so the generated code
    must add the __syncthreads() the lowering relied on."""
    A = td.placeholder((8, 32), name="A")
    k = td.reduce_axis((0, 32), "k")
    B = td.compute((8,), lambda i: td.sum(A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    io, ii = s[B].split(B.op.axis[0], factor=4)
    s[B].bind(io, td.thread_axis("blockIdx.x"))
    s[B].bind(ii, td.thread_axis("threadIdx.y"))
    s[B].bind(k, td.thread_axis("threadIdx.x"))
    f = td.build(s, [A, B], target="cuda -arch=sm_80")
    source = f.get_source()
    assert "__shfl_xor_sync" in source
    after_shuffles = source[source.rindex("__shfl_xor_sync"):]
    assert "__syncthreads();" in after_shuffles
    a = rng.standard_normal((8, 32)).astype("float32")
    b = np.full(8, np.nan, "float32")
    f.emulate(a, b)
    np.testing.assert_allclose(b, a.sum(axis=1), rtol=1e-5, atol=1e-5)


def test_shared_memory_counts_each_array_from_its_128_byte_start():
    """Two shared tiles of 6143 floats and one of a float: 49148 bytes, but each array
    starts on 128 bytes (as declared, and as ptxas lays them out): 49280, over the
    static 48 KiB, so the arrays are carved from dynamic shared memory at those starts;
    an architecture that allows a block no more than 48 KiB refuses it."""
    from .helpers import three_shared_arrays
    s, (A, B) = three_shared_arrays()
    f = td.build(s, [A, B], target="cuda -arch=sm_80")
    assert [k.dynamic_shared for k in f.plan.kernels] == [49280]
    carved = [line.split("td_dynamic_shared + ")[1] for line in f.get_source().splitlines()
              if "(td_dynamic_shared + " in line]
    assert carved == ["0);", "24576);", "49152);"]
    with pytest.raises(td.BuildError, match="49280 bytes of shared memory .* exceed the "
                                            "49152-byte limit per block on sm_62"):
        td.build(s, [A, B], target="cuda -arch=sm_62")


def test_a_vectorized_run_reads_a_guarded_load_only_where_its_guard_holds(rng):
    """A thread's 4 outputs go out as one float4, and X[i - 1, j] (aligned, but read
    only for i >= 1: a guard the 4 lanes share, so an if_then_else, not a mask) stays
    behind its guard: read as a float4 before it, the first row's read fell before X
    (found by the GPU fuzzer)."""
    X = td.placeholder((8, 8), name="X")
    Y = td.compute((8, 8), lambda i, j: td.if_then_else(i >= 1, X[i - 1, j], 0.0)
                   + X[i, j], name="Y")
    s = td.create_schedule(Y.op)
    run, lane = s[Y].split(s[Y].fuse(*Y.op.axis), factor=4)
    bx, tx = s[Y].split(run, factor=8)
    s[Y].bind(bx, td.thread_axis("blockIdx.x"))
    s[Y].bind(tx, td.thread_axis("threadIdx.x"))
    s[Y].vectorize(lane)
    src = td.build(s, [X, Y], target="cuda -arch=sm_80").get_source()
    assert len(re.findall(r"const float4 \w+ =", src)) == 1 and "*(float4*)(&Y[" in src
    x = rng.standard_normal((8, 8)).astype("float32")
    np.testing.assert_allclose(emulate(s, [X, Y], [x]),
                               x + np.concatenate([np.zeros((1, 8), "float32"), x[:-1]]))


def test_a_launch_index_of_extent_one_folds_to_its_minimum():
    """conv2d on a batch of one: the batch axis is bound to blockIdx.z (extent 1). The
    thread's accumulator block must be indexed by constants only (else the CUDA
    compiler keeps it in local memory): no launch index in its reads."""
    from schedules.cuda.workloads import WORKLOADS
    s, args = WORKLOADS["conv2d"].make()
    text = str(td.lower(s, args, target="cuda"))
    local_reads = re.findall(r"conv2d_nchw\.flat\.local\[([^\]]*)\]", text)
    assert local_reads and all(re.fullmatch(r"\d+", i) for i in local_reads), \
        sorted(set(local_reads))[:5]
    before = str(td.lower(s, args, target="cuda", stop_after="inject_virtual_threads"))
    assert re.search(r"conv2d_nchw\.flat\.local\[[^\]]*\bb\b", before)


def test_a_pipelined_tile_index_is_a_32_bit_remainder(rng):
    """The fp32 matmul's 3-stage pipeline indexes its tile copies by ko % 3 (and
    (ko + 2) % 3): with ko's loop bounds known to fit 32 bits, the remainder is taken
    in 32 bits (a multiply by the reciprocal), not in 64 (a long multiply-high with a
    slow path); the results stay right."""
    A, B = td.placeholder((64, 64), name="A"), td.placeholder((64, 64), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"stages": 3})
    src = td.build(s, [A, B, C], target="cuda -arch=sm_80").get_source()
    assert "% 3u" in src and "% 3LL" not in src
    a, b = rng.standard_normal((64, 64), "float32"), rng.standard_normal((64, 64), "float32")
    np.testing.assert_allclose(emulate(s, [A, B, C], [a, b]), a @ b, rtol=1e-4, atol=1e-4)


def _copy_source(rows: int, cols: int) -> str:
    from schedules.cuda.generic import bind_flat
    A = td.placeholder((rows, cols), name="A")
    B = td.compute((rows, cols), lambda i, j: A[i, j] * 2.0, name="B")
    s = td.create_schedule(B.op)
    bind_flat(s[B], 256)
    return td.build(s, [A, B], target="cuda -arch=sm_80").get_source()


def test_index_arithmetic_is_32_bit_where_every_step_fits():
    """Thread and loop indices are ints and the index arithmetic stays in 32 bits (half
    the instructions of 64-bit adds and multiplies) where every step provably fits;
    a tensor of over 2^30 elements keeps 64-bit indices (40000 x 40000 floats: the
    flat index 40000*i + j exceeds what an int holds)."""
    small = _copy_source(1000, 1000)
    assert "const int " in small and "LL" not in small.split("__global__")[1]
    large = _copy_source(40000, 40000)
    body = large.split("__global__")[1]
    assert "LL" in body and "long long" in body


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(-5, 5))
def test_narrow_index_arithmetic_keeps_negative_offsets(rows, cols, shift):
    """A read shifted past the start of a row (a padded window's offset, negative
    before its guard) computed in 32 bits reads the same elements."""
    A = td.placeholder((rows, cols), name="A")
    B = td.compute((rows, cols), lambda i, j: td.if_then_else(
        td.all(j + shift >= 0, j + shift < cols), A[i, j + shift], -1.0), name="B")
    from schedules.cuda.generic import bind_flat
    s = td.create_schedule(B.op)
    bind_flat(s[B], 64)
    a = np.arange(rows * cols, dtype="float32").reshape(rows, cols)
    got = emulate(s, [A, B], [a])
    want = np.full((rows, cols), -1.0, "float32")
    lo = max(0, -shift)
    hi = max(lo, min(cols, cols - shift))
    want[:, lo:hi] = a[:, lo + shift:hi + shift]
    np.testing.assert_array_equal(got, want)


def test_a_no_unroll_pragma_keeps_the_loop_rolled(rng):
    """``pragma(ax, "no_unroll")``: the CUDA loop gets ``#pragma unroll 1`` (the conv2d
    template's gathers: unrolled, they spilled registers on sm_90a)."""
    A = td.placeholder((64, 8), name="A")
    B = td.compute((64,), lambda i: A[i, 0] + A[i, 7], name="B")
    s = td.create_schedule(B.op)
    AS = s.cache_read(A, "shared", [B])
    bx, tx = s[B].split(B.op.axis[0], factor=64)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[AS].compute_at(s[B], bx)
    outer, tx = s[AS].split(s[AS].fuse(*AS.op.axis), factor=64)
    s[AS].bind(tx, td.thread_axis("threadIdx.x"))
    s[AS].pragma(outer, "no_unroll")
    src = td.build(s, [A, B], target="cuda -arch=sm_80").get_source()
    assert re.search(r"#pragma unroll 1\s*\n\s*for \(int ax0_ax1_fused_outer", src)
    a = rng.standard_normal((64, 8)).astype("float32")
    np.testing.assert_array_equal(emulate(s, [A, B], [a]), a[:, 0] + a[:, 7])
