"""The CPU template of capsule routing (``kernels/capsule.py``: predictions and the
unrolled iterations of dynamic routing): one sample at a time.

Frameworks run routing as a string of kernels, each a pass over all of ``u_hat`` (batch
x in_caps x out_caps x out_dim: 23 MB at the paper's sizes, batch 32), so every
iteration reads it from memory twice (the weighted sum, the agreement). Here every
stage is computed at the output's sample loop (``compute_at``), the samples in
parallel in groups of 2: a group's ``u_hat`` (2 x 737 KB) is made once — the
predictions fused into the routing — and stays in the core's L2 across all the
iterations. The weights, which every sample reads alike, are packed once per call with
the capsule dimension innermost, so the predictions load whole vectors of them (each
used for the group's samples). Inside a group each stage runs its loops with the
innermost capsule dimension in vector lanes (the 10 output capsules of a softmax in one
masked vector); elementwise stages read by one stage of their own shape are inlined.
The same template schedules the derived kernels whose stages are all per sample (the
routing's gradients: ``autodiff/operators.py``'s ``per_sample`` and
``per_sample_reduce``).
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import _extent, vector_factor
from .target import vector_lanes


def schedule_capsule_routing(s, out, config=None):
    schedule_per_sample(s, out, config)


# samples a thread takes together: the packed weights (5.9 MB at the paper's sizes,
# more than a core's L2) are read once per group, not once per sample
GROUP = 2


def default_config() -> dict:
    return {"group": GROUP}


def schedule_per_sample(s, out, config=None):
    """Every stage at the output's sample loop, in groups of ``group`` samples (knob),
    the groups in parallel: the routing, and derived kernels of the same shape (the
    routing's gradient with respect to its input, ``autodiff/operators.py``)."""
    cfg = dict(default_config(), **(config or {}))
    O = s[out]
    group = max(1, int(cfg["group"]))
    sample = out.op.axis[0]
    if group > 1 and (_extent(sample) or 0) > group:
        sample, _ = O.split(sample, factor=group)
    O.parallel(sample)
    _lanes(O)
    packed = _pack_shared_operands(s, out)
    readers = {op for p in packed for op in _readers_of(s, p)}
    _attach_per_sample(s, O, sample, skip={out.op, *packed}, samples_inside=readers)


def _attach_per_sample(s, anchor, sample, skip, samples_inside=frozenset()):
    """Every compute stage but ``skip`` inlined (read once, by one of its own shape) or
    computed at ``anchor``'s ``sample`` loop, with its lanes; the stages in
    ``samples_inside`` (the predictions) take a group's samples inside their reductions,
    so each weight vector is loaded once for the group."""
    for stage in s.stages:
        if not isinstance(stage.op, ComputeOp) or stage.op in skip:
            continue
        if not stage.op.reduce_axis and stage.op.num_outputs == 1 and \
                _inlined_once(s, stage):
            stage.compute_inline()
            continue
        stage.compute_at(anchor, sample)
        _lanes(stage, samples_inside=stage.op in samples_inside)


def _readers_of(s, op) -> list:
    return [st.op for st in s.stages if isinstance(st.op, ComputeOp)
            and any(t.op is op for t in st.op.input_tensors)]


def _pack_shared_operands(s, out):
    """An input every sample reads alike (the routing's weights W[i, j, d, k]) whose
    elements a stage takes along its vectorized axis ``d`` with a stride (``k``, a
    reduction, is the innermost dimension): packed once per call with ``d`` innermost
    (``s.pack``: W[i, j, d, k] -> P[0, i, j, k, d]), so each sample's predictions load
    whole vectors instead of gathering them. Returns the packing stages' ops (computed
    at root, before the samples)."""
    from tensordsl.ir import nodes as n
    from tensordsl.ir.visitor import post_order
    from tensordsl.te.tensor import PlaceholderOp
    sample_extent = repr(out.op.axis[0].dom.extent)
    packed_ops = set()
    for stage in list(s.stages):
        op = stage.op
        if not isinstance(op, ComputeOp) or not op.reduce_axis or len(op.axis) < 2 or \
                repr(op.axis[0].dom.extent) != sample_extent:
            continue
        inner = op.axis[-1].var
        width = _extent(op.axis[-1])
        reduce_vars = {r.var for r in op.reduce_axis}
        for e in post_order(op.body[0]):
            if not (isinstance(e, n.TensorRead) and isinstance(e.tensor.op, PlaceholderOp)
                    and e.tensor.ndim >= 2 and e.indices[-1] in reduce_vars):
                continue
            dims = [d for d, i in enumerate(e.indices[:-1]) if i is inner]
            if len(dims) == 1 and width and width <= 64 and \
                    op.axis[0].var not in {i for i in e.indices if isinstance(i, n.Var)}:
                packed = s.pack(e.tensor, dims[0], width, [op])
                P = s[packed]
                P.parallel(P.op.axis[1])
                P.vectorize(P.op.axis[-1])
                packed_ops.add(packed.op)
                break
    return packed_ops


def schedule_per_sample_reduce(s, out, config=None):
    """An output that sums over the samples what a per-sample chain computes (the
    routing's gradient with respect to its weights: the sum over the batch of each
    sample's gradient of u_hat times u): the chain a sample at a time into the one
    tensor the output reads (computed at root, the samples in parallel), then the sum."""
    from .generic import schedule_stage
    samples = out.op.reduce_axis[0].dom.extent
    anchor = next(t.op for t in out.op.input_tensors if isinstance(t.op, ComputeOp)
                  and repr(t.op.axis[0].dom.extent) == repr(samples))
    A = s[anchor]
    sample = anchor.axis[0]
    A.parallel(sample)
    _lanes(A)
    _attach_per_sample(s, A, sample, skip={out.op, anchor})
    schedule_stage(s[out])


def _inlined_once(s, stage) -> bool:
    """Whether inlining ``stage`` computes each of its elements once: one reader, of its
    own shape (squash's scale inlined into the agreement over every input capsule would
    take a square root per element of u_hat)."""
    readers = _readers_of(s, stage.op)
    return len(readers) == 1 and \
        repr(readers[0].output(0).shape) == repr(stage.op.output(0).shape)


def _lanes(stage, samples_inside: bool = False):
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
    extent = _extent(inner) or 0
    factor = vector_factor(extent, vector_lanes(32))
    if factor is None and 4 < extent < vector_lanes(32):
        # (the 10 output capsules of a softmax's exponentials: one masked vector)
        factor = 1 << (extent - 1).bit_length()
    if factor is None:
        return
    outer_part, lanes = stage.split(inner, factor=factor)
    if stage.op.reduce_axis and samples_inside:
        stage.reorder(*spatial[1:-1], outer_part, *stage.op.reduce_axis, spatial[0], lanes)
    elif stage.op.reduce_axis and _small_block(spatial[1:-1], outer_part):
        # a small block of outputs (a sample's s: 10 capsules x 16) summed over many
        # inputs: the inputs outermost, the block in vector registers, so u_hat is read
        # in its own order
        stage.reorder(*stage.op.reduce_axis, *spatial[1:-1], outer_part, lanes)
        for iv in (*spatial[1:-1], outer_part):
            stage.unroll(iv)
    elif stage.op.reduce_axis:
        # spatial (all but the sample), reductions, then the lanes
        stage.reorder(*spatial[1:-1], outer_part, *stage.op.reduce_axis, lanes)
    stage.vectorize(lanes)


def _small_block(axes, outer_part) -> bool:
    """Whether the vectors of outputs these loops make fit in registers (16 or fewer)."""
    count = _extent(outer_part) or 99
    for iv in axes:
        count *= _extent(iv) or 99
    return count <= 16
