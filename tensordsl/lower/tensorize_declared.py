"""``tensorize`` with an intrinsic the user declared (``td.decl_tensor_intrin``).

The loops from the tensorized axis inward must be the intrinsic's: its axes then its
reduction axes, of the same extents. Each loop variable stands for the matching axis of
the intrinsic's compute, and the two computations must agree:

- the same expression once every tensor read is set aside (same operators, constants,
  element types, reduction combiner);
- read for read, each of the stage's tensors at its region's corner plus the
  intrinsic's index: the stage reads ``B[yo*16 + yi, k]`` where the intrinsic reads
  ``b[i, k]`` (``yi`` for ``i``), so ``b`` is the region of ``B`` from ``(yo*16, 0)``.
  A tensor of more dimensions than the intrinsic's keeps its leading ones fixed: ``a[k]``
  may be the row ``A[i, 0:64]``;
- each region is exactly the intrinsic's tensor's shape.

Then ``fcompute`` is called with a view of each region (``te/buffer.py``) and its
statement replaces the loops: the whole computation, or for a reduction whose loops also
run outside the tensorized ones, the ``reset`` in the initialization's place and the
``update`` in the body's (TVM's ``(body, reset, update)``).
"""
from __future__ import annotations

from ..arith.interval import eval_interval
from ..arith.simplify import Simplifier
from ..errors import ScheduleError
from ..ir import nodes as n
from ..ir.printer import Printer
from ..ir.visitor import Mutator, Visitor, substitute
from ..te.buffer import BufferView
from ..te.ir_builder import IRBuilder

_ZERO = n.IntImm("int64", 0)
_ONE = n.IntImm("int64", 1)


def lower_declared(stage, inner, extents, bodies, outputs, indices, intrin, part: str):
    """The statement replacing loops ``inner`` of ``stage`` by declared ``intrin``;
    ``part`` is ``"init"`` (a reduction's initialization) or ``"body"``."""
    where = f"tensorize of stage {stage.name!r} at {inner[0].name!r} ({intrin.name})"
    op = intrin.op
    reduction = isinstance(op.body[0], n.Reduce)
    if reduction != isinstance(bodies[0], n.Reduce) or len(bodies) != 1:
        raise ScheduleError(f"{where}: the intrinsic computes {_show(op.body[0])}, the "
                            f"stage {_show(bodies[0])}")
    leaves = list(stage.leaf_iter_vars)
    first = leaves.index(inner[0])
    outer_reduction = [iv.var for iv in leaves[:first] if iv.kind == "reduce"]
    # (the initialization's nest skips the reduction loops; the inputs' views are
    # still made, over all of them, since fcompute builds every part at once)
    region = leaves[first:]
    axes = list(op.axis) + list(op.reduce_axis)
    _check_loops(where, region, extents, axes)
    if part == "init" and list(inner) != [iv for iv in region if iv.kind != "reduce"]:
        raise ScheduleError(f"{where}: the initialization's loops are not the "
                            "intrinsic's axes")
    to_loops = {a.var: iv.var for a, iv in zip(axes, region)}
    ranges = {iv.var: (_ZERO, n.IntImm("int64", int(extents[iv].value) - 1))
              for iv in region}
    simp = Simplifier({v: (0, int(hi.value)) for v, (_, hi) in ranges.items()})

    out_mins = _bind(where, outputs[0], indices, op.output(0),
                     [substitute(a.var, to_loops) for a in op.axis], ranges, simp)
    stage_expr, intrin_expr = bodies[0], substitute(op.body[0], to_loops)
    stage_reads, intrin_reads = _reads(stage_expr), _reads(intrin_expr)
    if len(stage_reads) != len(intrin_reads) or \
            _skeleton(stage_expr, simp) != _skeleton(intrin_expr, simp):
        raise ScheduleError(f"{where}: the stage computes {_show(stage_expr)}, the "
                            f"intrinsic {_show(op.body[0])}")
    bound = {}
    for mine, theirs in zip(stage_reads, intrin_reads):
        known = bound.get(_key(theirs.tensor))
        if known is not None and _key(known[0]) != _key(mine.tensor):
            raise ScheduleError(f"{where}: the intrinsic's {theirs.tensor.name!r} is read "
                                f"as {known[0].name!r} and as {mine.tensor.name!r}")
        mins = _bind(where, mine.tensor, mine.indices, theirs.tensor, theirs.indices,
                     ranges, simp)
        if known is not None and _text(mins, simp) != _text(known[1], simp):
            raise ScheduleError(f"{where}: {mine.tensor.name!r} is read at two regions")
        bound[_key(theirs.tensor)] = (mine.tensor, mins)
    if part == "init":
        # the outer reduction loops do not run around the initialization: its views
        # of the inputs (unused, or the reset would read them) sit at their start
        at_start = {v: _ZERO for v in outer_reduction}
        bound = {k: (t, tuple(simp.visit(substitute(m, at_start)) for m in mins))
                 for k, (t, mins) in bound.items()}

    ins = [_view(where, intrin, t, *bound[_key(t)]) for t in op.input_tensors]
    out = _view(where, intrin, op.output(0), outputs[0], out_mins)
    stmt = _pick(where, intrin.fcompute(ins, [out]), reduction, part, bool(outer_reduction))
    _check_view_accesses(where, stmt, ins + [out])
    checks = [c for v in ins + [out] for c in v.stride_checks()]
    return n.seq(*checks, stmt)


def _check_loops(where, inner, extents, axes):
    kinds = tuple(iv.kind for iv in inner)
    want_kinds = tuple("reduce" if a.kind == "reduce" else "data_par" for a in axes)
    got = tuple(extents[iv] for iv in inner)
    want = tuple(int(a.dom.extent.value) for a in axes)
    if kinds != want_kinds or not all(isinstance(e, n.IntImm) for e in got) or \
            tuple(int(e.value) for e in got) != want:
        raise ScheduleError(
            f"{where}: expected loops of kinds {want_kinds} and extents {want} from here "
            f"inward (the intrinsic's axes, then its reduction axes), got {kinds} with "
            f"extents {tuple(_show(e) for e in got)} (split the axes by the intrinsic's "
            "shape and reorder them innermost)")


def _bind(where, tensor, stage_indices, their_tensor, their_indices, ranges, simp):
    """The corner of ``tensor``'s region that ``their_tensor`` (the intrinsic's) is,
    after checking that the stage's indices are the corner plus the intrinsic's and that
    the region has the intrinsic's tensor's shape."""
    lead = len(tensor.shape) - len(their_tensor.shape)
    if lead < 0:
        raise ScheduleError(f"{where}: {tensor.name!r} has {len(tensor.shape)} dimensions, "
                            f"fewer than the intrinsic's {their_tensor.name!r} "
                            f"({len(their_tensor.shape)})")
    if tensor.dtype != their_tensor.dtype:
        raise ScheduleError(f"{where}: {tensor.name!r} is {tensor.dtype}, the intrinsic's "
                            f"{their_tensor.name!r} {their_tensor.dtype}")
    mins = []
    for d, index in enumerate(stage_indices):
        interval = eval_interval(index, ranges, simp)
        if interval is None:
            raise ScheduleError(f"{where}: the index {_show(index)} of {tensor.name!r} has "
                                "no range over the tensorized loops")
        lo, hi = interval
        want = their_indices[d - lead] if d >= lead else _ZERO
        extent = their_tensor.shape[d - lead] if d >= lead else _ONE
        offset = simp.visit(n.Sub(n.Sub(index, lo), want))
        size = simp.visit(n.Sub(n.Add(hi, _ONE), lo))
        if not (isinstance(offset, n.IntImm) and offset.value == 0):
            raise ScheduleError(
                f"{where}: {tensor.name!r} is indexed {_show(index)} in dimension {d}, "
                f"which is not its region's corner {_show(lo)} plus the intrinsic's index "
                f"{_show(want)}")
        if not (isinstance(size, n.IntImm) and size.value == int(extent.value)):
            raise ScheduleError(
                f"{where}: the region of {tensor.name!r} spans {_show(size)} in dimension "
                f"{d}, the intrinsic's {their_tensor.name!r} {int(extent.value)}")
        mins.append(lo)
    return tuple(mins)


def _view(where, intrin, their_tensor, tensor, mins) -> BufferView:
    buffer = intrin.buffer(their_tensor)
    if buffer.dtype != tensor.dtype:
        raise ScheduleError(f"{where}: buffer {buffer.name!r} is {buffer.dtype}, the "
                            f"tensor {tensor.name!r} bound to it {tensor.dtype}")
    if len(buffer.shape) != len(their_tensor.shape):
        raise ScheduleError(f"{where}: buffer {buffer.name!r} has {len(buffer.shape)} "
                            f"dimensions, the intrinsic's {their_tensor.name!r} "
                            f"{len(their_tensor.shape)}")
    return BufferView(buffer, tensor, mins, f"{where}")


def _pick(where, result, reduction: bool, part: str, outer_reduction: bool) -> n.Stmt:
    """The statement of ``fcompute``'s result this place needs."""
    parts = list(result) if isinstance(result, (tuple, list)) else [result, None, None]
    if len(parts) != 3:
        raise ScheduleError(f"{where}: fcompute must return a statement or (body, reset, "
                            f"update), got {len(parts)} values")
    parts = [n.Evaluate(p) if isinstance(p, n.Call) and p.name == "call_extern" else
             p.get() if isinstance(p, IRBuilder) else p for p in parts]
    for name, p in zip(("body", "reset", "update"), parts):
        if p is not None and not isinstance(p, n.Stmt):
            raise ScheduleError(f"{where}: fcompute's {name} must be a statement "
                                f"(td.ir_builder) or a td.call_extern call, got "
                                f"{_show(p) if isinstance(p, n.Expr) else repr(p)}")
    body, reset, update = parts
    if not reduction and (reset is not None or update is not None):
        raise ScheduleError(f"{where}: the intrinsic is no reduction, so fcompute returns "
                            "one statement, not (body, reset, update)")
    if not reduction or not outer_reduction:
        if body is None:
            raise ScheduleError(f"{where}: fcompute returned no body")
        return body
    name, chosen = ("a reset", reset) if part == "init" else ("an update", update)
    if chosen is None:
        raise ScheduleError(f"{where}: the stage's reduction also runs outside the "
                            f"tensorized loops, so fcompute must return (body, reset, "
                            f"update) with {name}")
    return chosen


class _LoopRanges(Visitor):
    """The accesses of ``tracked`` (id -> (node, view, indices)) found in a statement,
    with the ranges of the loops around each."""

    def __init__(self, tracked):
        self.tracked, self.ranges, self.found = tracked, {}, []

    def visit_For(self, node):
        self.ranges[node.var] = (node.min, n.Sub(n.Add(node.min, node.extent), _ONE))
        self.generic_visit(node)
        del self.ranges[node.var]

    def _access(self, node):
        if id(node) in self.tracked and self.tracked[id(node)][0] is node:
            self.found.append((self.tracked[id(node)], dict(self.ranges)))
        self.generic_visit(node)

    visit_TensorRead = visit_ProducerStore = _access


def _check_view_accesses(where, stmt, views):
    """Every ``vload``/``vstore`` in ``stmt`` inside its buffer's shape, for all values
    of the loops around it (``td.ir_builder``'s): fcompute writes them, nothing else
    would catch an index past the region."""
    tracked = {key: (node, view, idx) for view in views
               for key, (node, idx) in view.accesses.items()}
    walk = _LoopRanges(tracked)
    walk.visit(stmt)
    simp = Simplifier()
    for (node, view, indices), ranges in walk.found:
        kind = "vstore" if isinstance(node, n.ProducerStore) else "vload"
        for d, (index, extent) in enumerate(zip(indices, view.shape)):
            interval = eval_interval(index, ranges, simp)
            inside = interval is not None and all(
                isinstance(x, n.IntImm) and x.value for x in (
                    simp.visit(n.GE(interval[0], _ZERO)),
                    simp.visit(n.LT(interval[1], extent))))
            if not inside:
                raise ScheduleError(f"{where}: {kind} of buffer {view.name!r} at index "
                                    f"{_show(index)} in dimension {d} is not provably "
                                    f"inside its extent {_show(extent)}")


class _Reads(Visitor):
    def __init__(self):
        self.reads = []

    def visit_TensorRead(self, node):
        self.reads.append(node)
        self.generic_visit(node)


def _reads(expr) -> list:
    v = _Reads()
    v.visit(expr)
    return v.reads


class _Holes(Mutator):
    """Every tensor read replaced by a hole of its type, numbered in reading order."""

    def __init__(self):
        self.count = 0

    def visit_TensorRead(self, node):
        self.count += 1
        return n.Var(f"read{self.count}", node.dtype)


def _skeleton(expr, simp) -> str:
    if isinstance(expr, n.Reduce):
        c = expr.combiner
        # the combine function itself, its operands renamed alike on both sides
        named = {**{v: n.Var(f"x{k}", v.dtype) for k, v in enumerate(c.lhs)},
                 **{v: n.Var(f"y{k}", v.dtype) for k, v in enumerate(c.rhs)}}
        combine = ",".join(_show(simp.visit(substitute(r, named))) for r in c.result)
        identity = ",".join(_show(x) for x in c.identity)
        parts = [f"{combine}:{identity}:{expr.value_index}"]
        parts += [_skeleton(s, simp) for s in expr.source]
        parts.append(_skeleton(expr.condition, simp) if expr.condition is not None else "")
        return "|".join(parts)
    return _show(simp.visit(_Holes().visit(expr)))


def _text(exprs, simp) -> list:
    return [_show(simp.visit(e)) for e in exprs]


def _key(tensor):
    return id(tensor.op), tensor.value_index


def _show(e) -> str:
    return Printer().expr(e) if isinstance(e, n.Expr) else str(e)
