"""Bound inference: the range of every root axis of every stage.

A stage computed at root covers its whole shape. A stage computed at loop ``ax`` of a
consumer ``C`` covers what one iteration of ``ax`` reads: the consumers' read indices
are evaluated as intervals with ``C``'s loops inside ``ax`` (and every loop of stages
nested there) sweeping their ranges, and the loops outside ``ax`` fixed. Ranges are
not clamped to the shape: the producer's loop nest guards ``0 <= index < shape``
instead, so an extent like ``8`` stays a constant even at a ragged edge.

Result: ``Bounds`` with, per stage, each root axis's ``Range`` and the expression of each
root index in terms of the loop variables (``root_expr``), the leaf extents, and the
split predicates — everything ``schedule_ops`` builds loops from.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..arith.interval import eval_interval
from ..arith.simplify import Simplifier
from ..errors import ScheduleError
from ..ir import nodes as n
from ..ir.visitor import Visitor, free_vars, substitute
from ..schedule.relations import Segment, leaf_extents, root_values
from ..te.tensor import ComputeOp, ExternOp, PlaceholderOp, ScanOp, tensors_read
from .check_bounds import reads_tensor
from .inline import expanded_bodies


@dataclass
class StageBounds:
    ranges: dict = field(default_factory=dict)      # root IterVar -> Range
    extents: dict = field(default_factory=dict)     # every IterVar -> extent
    root_expr: dict = field(default_factory=dict)   # root IterVar -> index expression
    predicates: list = field(default_factory=list)  # conditions on leaf loop vars
    segment_runs: dict = field(default_factory=dict)  # Segment -> its runs axis' value


@dataclass
class Bounds:
    stages: dict = field(default_factory=dict)      # Stage -> StageBounds

    def __str__(self):
        from ..ir.printer import Printer
        p = Printer()
        lines = []
        for stage, b in self.stages.items():
            rs = ", ".join(f"{iv.name} in {p.range(r)}" for iv, r in b.ranges.items())
            lines.append(f"{stage.name}: {rs}")
        return "\n".join(lines)


class _Reads(Visitor):
    def __init__(self, target_op):
        self.target, self.reads = target_op, []

    def visit_TensorRead(self, node):
        if node.tensor.op is self.target:
            self.reads.append(node.indices)
        self.generic_visit(node)


def compute_stages(schedule):
    """The stages that get loop nests: computed, not inlined."""
    return [st for st in schedule.stages
            if isinstance(st.op, (ComputeOp, ScanOp, ExternOp)) and st.attach_type != "inline"]


def infer_bounds(schedule) -> Bounds:
    s = Simplifier()
    stages = compute_stages(schedule)
    bounds = Bounds()
    for stage in reversed(stages):
        _check_attach(stage)
        ranges = {}
        op = stage.op
        if isinstance(op, ScanOp):
            _check_scan_body(schedule, stage)
            ranges[op.scan_axis] = op.scan_axis.dom
        elif _is_scan_update(stage):
            demanded = _scan_row(stage, s)
            for d, iv in enumerate(op.axis):
                ranges[iv] = demanded[d]
        elif stage.attach_type == "scope":
            demanded = _demanded_region(schedule, stage, bounds, s)
            for d, iv in enumerate(op.axis):
                ranges[iv] = demanded[d]
        else:
            for iv in op.axis:
                ranges[iv] = n.Range(n.IntImm("int64", 0), iv.dom.extent)
        for iv in op.reduce_axis:
            ranges[iv] = iv.dom
        sb = StageBounds(ranges=ranges)
        sb.extents = leaf_extents(stage.relations, {iv: r.extent for iv, r in ranges.items()}, s)
        values, sb.predicates = root_values(
            stage.relations, {iv: iv.var for iv in stage.leaf_iter_vars}, sb.extents, s)
        _segment_extents(stage, sb, values, s)
        sb.root_expr = {iv: s.visit(n.Add(r.min, values[iv])) for iv, r in ranges.items()}
        _bind_spatial_in_reduce_ranges(op, sb, s)
        bounds.stages[stage] = sb
    return bounds


def _bind_spatial_in_reduce_ranges(op, sb, s):
    """A reduction's range may depend on the output index (``sum over k < i + 1``). The
    loops run over leaf axes, so ``i`` there is its root expression (``io*4 + ii``; for
    a stage computed at a loop, the tile's origin plus its loop), as TVM binds the root
    variables of a split axis by a ``let``."""
    spatial = {iv.var: sb.root_expr[iv] for iv in op.axis}
    if not any(v in spatial for r in op.reduce_axis for v in free_vars(r.dom.extent)
               + free_vars(r.dom.min)):
        return
    for iv in op.reduce_axis:
        r = sb.ranges[iv]
        sb.ranges[iv] = n.Range(s.visit(substitute(r.min, spatial)),
                                s.visit(substitute(r.extent, spatial)))
        sb.root_expr[iv] = s.visit(substitute(sb.root_expr[iv], spatial))
    sb.extents = {iv: s.visit(substitute(e, spatial)) for iv, e in sb.extents.items()}
    sb.predicates = [s.visit(substitute(p, spatial)) for p in sb.predicates]


def _is_scan_update(stage) -> bool:
    parent = stage.attach_stage
    return (stage.attach_type == "scope" and isinstance(parent.op, ScanOp)
            and any(u.op is stage.op for u in parent.op.update))


def _scan_row(stage, s) -> list:
    """The region of a scan's update one iteration of the scan computes: its row
    ``scan_axis + init_len``, whole."""
    scan = stage.attach_stage.op
    row = s.visit(n.Add(scan.scan_axis.var, scan.init_len))
    return [n.Range(row, n.IntImm("int64", 1))] + [
        n.Range(n.IntImm("int64", 0), iv.dom.extent) for iv in stage.op.axis[1:]]


def _check_scan_body(schedule, scan):
    for u in scan.op.update:
        st = schedule[u]
        if st.attach_stage is not scan or st.attach_ivar is not scan.op.scan_axis:
            raise ScheduleError(f"stage {st.name!r} is the update of scan {scan.name!r}, so "
                                "it is computed inside the scan's loop; it cannot be "
                                "attached elsewhere")


def _check_attach(stage):
    if stage.attach_type != "scope":
        return
    parent, ax = stage.attach_stage, stage.attach_ivar
    if parent.attach_type == "inline":
        raise ScheduleError(f"stage {stage.name!r} is computed at {parent.name!r}, which "
                            "is inlined and has no loops")
    if ax not in parent.leaf_iter_vars:
        raise ScheduleError(f"stage {stage.name!r} is computed at axis {ax.name!r} of "
                            f"{parent.name!r}, which was split or fused afterwards; attach "
                            "to one of its loops " f"{[v.name for v in parent.leaf_iter_vars]}")


def _scope_chain_relax(consumer, parent, ax, bounds) -> dict | None:
    """Intervals of the loop variables that sweep while one iteration of ``parent``'s
    loop ``ax`` runs, as seen from ``consumer``; None if ``consumer`` runs outside it."""
    relax = {}

    def sweep(stage, ivs):
        extents = bounds.stages[stage].extents
        for iv in ivs:
            relax[iv.var] = (n.IntImm("int64", 0), n.Sub(extents[iv], n.IntImm("int64", 1)))

    cur, reached_at = consumer, None
    while cur is not parent:
        if cur.attach_type != "scope":
            return None
        sweep(cur, cur.leaf_iter_vars)
        reached_at, cur = cur.attach_ivar, cur.attach_stage
    pos = parent.leaf_iter_vars.index(ax)
    if reached_at is not None and parent.leaf_iter_vars.index(reached_at) < pos:
        return None
    sweep(parent, parent.leaf_iter_vars[pos + 1:])
    return relax


def _sweep_shared_threads(parent, ax, bounds, relax):
    """A ``shared`` buffer serves every thread of the block: the loops bound to thread
    indices around the attach point (in ``parent`` and the stages it sits in) sweep."""
    stage, limit = parent, ax
    while stage is not None:
        leaves = stage.leaf_iter_vars
        extents = bounds.stages[stage].extents
        for iv in leaves[:leaves.index(limit) + 1]:
            thread = stage.bound_thread.get(iv)
            if thread is not None and not thread.kind.startswith("blockIdx"):
                relax[iv.var] = (n.IntImm("int64", 0), n.Sub(extents[iv], n.IntImm("int64", 1)))
        if stage.attach_type != "scope":
            break
        stage, limit = stage.attach_stage, stage.attach_ivar


def _segment_extents(stage, sb, values, s):
    """A segment's positions loop runs over the run of its runs axis; when that axis was
    split or fused further, the run is the axis' value in terms of the loops (kept in
    ``sb.segment_runs`` for the row ids' recovery, ``schedule_ops.py``)."""
    sb.segment_runs = {}
    for r in stage.relations:
        if isinstance(r, Segment):
            sb.segment_runs[r] = values[r.outer]
            if r.outer not in stage.leaf_iter_vars:
                # (and the extents derived from the positions loop's: its split's)
                run = {r.outer.var: values[r.outer]}
                for iv, extent in list(sb.extents.items()):
                    if r.outer.var in free_vars(extent):
                        sb.extents[iv] = s.visit(substitute(extent, run))
                sb.predicates = [s.visit(substitute(p, run)) if r.outer.var in free_vars(p)
                                 else p for p in sb.predicates]


def _reads_computed(e) -> bool:
    """Whether ``e`` reads a tensor other than an input (a placeholder)."""
    return any(not isinstance(t.op, PlaceholderOp) for t in tensors_read([e]))


def _demanded_region(schedule, stage, bounds, s):
    op = stage.op
    parent, ax = stage.attach_stage, stage.attach_ivar
    lo = [None] * len(op.axis)
    hi = [None] * len(op.axis)
    full = [False] * len(op.axis)
    for consumer in bounds.stages:
        reads = _Reads(op)
        for body in expanded_bodies(schedule, consumer):
            reads.visit(body)
        if not reads.reads:
            continue
        relax = _scope_chain_relax(consumer, parent, ax, bounds)
        if relax is None:
            raise ScheduleError(
                f"stage {stage.name!r} is computed at loop {ax.name!r} of {parent.name!r}, "
                f"but {consumer.name!r} also reads it outside that loop")
        if stage.scope == "shared":
            _sweep_shared_threads(parent, ax, bounds, relax)
        cb = bounds.stages[consumer]
        to_loops = {iv.var: e for iv, e in cb.root_expr.items()}
        for idx in reads.reads:
            for d, e in enumerate(idx):
                if full[d]:
                    continue
                iv = eval_interval(s.visit(substitute(e, to_loops)), relax, s)
                if iv is None or _reads_computed(iv[0]) or _reads_computed(iv[1]):
                    # unbounded, or read from computed data (which may not exist yet
                    # where the region is allocated): the whole extent. An input's
                    # data is there from the start: a segment's run starts at pos[r]
                    full[d] = True
                    continue
                lo[d] = iv[0] if lo[d] is None else s.visit(n.Min(lo[d], iv[0]))
                hi[d] = iv[1] if hi[d] is None else s.visit(n.Max(hi[d], iv[1]))
    out = []
    for d, iv in enumerate(op.axis):
        shape = iv.dom.extent
        if full[d] or lo[d] is None:
            out.append(n.Range(n.IntImm("int64", 0), shape))
            continue
        extent = s.visit(n.Add(n.Sub(hi[d], lo[d]), n.IntImm("int64", 1)))
        if not isinstance(extent, n.IntImm):
            # a tile whose size varies with the outer loops (rows touched by a run of
            # flattened positions): allocate its largest size, a constant
            bound = s.extent_upper_bound(extent)
            if bound is not None:
                extent = n.IntImm("int64", bound)
        too_big = (isinstance(extent, n.IntImm) and isinstance(shape, n.IntImm)
                   and extent.value >= shape.value)
        if too_big or (not isinstance(extent, n.IntImm) and isinstance(shape, n.IntImm)):
            out.append(n.Range(n.IntImm("int64", 0), shape))
        else:
            out.append(n.Range(lo[d], extent))
    return out
