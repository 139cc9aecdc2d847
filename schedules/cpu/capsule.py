"""The CPU template of capsule routing (``kernels/capsule.py``: predictions and the
unrolled iterations of dynamic routing): one sample at a time.

Frameworks run routing as a string of kernels, each a pass over all of ``u_hat`` (batch
x in_caps x out_caps x out_dim: 23 MB at the paper's sizes, batch 32), so every
iteration reads it from memory twice (the weighted sum, the agreement). Here every
stage is computed at the output's sample loop (``compute_at``), the samples in
parallel: one sample's ``u_hat`` (737 KB) is made once — the predictions fused into the
routing — and stays in the core's L2 across all the iterations. Inside a sample each
stage runs its loops with the innermost capsule dimension in vector lanes; elementwise
stages (squash's scale, the logits' sum, the softmax's exponentials) are inlined into
their readers.
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import _extent, vector_factor
from .target import vector_lanes


def default_config() -> dict:
    return {}


def schedule_capsule_routing(s, out, config=None):
    schedule_per_sample(s, out, config)


def schedule_per_sample(s, out, config=None):
    """Every stage at the output's first loop (the sample), the samples in parallel:
    the routing, and derived kernels of the same shape (the routing's gradient with
    respect to its input, ``autodiff/operators.py``)."""
    O = s[out]
    sample = out.op.axis[0]
    O.parallel(sample)
    _lanes(O)
    for stage in s.stages:
        if not isinstance(stage.op, ComputeOp) or stage.op is out.op:
            continue
        if not stage.op.reduce_axis and stage.op.num_outputs == 1 and \
                _inlined_once(s, stage):
            stage.compute_inline()
            continue
        stage.compute_at(O, sample)
        _lanes(stage)


def _inlined_once(s, stage) -> bool:
    """Whether inlining ``stage`` computes each of its elements once: one reader, of its
    own shape (squash's scale inlined into the agreement over every input capsule would
    take a square root per element of u_hat)."""
    readers = [st for st in s.stages if isinstance(st.op, ComputeOp)
               and any(t.op is stage.op for t in st.op.input_tensors)]
    return len(readers) == 1 and \
        repr(readers[0].op.output(0).shape) == repr(stage.op.output(0).shape)


def _lanes(stage):
    """The innermost spatial axis in vector lanes, inside the reductions (each lane its
    own output element); a sum over a short last axis (the agreement's over the capsule
    dimension) in vector lanes itself, added as a tree."""
    spatial = list(stage.op.axis)
    if len(spatial) < 2:
        return
    body = stage.op.body[0]
    if stage.op.reduce_axis and getattr(body, "combiner", None) is not None and \
            body.combiner.name == "sum" and len(stage.op.reduce_axis) == 1:
        (r,) = stage.op.reduce_axis
        width = _extent(r) or 0
        inner = _extent(spatial[-1]) or 0
        if width in (8, 16, 32, 64) and inner < vector_lanes(32):
            stage.vectorize(r)
            return
    inner = spatial[-1]
    factor = vector_factor(_extent(inner), vector_lanes(32))
    if factor is None:
        return
    outer_part, lanes = stage.split(inner, factor=factor)
    if stage.op.reduce_axis:
        # spatial (all but the sample), reductions, then the lanes
        stage.reorder(*spatial[1:-1], outer_part, *stage.op.reduce_axis, lanes)
    stage.vectorize(lanes)
