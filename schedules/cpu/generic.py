"""The template for any operator without its own: decided by the stages' structure.

Elementwise producers are inlined into their consumers. A stage with a reduction runs
its spatial loops in parallel; when its innermost spatial axis is long, that axis is
split and vectorized *inside* the reduction loops (each lane accumulates its own output
element), otherwise the reduction stays a scalar loop. Elementwise outputs are
vectorized along their innermost axis and parallel over the rest, and written with
non-temporal stores when at least half the last-level cache (knob ``stream``). An axis
a reduction's range reads (a sparse row ``i`` of ``for q in [pos[i], pos[i + 1])``) is
not moved inside that reduction.
"""
from __future__ import annotations

from tensordsl.arith.simplify import const_int
from tensordsl.ir import dtype as dt
from tensordsl.te.tensor import ComputeOp

from .target import vector_lanes, wants_stream

PARALLEL_MIN_ELEMENTS = 1 << 14  # below this, waking the thread team costs more than it saves
FUSED_MIN_ITERATIONS = 64  # outer iterations that balance the threads' shares


def _extent(iv) -> int | None:
    """The loop's extent if it is a constant (``H - 2`` of a known ``H`` included)."""
    return const_int(iv.dom.extent)


def bounding_axes(op) -> set:
    """The positions of the spatial axes a reduction's range reads (a sparse row's
    ``[pos[i], pos[i + 1])``): their loops must stay outside the reduction."""
    from tensordsl.ir.visitor import free_vars
    read = {v for r in op.reduce_axis for e in (r.dom.min, r.dom.extent) for v in free_vars(e)}
    return {d for d, iv in enumerate(op.axis) if iv.var in read}


def vector_factor(extent: int | None, lanes: int) -> int | None:
    """A split factor that vectorizes well: the widest of lanes, lanes/2, ... (>= 4)
    that divides the extent, else ``lanes`` (the tail is guarded)."""
    if extent is None or extent < 4:
        return None
    f = lanes
    while f >= 4:
        if extent % f == 0:
            return f
        f //= 2
    return lanes if extent >= lanes else None


def schedule_generic(s, out, config=None):
    for stage in s.stages:
        if not isinstance(stage.op, ComputeOp) or stage.is_output:
            continue
        if stage.op.reduce_axis or stage.op.num_outputs > 1:
            schedule_stage(stage)
        else:
            stage.compute_inline()
    for op in s.outputs:
        outer = schedule_stage(s[op])
        if outer is not None and not op.reduce_axis and wants_stream(config, op.output(0)):
            s[op].pragma(outer, "nontemporal")


def schedule_stage(stage):
    """Vectorize and parallelize one stage; returns its outermost loop (or None)."""
    op = stage.op
    lanes = vector_lanes(dt.bits(op.output_dtype(0)) if dt.bits(op.output_dtype(0)) >= 8 else 8)
    spatial = list(op.axis)
    total = 1
    for iv in spatial:
        total *= _extent(iv) or (1 << 20)
    inner = spatial[-1] if spatial else None
    factor = vector_factor(_extent(inner), lanes) if inner is not None else None
    outer_axes = spatial[:-1]
    vec = None
    if factor is not None and (_extent(inner) or 0) >= 4 and \
            len(spatial) - 1 not in bounding_axes(op):
        io, vec = stage.split(inner, factor=factor)
        outer_axes = outer_axes + [io]
        if op.reduce_axis:
            stage.reorder(*outer_axes, *op.reduce_axis, vec)
        stage.vectorize(vec)
    if not outer_axes:
        return None
    # fuse only as many outer axes as give the threads enough iterations: the inner
    # ones stay loops of their own, so their indices need no division by an extent
    enough = 1
    for count, iv in enumerate(outer_axes, 1):
        enough *= _extent(iv) or (1 << 20)
        if enough >= FUSED_MIN_ITERATIONS:
            break
    head = outer_axes[:count]
    fused = stage.fuse(*head) if len(head) > 1 else head[0]
    if total >= PARALLEL_MIN_ELEMENTS or op.reduce_axis:
        stage.parallel(fused)
    return fused
