"""The miscompile fuzzer on the GPU path: random programs (``tests/property/programs``)
with random GPU schedules — flattened loops bound to blocks and threads of random sizes,
producers inlined or computed in kernels of their own, reductions across threads, local
caches of outputs, shared-memory staging of inputs (per block, or per reduction chunk and
double-buffered) — compiled to CUDA C, run through the
emulator and compared with numpy. Each case compiles a host library, so CI runs a small
budget; ``TENSORDSL_FUZZ=long`` runs more."""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensordsl as td
from tensordsl.te.tensor import PlaceholderOp

from tests.helpers import poisoned

from ..property.programs import programs

LONG = os.environ.get("TENSORDSL_FUZZ") == "long"
CASES = 400 if LONG else 30

THREADS = [1, 2, 3, 8, 32, 33, 64, 128]


def _bind_flat(draw, stage, axes, threads=None, vector=False):
    """Fuse ``axes``, split by a (random) thread count: blocks outside, threads inside;
    with ``vector``, each thread's run of 4 elements vectorized (the code generator's
    16-byte accesses where a run is provably aligned, lane by lane elsewhere)."""
    fused = axes[0] if len(axes) == 1 else stage.fuse(*axes)
    if vector:
        fused, lanes = stage.split(fused, factor=4)
        stage.vectorize(lanes)
    bx, tx = stage.split(fused, factor=threads or draw(st.sampled_from(THREADS)))
    stage.bind(bx, td.thread_axis("blockIdx.x"))
    stage.bind(tx, td.thread_axis("threadIdx.x"))
    return bx, tx


def _static(t) -> bool:
    return all(isinstance(d, td.ir.nodes.IntImm) for d in t.shape)


def _fetch(draw, s, stage, src, at, threads, double):
    """``src`` staged in shared memory at loop ``at`` of ``stage``, fetched by the
    block's ``threads`` threads; double-buffered across ``at``'s iterations if asked."""
    cache = s.cache_read(src, "shared", [stage])
    s[cache].compute_at(stage, at)
    axes = list(s[cache].op.axis)
    fused = axes[0] if len(axes) == 1 else s[cache].fuse(*axes)
    _, tx = s[cache].split(fused, factor=threads)
    s[cache].bind(tx, td.thread_axis("threadIdx.x"))
    if double:
        s[cache].double_buffer()


def _staged_reduction(draw, s, stage):
    """Threads over the outputs, the reduction split into chunks; per chunk one input
    is staged in shared memory (double-buffered or not)."""
    op = stage.op
    threads = draw(st.sampled_from(THREADS))
    bx, tx = _bind_flat(draw, stage, list(stage.leaf_iter_vars[:len(op.axis)]), threads)
    ko, ki = stage.split(op.reduce_axis[0], factor=draw(st.sampled_from([1, 2, 5])))
    stage.reorder(bx, ko, tx, ki)
    inputs = [t for t in op.input_tensors if isinstance(t.op, PlaceholderOp)
              and t.dtype == "float32" and _static(t)]
    if inputs and _static(op.output(0)):
        src = inputs[draw(st.integers(0, len(inputs) - 1))]
        _fetch(draw, s, stage, src, ko, threads, draw(st.booleans()))


def _schedule_stage(draw, s, stage, vector_ok=False):
    op = stage.op
    spatial = list(stage.leaf_iter_vars[:len(op.axis)])
    if not spatial:
        return
    if op.reduce_axis and len(op.reduce_axis) == 1 and draw(st.booleans()):
        _staged_reduction(draw, s, stage)
        return
    if op.reduce_axis and draw(st.booleans()) and len(op.reduce_axis) == 1:
        # a reduction across the threads of a block: one block per output element
        fused = spatial[0] if len(spatial) == 1 else stage.fuse(*spatial)
        stage.bind(fused, td.thread_axis("blockIdx.x"))
        ko, ki = stage.split(op.reduce_axis[0], factor=draw(st.sampled_from(THREADS)))
        stage.reorder(fused, ko, ki) if draw(st.booleans()) else stage.reorder(fused, ki, ko)
        stage.bind(ki, td.thread_axis("threadIdx.x"))
        return
    _bind_flat(draw, stage, spatial,
               vector=vector_ok and not op.reduce_axis and draw(st.booleans()))


def _stage_inputs_in_shared(draw, s, out, bx):
    """Stage one input of the output in shared memory per block, fetched by the block's
    threads (a cooperative fetch of the region the block reads)."""
    inputs = [t for t in out.op.input_tensors if isinstance(t.op, PlaceholderOp)
              and t.dtype == "float32" and _static(t) and _static(out)]
    if not inputs:
        return
    src = inputs[draw(st.integers(0, len(inputs) - 1))]
    _fetch(draw, s, s[out], src, bx, draw(st.sampled_from(THREADS)), False)


@st.composite
def gpu_schedules(draw, program):
    out_t = program.stages[-1][0]
    s = td.create_schedule(out_t.op)
    local = None
    if not out_t.op.reduce_axis and draw(st.integers(0, 3)) == 0:
        local = s.cache_write(out_t, "local")
    for stage in list(reversed(s.stages)):
        if isinstance(stage.op, PlaceholderOp) or stage.op is getattr(local, "op", None):
            continue
        if not stage.is_output and not stage.op.reduce_axis and draw(st.booleans()):
            stage.compute_inline()
            continue
        _schedule_stage(draw, s, stage, vector_ok=local is None)
    if local is not None:
        out_stage = s[out_t]
        s[local].compute_at(out_stage, out_stage.leaf_iter_vars[-1])
    elif not out_t.op.reduce_axis and draw(st.integers(0, 2)) == 0:
        leaves = s[out_t].leaf_iter_vars
        bx = next(iv for iv in leaves if s[out_t].bound_thread.get(iv) is not None)
        _stage_inputs_in_shared(draw, s, out_t, bx)
    return s


@settings(max_examples=CASES, deadline=None, derandomize=not LONG,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_program_with_random_gpu_schedule_matches_numpy(data):
    program = data.draw(programs())
    out_t, expected = program.stages[-1]
    s = data.draw(gpu_schedules(program))
    args = program.inputs + [out_t]
    f = td.build(s, args, target="cuda -arch=sm_80")
    out = poisoned(expected.shape, expected.dtype)
    f.emulate(*program.input_arrays, out)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    try:
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * scale)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{td.lower(s, args, target='cuda')}") from None
