"""cp.async pipelines (issue 20): ``s[T].pipeline(stages=N)`` (tensordsl/lower/
async_copies.py), its CUDA C (``td_cp_async``), the emulator's model of it
(emulate_async.h: a copy lands when its thread waits for its group, and an access while
it is in flight is a race), the fp32 matmul template pipelined by default, against numpy
in the emulator with randomized thread order, and LDGSTS in its SASS."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda.matmul import schedule_matmul
from targets.cuda import sass
from targets.cuda.emulate import EmulationError, emulate_source
from tensordsl.errors import ScheduleError
from tensordsl.ir import nodes as n
from tensordsl.lower.async_copies import pipeline_async_copies
from tests.helpers import poisoned

# ---------------------------------------------------------------- the emulator's model

# 32 threads: thread t copies x[t] into s[t] (valid: x[t]; else zeros), then reads its
# neighbour's s[(t + 1) % 32]. MODE 0: wait + barrier (right); 1: no wait; 2: wait, no
# barrier; 3: read its own element before waiting; 4: the copy's source out of bounds.
NEIGHBOURS = r"""
__global__ void neighbours(float* x, float* out) {
  __shared__ __align__(16) float s[32];
  TD_SHARED_STATE(s);
  const int t = threadIdx.x;
  TD_CP_ASYNC(s, t, x, MODE == 4 ? t + 1 : t, 1, VALID);
  TD_CP_ASYNC_COMMIT();
  if (MODE == 3) TD_AT(out, t) = TD_SHARED_LOAD(s, t);
  if (MODE != 1) TD_CP_ASYNC_WAIT(0);
  if (MODE != 2) __syncthreads();
  TD_AT(out, t) = TD_SHARED_LOAD(s, (t + 1) % 32);
}
"""


def _neighbours(mode: int, valid: str = "true", seed: int = 0):
    x, out = np.arange(32, dtype="float32") + 1, poisoned((32,), "float32")
    emulate_source(f"#define MODE {mode}\n#define VALID {valid}\n" + NEIGHBOURS, "neighbours",
                   (1, 1, 1), (32, 1, 1), x, out, seed=seed)
    return x, out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_copy_waited_for_and_synchronized_is_seen_by_all(seed):
    x, out = _neighbours(0, seed=seed)
    np.testing.assert_array_equal(out, np.roll(x, -1))


def test_a_failed_guard_fills_zeros():
    _, out = _neighbours(0, valid="(t % 2 == 0)")
    np.testing.assert_array_equal(out, np.where(np.arange(32) % 2 == 1, np.roll(
        np.arange(32, dtype="float32") + 1, -1), 0))


@pytest.mark.parametrize("mode,message", [
    (1, r"reads s\[\d+\] while a cp.async or TMA copy to it is in flight"),
    (3, r"reads s\[\d+\] while a cp.async or TMA copy to it is in flight"),
    (2, r"race on shared memory"),
    (4, r"out-of-bounds cp.async from arg0\[32\.\.32\] \(size 32\)"),
])
@pytest.mark.parametrize("seed", [0, 7])
def test_a_missing_wait_or_barrier_is_reported(mode, message, seed):
    with pytest.raises(EmulationError, match=message):
        _neighbours(mode, seed=seed)


# ---------------------------------------------------------------- the schedule primitive

def _matmul(M, N, K, config):
    A, B = td.placeholder((M, K), name="A"), td.placeholder((K, N), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, config)
    return s, [A, B, C]


def test_pipeline_refuses_fewer_than_two_stages():
    A = td.placeholder((64, 64), name="A")
    B = td.compute((64, 64), lambda i, j: A[i, j] * 2.0, name="B")
    s = td.create_schedule(B.op)
    AS = s.cache_read(A, "shared", [B])
    with pytest.raises(ScheduleError, match=r"stage 'A.shared': pipeline: stages must be an "
                                            r"int of at least 2, got 1"):
        s[AS].pipeline(1)


def test_the_loop_gets_a_prologue_one_wait_and_one_barrier():
    s, args = _matmul(64, 64, 64, {"ty": 4, "tx": 8, "vm": 2, "vn": 2, "kt": 8, "stages": 4})
    ir = str(td.lower(s, args, target="cuda"))
    assert "for k.c.outer.prologue in range(0, 3):" in ir      # 3 tiles ahead
    assert ir.count("cp_async_wait(int32(2))") == 1 and ir.count("barrier(shared)") == 1
    assert ir.count("pragma async_copy:") == 2 and ir.count("cp_async_commit()") == 2
    assert "(k.c.outer + 3) % 4*" in ir                          # 4 copies of each tile


def test_a_pipelined_schedule_replays_from_its_trace():
    from tensordsl.schedule import trace
    s, args = _matmul(64, 64, 64, {"ty": 4, "tx": 8, "vm": 2, "vn": 2, "kt": 8, "stages": 4})
    steps = trace.loads(trace.dumps(s.trace))
    assert {"kind": "pipeline", "stage": "A.shared", "args": {"stages": 4}} in [
        st.to_json() for st in steps]
    again = trace.replay(steps, args[-1].op)
    assert str(td.lower(again, args, target="cuda")) == str(td.lower(s, args, target="cuda"))


@pytest.mark.parametrize("M,N,K,config", [
    (64, 64, 64, {"ty": 4, "tx": 8, "vm": 2, "vn": 2, "kt": 8, "stages": 3}),
    (61, 37, 45, {"ty": 4, "tx": 8, "vm": 2, "vn": 2, "kt": 8, "stages": 3}),   # guards
    (40, 48, 16, {"ty": 4, "tx": 4, "vm": 2, "vn": 3, "kt": 4, "stages": 6}),   # > tiles
    (128, 128, 96, {"stages": 2}),
    (128, 96, 128, {"stages": 4}),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_pipelined_matmul_matches_numpy(M, N, K, config, seed, rng):
    s, args = _matmul(M, N, K, config)
    f = td.build(s, args, target="cuda -arch=sm_80")
    assert "td_cp_async<" in f.get_source()
    a, b = rng.standard_normal((M, K), "float32"), rng.standard_normal((K, N), "float32")
    c = poisoned((M, N), "float32")
    f.emulate(a, b, c, seed=seed)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_a_tile_computed_not_copied_is_stored_plainly_in_the_pipeline(rng):
    """A pipelined stage whose values are computed (here 2 * A) has nothing for cp.async
    to copy: its stores stay plain stores, ordered by the same wait and barrier."""
    A = td.placeholder((64, 64), name="A")
    A2 = td.compute((64, 64), lambda i, j: A[i, j] * 2.0, name="A2")
    B = td.placeholder((64, 64), name="B")
    k = td.reduce_axis((0, 64), name="k")
    C = td.compute((64, 64), lambda i, j: td.sum(A2[i, k] * B[k, j], axis=k), name="C")
    s = td.create_schedule(C.op)
    AS = s.cache_read(A2, "shared", [C])
    s[A2].compute_inline()
    i, j = C.op.axis
    io, ii = s[C].split(i, factor=8)
    s[C].bind(io, td.thread_axis("blockIdx.x"))
    s[C].bind(ii, td.thread_axis("threadIdx.x"))
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=8)
    s[C].reorder(io, ii, ko, j, ki)
    s[AS].compute_at(s[C], ko)
    ax = s[AS].fuse(*AS.op.axis)
    _, tx = s[AS].split(ax, factor=8)
    s[AS].bind(tx, td.thread_axis("threadIdx.x"))
    s[AS].pipeline(3)
    f = td.build(s, [A, B, C], target="cuda -arch=sm_80")
    source = f.get_source()
    assert "td_cp_async<" not in source and "td_cp_async_wait<1>();" in source
    a, b = rng.standard_normal((64, 64), "float32"), rng.standard_normal((64, 64), "float32")
    c = poisoned((64, 64), "float32")
    f.emulate(a, b, c, seed=3)
    np.testing.assert_allclose(c, (2 * a) @ b, rtol=1e-4, atol=1e-4)


def _kernel_with_loop(body_of):
    """A one-block kernel: ``for ko in range(8): body_of(ko, T, A, out)``, ``T`` a
    pipelined shared tile of 8 floats (3 stages: 24), ``A`` global."""
    i64 = lambda v: n.IntImm("int64", v)      # noqa: E731
    A, out = n.Buffer("A", "float32", (i64(64),)), n.Buffer("out", "float32", (i64(8),))
    T = n.Buffer("T", "float32", (i64(24),), "shared")
    ko, tx = n.Var("ko"), n.Var("tx")
    loop = n.For(ko, i64(0), i64(8), "serial", n.Allocate(T, i64(24), body_of(ko, tx, T, A,
                                                                                  out)))
    root = n.For(tx, i64(0), i64(8), "thread_binding", loop, "threadIdx.x")
    return n.PrimFunc("k", (A, out), root, (out,), {"pipelined": ((T, ko, 3, None),)})


def test_the_pass_refuses_a_loop_whose_readers_come_before_the_barrier():
    def body(ko, tx, T, A, out):
        slot = n.Add(n.Mul(n.FloorMod(ko, n.IntImm("int64", 3)), n.IntImm("int64", 8)), tx)
        return n.seq(n.Store(out, n.Load("float32", T, slot), tx),      # a reader first
                     n.Store(T, n.Load("float32", A, n.Add(n.Mul(ko, n.IntImm("int64", 8)),
                                                           tx)), slot),
                     n.Barrier("shared"))
    with pytest.raises(td.errors.BuildError, match=r"pipeline: loop 'ko' must start with the "
                                                   r"copies of the pipelined tiles \(T\)"):
        pipeline_async_copies(_kernel_with_loop(body))


# ---------------------------------------------------------------- the machine code

@pytest.mark.skipif(sass.missing_tools() is not None,
                    reason=f"no SASS disassembler: {sass.missing_tools()}")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_the_inner_loop_copies_with_ldgsts_and_waits_once(arch):
    s, args = _matmul(512, 512, 1024, {})      # (under LARGE_MIN: the 4 x 4 tiles)
    f = td.build(s, args, target=f"cuda -arch={arch}")
    (k,) = sass.disassemble(f.cubin).values()
    loop = k.main_loop()
    # per thread and tile: one 16-byte copy of A's 32x16 tile, two of B's 16x64
    assert loop.count("LDGSTS") == 3 and loop.count("LDG") == 0
    assert loop.count("LDGDEPBAR") == 1 and loop.count("DEPBAR") == 1     # commit, wait
    assert loop.count("BAR.SYNC") == 1 and loop.count("FFMA") == 256
    assert k.spills == 0
