"""The CUDA emulator catches what a GPU would punish: races (random thread order, and a
race detector on shared memory), vector accesses out of bounds or misaligned, warp
intrinsics whose masks leave out their callers or sources, reading uninitialized memory
(poison); and it runs warp-synchronous code in lock-step on request.

Kernels are written three ways: tensordsl schedules, IR built by hand (what no schedule
would produce: a missing barrier, a straddling vector), and CUDA C (warp intrinsics with
odd masks)."""
import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda import schedule_for
from schedules.cuda.matmul import schedule_matmul
from targets.cuda import emulate as emu
from targets.cuda.emulate import EmulationError, Emulator, emulate_source
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import Mutator

SEEDS = (1, 2, 3)


def i64(v):
    return n.IntImm("int64", v)


def _kernel(params, body_of_tx, threads=32, allocations=()):
    """One block of ``threads`` threads running ``body_of_tx(tx)``, written in IR;
    ``allocations``: (buffer, extent) of shared or local arrays around the body."""
    tx = n.Var("tx")
    body = body_of_tx(tx)
    for buf, extent in allocations:
        body = n.Allocate(buf, i64(extent), body)
    root = n.For(tx, i64(0), i64(threads), "thread_binding", body, "threadIdx.x")
    return n.PrimFunc("probe", tuple(params), root, tuple(params), {})


def _run(func, *arrays, **options):
    Emulator(func).run({id(p): a for p, a in zip(func.params, arrays)}, {}, **options)


def _nan(size, dtype="float32"):
    return np.full(size, np.nan, dtype)


# ---------------------------------------------------------------- races and thread order


def _shifted_through_shared(barrier: bool):
    """Y[t] = S[max(t - 1, 0)] after S[t] = X[t]: each thread reads what its lower
    neighbour wrote to shared memory, with or without a barrier in between."""
    X = n.Buffer("X", "float32", (i64(32),))
    Y = n.Buffer("Y", "float32", (i64(32),))
    S = n.Buffer("S", "float32", (i64(32),), "shared")

    def body(tx):
        fill = n.Store(S, n.Load("float32", X, tx), tx)
        use = n.Store(Y, n.Load("float32", S, n.Max(n.Sub(tx, i64(1)), i64(0))), tx)
        return n.seq(fill, n.Barrier("shared") if barrier else None, use)
    return _kernel((X, Y), body, allocations=[(S, 32)])


def _shifted_want(x):
    return x[np.maximum(np.arange(32) - 1, 0)]


@pytest.mark.parametrize("order", ["sequential", "random"])
def test_a_missing_barrier_is_reported_as_a_race_in_any_order(order):
    x = np.arange(32, dtype="float32")
    for seed in SEEDS:
        with pytest.raises(EmulationError, match=r"race on shared memory: thread \(\d+,0,0\) "
                                                 r"of block \(0,0,0\) (reads|writes) S\[\d+\]"):
            _run(_shifted_through_shared(barrier=False), x, _nan(32), seed=seed, order=order)


def test_the_same_kernel_with_its_barrier_passes_in_every_order():
    x = np.arange(32, dtype="float32")
    for seed in SEEDS:
        y = _nan(32)
        _run(_shifted_through_shared(barrier=True), x, y, seed=seed)
        np.testing.assert_array_equal(y, _shifted_want(x))


class _DropBarriers(Mutator):
    def visit_Barrier(self, node):
        return n.Evaluate(n.IntImm("int32", 0))


def _staged_schedule():
    """B[i] = P[(i + 1) % 64] * 3, P = A + 1 staged in shared memory by 8 of the block's
    32 threads: each thread reads what others wrote."""
    A = td.placeholder((64,), name="A")
    P = td.compute((64,), lambda i: A[i] + 1.0, name="P")
    B = td.compute((64,), lambda i: P[(i + 1) % 64] * 3.0, name="B")
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=32)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[P].set_scope("shared")
    s[P].compute_at(s[B], bx)
    _, fill = s[P].split(P.op.axis[0], factor=8)
    s[P].bind(fill, td.thread_axis("threadIdx.x"))
    return s, A, B


def test_a_schedule_lowered_without_its_barrier_is_caught():
    s, A, B = _staged_schedule()
    func = td.lower(s, [A, B], target="cuda")
    assert "barrier(shared)" in str(func)
    a = np.random.default_rng(0).standard_normal(64).astype("float32")
    for seed in SEEDS:
        b = _nan(64)
        _run(func, a, b, seed=seed)
        np.testing.assert_allclose(b, (np.roll(a, -1) + 1) * 3, rtol=1e-6)
        with pytest.raises(EmulationError, match=r"race on shared memory: .* P(_shared)?\["):
            _run(func.with_body(_DropBarriers().visit(func.body)), a, _nan(64), seed=seed)


def _through_global():
    """Z[t] = Y[max(t - 1, 0)] after Y[t] = 2 X[t], through global memory (which the
    race detector does not watch): right only if each thread runs after its neighbour."""
    X, Y, Z = (n.Buffer(name, "float32", (i64(64),)) for name in "XYZ")

    def body(tx):
        return n.seq(n.Store(Y, n.Mul(n.Load("float32", X, tx), n.FloatImm("float32", 2.0)), tx),
                     n.Store(Z, n.Load("float32", Y, n.Max(n.Sub(tx, i64(1)), i64(0))), tx))
    return _kernel((X, Y, Z), body, threads=64)


def test_random_order_changes_the_result_of_an_order_dependent_kernel_and_a_seed_replays_it():
    x = np.arange(1, 65, dtype="float32")
    want = 2 * x[np.maximum(np.arange(64) - 1, 0)]
    func = _through_global()
    z = _nan(64)
    _run(func, x, _nan(64), z, order="sequential")     # thread order: as written
    np.testing.assert_array_equal(z, want)
    results = {}
    for seed in SEEDS:
        z = _nan(64)
        _run(func, x, _nan(64), z, seed=seed)
        assert np.isnan(z).any(), f"seed {seed}: every thread ran after its neighbour"
        results[seed] = z
        assert emu.last_seed == seed
    again = _nan(64)
    _run(func, x, _nan(64), again, seed=SEEDS[0])
    np.testing.assert_array_equal(again, results[SEEDS[0]])      # NaNs in the same places
    assert not np.array_equal(results[1], results[2], equal_nan=True)


def test_the_seed_comes_from_the_environment_and_is_in_every_error(monkeypatch):
    x = np.arange(32, dtype="float32")
    monkeypatch.setenv("TENSORDSL_EMU_SEED", "4242")
    with pytest.raises(EmulationError, match="seed 4242; replay with TENSORDSL_EMU_SEED=4242") as e:
        _run(_shifted_through_shared(barrier=False), x, _nan(32))
    assert e.value.seed == 4242 and emu.last_seed == 4242
    monkeypatch.delenv("TENSORDSL_EMU_SEED")
    _run(_shifted_through_shared(barrier=True), x, _nan(32))
    first = emu.last_seed
    _run(_shifted_through_shared(barrier=True), x, _nan(32))
    assert emu.last_seed != first            # a fresh seed per run (2**32 of them)
    with pytest.raises(EmulationError, match="sequential order") as e:
        _run(_shifted_through_shared(barrier=False), x, _nan(32), order="sequential")
    assert e.value.seed is None
    with pytest.raises(ValueError, match="order must be"):
        _run(_shifted_through_shared(barrier=True), x, _nan(32), order="reversed")


def test_module_emulate_takes_seed_order_and_lockstep(rng):
    s, A, B = _staged_schedule()
    f = td.build(s, [A, B], target="cuda -arch=sm_80")
    a = rng.standard_normal(64).astype("float32")
    for options in ({"seed": 5}, {"order": "sequential"}, {"warp_lockstep": True, "seed": 6}):
        b = _nan(64)
        f.emulate(a, b, **options)
        np.testing.assert_allclose(b, (np.roll(a, -1) + 1) * 3, rtol=1e-6)
    assert emu.last_seed == 6


def test_redundant_stores_of_one_value_are_not_a_race():
    """Every thread stores the same value to S[0] (a shared stage every thread computes)
    and, after a barrier, reads it: benign. A different value per thread is a race."""
    X = n.Buffer("X", "float32", (i64(32),))
    S = n.Buffer("S", "float32", (i64(1),), "shared")

    def kernel(value_of_tx):
        return _kernel((X,), lambda tx: n.seq(
            n.Store(S, value_of_tx(tx), i64(0)), n.Barrier("shared"),
            n.Store(X, n.Load("float32", S, i64(0)), tx)), allocations=[(S, 1)])
    x = _nan(32)
    _run(kernel(lambda tx: n.FloatImm("float32", 7.0)), x, seed=1)
    np.testing.assert_array_equal(x, 7.0)
    with pytest.raises(EmulationError, match=r"writes S\[0\], which thread .* wrote"):
        _run(kernel(lambda tx: n.Cast("float32", tx)), x, seed=1)


# ---------------------------------------------------------------- vector accesses


def test_a_float4_access_straddling_the_end_of_a_buffer_is_reported():
    A = n.Buffer("A", "float32", (i64(6),))
    B = n.Buffer("B", "float32", (i64(8),))
    ramp = n.Ramp(i64(4), i64(1), 4)
    func = _kernel((A, B), lambda tx: n.IfThenElse(
        n.EQ(tx, i64(0)), n.Store(B, n.Load("float32x4", A, ramp), ramp)), threads=1)
    from targets.cuda import codegen
    assert "TD_VEC(float4, A, 4)" in codegen.generate(func, checked=True)
    with pytest.raises(EmulationError, match=r"out-of-bounds float4 access A\[4\.\.7\] "
                                             r"\(size 6\) in thread \(0,0,0\)"):
        _run(func, np.zeros(6, "float32"), np.zeros(8, "float32"))


def test_a_misaligned_float4_access_is_reported():
    """The matmul template (without cp.async: ``stages`` 0) moves A in float4s; an A one
    float into an aligned buffer."""
    A, B = td.placeholder((32, 16), name="A"), td.placeholder((16, 32), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"ty": 4, "tx": 4, "vm": 2, "vn": 2, "kt": 8, "vec": 4, "stages": 0})
    f = td.build(s, [A, B, C], target="cuda -arch=sm_80")
    assert "float4" in f.get_source()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((32, 16), "float32"), rng.standard_normal((16, 32), "float32")
    shifted = td.nd.aligned_numpy(32 * 16 + 1, "float32")[1:].reshape(32, 16)
    shifted[...] = a
    # the runtime refuses such a view before any kernel runs, as on the device; the
    # emulator's own check of a misaligned global vector is test_vector_accesses_...[0]
    with pytest.raises(ValueError, match=r"argument 'A': the data pointer must be 16-byte "
                                         r"aligned"):
        f.emulate(shifted, b, _nan((32, 32)))
    c = _nan((32, 32))
    f.emulate(a.copy(), b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


VECTORS = r"""
__global__ void vectors(float* x, float* out) {
  __shared__ __align__(16) float s[8];
  TD_SHARED_STATE(s);
  float local[8];
  TD_POISON(local);
  const int t = threadIdx.x;
  if (t == 0) TD_VEC(float2, out, 0) = TD_VEC(float2, x, MODE == 0 ? 1 : 0);
  if (t == 0 && MODE == 1) TD_VEC_SHARED_STORE(float4, s, 2) = TD_VEC(float4, x, 0);
  if (t == 0 && MODE == 2) TD_VEC_ARRAY(float4, local, 4) = TD_VEC(float4, x, 0);
  if (t == 0 && MODE == 3) TD_VEC_SHARED_STORE(float2, s, 6) = TD_VEC(float2, x, 0);
}
"""


@pytest.mark.parametrize("mode,message", [
    (0, r"misaligned float2 access arg0\[1\] .* not a multiple of 8"),
    (1, r"misaligned float4 access s\[2\]"),
    (2, r"misaligned float4 access local\[4\] .* local is declared 4-byte aligned, a float4 "
        r"needs 16"),
])
def test_vector_accesses_anywhere_must_be_aligned(mode, message):
    with pytest.raises(EmulationError, match=message):
        emulate_source(f"#define MODE {mode}\n" + VECTORS, "vectors", (1, 1, 1), (1, 1, 1),
                       np.zeros(8, "float32"), np.zeros(8, "float32"))


def test_a_local_array_moved_as_float4_is_declared_16_byte_aligned():
    """A vectorized copy-out of a local cache stage moves float4s out of the local array:
    a GPU faults unless the array is declared 16-byte aligned (it was not; the emulator's
    check of declared alignment found it)."""
    A = td.placeholder((256,), name="A")
    B = td.compute((256,), lambda i: A[i] * 2.0, name="B")
    s = td.create_schedule(B.op)
    BL = s.cache_write(B, "local")
    bx, rest = s[B].split(B.op.axis[0], factor=64)
    tx, vi = s[B].split(rest, factor=4)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[B].vectorize(vi)
    s[BL].compute_at(s[B], tx)
    f = td.build(s, [A, B], target="cuda -arch=sm_80")
    source = f.get_source()
    assert "*(const float4*)(&B_local[0])" in source
    assert "__align__(16) float B_local[4];" in source
    a, b = np.random.default_rng(0).standard_normal(256).astype("float32"), _nan(256)
    f.emulate(a, b, seed=1)
    np.testing.assert_array_equal(b, 2 * a)


def test_an_aligned_float2_into_shared_memory_passes():
    x, out = np.arange(8, dtype="float32"), _nan(8)
    emulate_source("#define MODE 3\n" + VECTORS, "vectors", (1, 1, 1), (1, 1, 1), x, out)
    np.testing.assert_array_equal(out[:2], x[:2])


# ---------------------------------------------------------------- warp intrinsics

SHUFFLE = r"""
__global__ void shuffle(float* x, int* bits) {
  const int t = threadIdx.x;
  float v = TD_AT(x, t);
  unsigned r = 0;
  BODY
  TD_AT(x, t) = v;
  TD_AT(bits, t) = (int)r;
}
"""


def _shuffle(body, threads=32, **options):
    x = np.arange(threads, dtype="float32")
    bits = np.zeros(threads, "int32")
    emulate_source(SHUFFLE.replace("BODY", body), "shuffle", (1, 1, 1), (threads, 1, 1), x,
                   bits, **options)
    return x, bits.view("uint32")


def test_a_shuffle_whose_mask_leaves_out_its_caller_is_reported():
    # lanes 16..31 call with the mask of lanes 0..15
    with pytest.raises(EmulationError, match=r"__shfl_xor_sync\(mask 0x0000ffff\) called by "
                                             r"lane 16, which the mask leaves out"):
        _shuffle("v = __shfl_xor_sync(0x0000ffffu, v, 1);", seed=1, order="sequential")


def test_a_shuffle_reading_a_lane_outside_its_mask_is_reported():
    with pytest.raises(EmulationError, match=r"__shfl_sync\(mask 0x0000ffff\) in thread .*: "
                                             r"lane \d+ reads lane 20, which is not in the mask"):
        _shuffle("if (t < 16) v = __shfl_sync(0x0000ffffu, v, 20, 32);", seed=1)


def test_half_warps_shuffle_apart_with_their_own_masks():
    x, _ = _shuffle("v = __shfl_xor_sync(t < 16 ? 0x0000ffffu : 0xffff0000u, v, 1);", seed=2)
    np.testing.assert_array_equal(x, np.arange(32) ^ 1)


def test_shuffle_width_splits_the_warp_as_cuda_does():
    lane = np.arange(32)
    # xor: a lane of a later segment reads its own value, of an earlier one, that lane's
    x, _ = _shuffle("v = __shfl_xor_sync(0xffffffffu, v, 8, 8);", seed=3)
    src = lane ^ 8
    np.testing.assert_array_equal(x, np.where(src <= (lane & ~7) + 7, src, lane))
    x, _ = _shuffle("v = __shfl_down_sync(0xffffffffu, v, 3, 16);", seed=3)
    np.testing.assert_array_equal(x, np.where(lane % 16 + 3 < 16, lane + 3, lane))
    x, _ = _shuffle("v = __shfl_sync(0xffffffffu, v, 5, 8);", seed=3)
    np.testing.assert_array_equal(x, (lane & ~7) + 5)
    with pytest.raises(EmulationError, match="width 12"):
        _shuffle("v = __shfl_xor_sync(0xffffffffu, v, 1, 12);")


def test_ballot_any_all():
    _, bits = _shuffle("r = __ballot_sync(0xffffffffu, t % 3 == 0);"
                       "r += __any_sync(0xffffffffu, t == 7) << 1;"
                       "r -= __all_sync(0xffffffffu, t < 40);", seed=4)
    want = sum(1 << i for i in range(0, 32, 3)) + 2 - 1
    np.testing.assert_array_equal(bits, want)


def test_a_lane_at_syncthreads_while_its_warp_shuffles_is_reported():
    with pytest.raises(EmulationError, match=r"__shfl_xor_sync\(mask 0xffffffff\) .* waits "
                                             r"for lane 0, which waits at __syncthreads\(\)"):
        _shuffle("if (t == 0) __syncthreads(); else v = __shfl_xor_sync(0xffffffffu, v, 1);",
                 seed=5)


def test_exited_lanes_named_in_a_mask_do_not_block_it():
    x, _ = _shuffle("if (t >= 8) return; v = __shfl_xor_sync(0xffffffffu, v, 1);", seed=6)
    np.testing.assert_array_equal(x[:8], np.arange(8) ^ 1)


def test_a_shuffle_is_a_warp_barrier_not_a_block_one():
    """Two warps: warp 1 shuffles while warp 0 never does. (The shuffle used to be a
    __syncthreads() in disguise.)"""
    x, _ = _shuffle("if (t >= 32) v = __shfl_xor_sync(0xffffffffu, v, 2);", threads=64, seed=7)
    lane = np.arange(64)
    np.testing.assert_array_equal(x, np.where(lane >= 32, lane ^ 2, lane))


# ---------------------------------------------------------------- poison


def test_reading_shared_memory_before_writing_it_gives_nan():
    Y = n.Buffer("Y", "float32", (i64(32),))
    S = n.Buffer("S", "float32", (i64(32),), "shared")
    func = _kernel((Y,), lambda tx: n.Store(Y, n.Load("float32", S, tx), tx),
                   allocations=[(S, 32)])
    y = np.zeros(32, "float32")
    _run(func, y)
    assert np.isnan(y).all()


def test_uninitialized_integer_shared_and_local_arrays_hold_0xcd_bytes_and_local_floats_nan():
    Y = n.Buffer("Y", "int32", (i64(4),))
    Z = n.Buffer("Z", "float32", (i64(4),))
    S = n.Buffer("S", "int32", (i64(4),), "shared")
    L = n.Buffer("L", "float32", (i64(4),), "local")
    func = _kernel((Y, Z), lambda tx: n.seq(n.Store(Y, n.Load("int32", S, tx), tx),
                                            n.Store(Z, n.Load("float32", L, tx), tx)),
                   threads=4, allocations=[(S, 4), (L, 4)])
    y, z = np.zeros(4, "int32"), np.zeros(4, "float32")
    _run(func, y, z)
    np.testing.assert_array_equal(y.view("uint32"), 0xCDCDCDCD)
    assert np.isnan(z).all()


def test_intermediate_tensors_start_poisoned():
    """A global intermediate the kernel reads without writing: NaN, not numpy's zeros."""
    Y = n.Buffer("Y", "float32", (i64(4),))
    T = n.Buffer("T", "float32", (i64(4),))
    kernel = _kernel((Y,), lambda tx: n.Store(Y, n.Load("float32", T, tx), tx), threads=4)
    func = kernel.with_body(n.Allocate(T, i64(4), kernel.body))
    y = np.zeros(4, "float32")
    _run(func, y)
    assert np.isnan(y).all()


def test_shared_memory_is_poisoned_again_for_each_block():
    """Block 0 writes S, block 1 only reads it: on a GPU block 1 has its own S."""
    Y = n.Buffer("Y", "float32", (i64(2),))
    S = n.Buffer("S", "float32", (i64(1),), "shared")
    bx, tx = n.Var("bx"), n.Var("tx")
    body = n.seq(n.IfThenElse(n.EQ(bx, i64(0)), n.Store(S, n.FloatImm("float32", 1.0), i64(0))),
                 n.Barrier("shared"), n.Store(Y, n.Load("float32", S, i64(0)), bx))
    root = n.For(bx, i64(0), i64(2), "thread_binding",
                 n.Allocate(S, i64(1), n.For(tx, i64(0), i64(1), "thread_binding", body,
                                             "threadIdx.x")), "blockIdx.x")
    func = n.PrimFunc("probe", (Y,), root, (Y,), {})
    y = np.zeros(2, "float32")
    _run(func, y, order="sequential")
    assert y[0] == 1.0 and np.isnan(y[1])


# ---------------------------------------------------------------- warp lock-step

WARP_SUM = r"""
// the pre-Volta warp reduction: no barrier, the warp's lanes assumed to run together
__global__ void warp_sum(float* x, float* out) {
  __shared__ float s[32];
  TD_SHARED_STATE(s);
  const int t = threadIdx.x;
  TD_SHARED_STORE(s, t) = TD_AT(x, t);
  for (int d = 16; d > 0; d /= 2)
    if (t < d) TD_SHARED_STORE(s, t) = TD_SHARED_LOAD(s, t) + TD_SHARED_LOAD(s, t + d);
  if (t == 0) TD_AT(out, 0) = TD_SHARED_LOAD(s, 0);
}
__global__ void warp_shift(float* x, float* out) {
  __shared__ float s[32];
  TD_SHARED_STATE(s);
  const int t = threadIdx.x;
  TD_SHARED_STORE(s, t) = TD_AT(x, t);
  if (t < 31) TD_SHARED_STORE(s, t) = TD_SHARED_LOAD(s, t + 1);   // all read, then all write
  TD_AT(out, t) = TD_SHARED_LOAD(s, t);
}
"""


def test_warp_synchronous_code_works_in_lockstep_mode_and_is_a_race_otherwise():
    x = np.random.default_rng(0).standard_normal(32).astype("float32")
    for seed in SEEDS:
        out = _nan(32)
        emulate_source(WARP_SUM, "warp_sum", (1, 1, 1), (32, 1, 1), x, out, seed=seed,
                       warp_lockstep=True)
        np.testing.assert_allclose(out[0], x.sum(), rtol=1e-5)
        out = _nan(32)
        emulate_source(WARP_SUM, "warp_shift", (1, 1, 1), (32, 1, 1), x, out, seed=seed,
                       warp_lockstep=True)
        np.testing.assert_array_equal(out, np.append(x[1:], x[31]))
        with pytest.raises(EmulationError, match="race on shared memory"):
            emulate_source(WARP_SUM, "warp_sum", (1, 1, 1), (32, 1, 1), x, _nan(32), seed=seed)


def test_lockstep_orders_only_lanes_of_one_warp():
    """64 threads: thread t reads s[t + 32], written by a lane of the other warp."""
    source = r"""
    __global__ void across(float* x, float* out) {
      __shared__ float s[64];
      TD_SHARED_STATE(s);
      const int t = threadIdx.x;
      TD_SHARED_STORE(s, t) = TD_AT(x, t);
      TD_AT(out, t) = TD_SHARED_LOAD(s, (t + 32) % 64);
    }"""
    with pytest.raises(EmulationError, match="race on shared memory"):
        emulate_source(source, "across", (1, 1, 1), (64, 1, 1), np.zeros(64, "float32"),
                       _nan(64), seed=1, warp_lockstep=True)


def test_generated_warp_shuffle_reductions_run_in_lockstep_mode(rng):
    X = td.placeholder((3, 200), name="X")
    Y = dense.softmax(X)
    f = td.build(schedule_for("softmax", Y, config={"threads": 64}), [X, Y],
                 target="cuda -arch=sm_80")
    assert "__shfl_xor_sync" in f.get_source()
    x = rng.standard_normal((3, 200)).astype("float32")
    e = np.exp(x - x.max(-1, keepdims=True))
    for lockstep in (False, True):
        y = _nan((3, 200))
        f.emulate(x, y, seed=11, warp_lockstep=lockstep)
        np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_a_loop_variable_reused_with_a_wider_extent_gets_64_bit_indices_again():
    """The code generator's ranges are worked out from the loops around an expression:
    a loop that reuses a variable (a copied loop) with a wider extent must not keep the
    narrower loop's range (v * 2^28 fits 32 bits for v < 4, not for v < 16)."""
    from targets.cuda import codegen
    A = n.Buffer("A", "float32", (i64(2 ** 32),))
    v = n.Var("v")
    index = n.Mul(v, i64(2 ** 28))          # one expression object in both loops
    one = n.FloatImm("float32", 1.0)

    def body(tx):
        return n.IfThenElse(n.EQ(tx, i64(0)), n.Seq((
            n.For(v, i64(0), i64(4), "serial", n.Store(A, one, index)),
            n.For(v, i64(0), i64(16), "serial", n.Store(A, one, index)))))
    src = codegen.generate(_kernel((A,), body, threads=1))
    narrow, wide = [line.strip() for line in src.splitlines() if line.strip().startswith("A[")]
    assert "LL" not in narrow and "268435456LL" in wide
