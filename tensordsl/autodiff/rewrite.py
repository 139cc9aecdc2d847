"""Equivalent forms of derived computes that schedule better (``prepare``): general
rewrites of a te graph, applied to what reverse mode produced before a template sees it.
Each one keeps every value the graph computes (up to reassociation of sums); none knows
which operator the graph came from.

* **One-element reductions** (``sum`` over axes of extent 1, the adjoint of a broadcast)
  become elementwise computes: ``sum_{r<1} f(r)`` is ``f(0)`` (where its condition holds).
* **Bounds as padding.** A sum whose condition only keeps a factor's read in bounds,
  ``sum where(0 <= e < n) T[.., e, ..] * w``, reads a zero-padded copy of ``T`` instead:
  ``sum Tp[.., e + lo, ..] * w`` with ``Tp`` materialized once (its extent covers every
  ``e`` the domain reaches). The hot loop then has no conditions (the data gradient of a
  convolution: a convolution of the padded output gradient). A skipped term and a term
  times zero are the same for finite values (an infinite ``w`` would give NaN, as it
  does in PyTorch's convolution backward).
* **Flat positions.** A reduction whose last two axes ``(r, s)`` occur only as
  ``r * S + s`` (``S`` the extent of ``s``) is computed over one axis ``q = r * S + s``;
  its readers read ``[.., r * S + s]``. That is the padded-width form of the forward
  convolution (``kernels.dense._conv2d_nchw_flat``) coming back out of its adjoint.
* **Row and column.** An elementwise compute whose last axis ``p`` occurs only as
  ``p // S`` and ``p % S`` (a flat position read back as a row and a column) is computed
  over the two axes (rows, ``S`` columns); readers read ``[.., p // S, p % S]``, which
  storage flattening turns back into ``p``. Its columns then vectorize: the adjoint of
  the padded-width convolution's crop is a contiguous copy, not a gather per element.
* **Only what is read.** A compute whose readers all read a sub-range of one of its
  dimensions (a convolution's data gradient computed over the padded positions, of which
  the crop keeps the interior) is computed over that range only.
* **Vector axis last.** A reduction whose last axis indexes no operand contiguously,
  while another axis ``f`` is alone in one dimension of a factor read with a reduction
  axis in another (a weight gradient ``gw[f, c, ry, rx] = sum_p g[f, p] * x[c, p + ..]``),
  is computed with ``f`` last and transposed back: then ``f`` is the vector axis and
  ``g`` a panel operand, as ``B`` of a matmul.
* **Operand order.** ``a * b`` in a product reduction is ordered so that the second
  factor is the one read along the last output axis (the matmul template's ``B``).
* **Reuse of computed values.** A subexpression equal to the body of an elementwise
  compute ``E`` at plain loop variables over ``E``'s extents reads ``E`` instead (the
  derivative of ``exp`` is ``exp``: softmax's adjoint reads the forward's ``exp`` stage
  rather than computing it twice more).
"""
from __future__ import annotations

from ..arith.simplify import Simplifier, const_int
from ..ir import nodes as n
from ..ir.op import const, if_then_else
from ..ir.visitor import Mutator, Visitor, free_vars, post_order, substitute
from ..te.tensor import ComputeOp, PlaceholderOp, Tensor
from .graph import topological

_TRUE = n.IntImm("bool", 1)


def prepare(out: Tensor) -> Tensor:
    """``out`` computed by an equivalent graph of the forms above."""
    reusable: list = []     # elementwise computes (new ops) whose values may be read

    def first(op, body, is_out):
        body = _reuse(body, op, reusable)
        changed = any(a is not b for a, b in zip(body, op.body))
        op2 = ComputeOp(op.name, op.axis, body, op.tag) if changed else op
        reindex = None
        if op2.num_outputs == 1:
            op2 = _one_element_reduction(op2)
            op2 = _bounds_as_padding(op2)
            op2 = _operand_order(op2)
            if not is_out:
                op2, reindex = _flatten_last_axes(op2)
        if op2.num_outputs == 1 and not op2.reduce_axis and reindex is None and \
                _worth_reusing(op2.body[0]):
            reusable.append(op2)
        return op2, reindex

    def second(op, body, is_out):
        # after the bounds became padding (which needs the flat reads), so that it
        # does not split a position that a guard still reads
        op2 = ComputeOp(op.name, op.axis, body, op.tag) if any(
            a is not b for a, b in zip(body, op.body)) else op
        if is_out or op2.num_outputs != 1:
            return op2, None
        return _rows_and_columns(op2)

    result = _rewrite(_rewrite(out, first), second)
    for _ in range(2):   # a trimmed reader reads less of its own producers
        result = _rewrite(result, _trimmer(result))
    if result.op.num_outputs == 1 and result.op.reduce_axis:
        result = _vector_axis_last(result)
    return result


def _rewrite(out: Tensor, rule) -> Tensor:
    """The graph of ``out`` with ``rule(op, remapped body, is_output) -> (new op, index
    map of its readers or None)`` applied to every compute, producers first."""
    new: dict = {}          # id(old op) -> (new op, index map of its readers or None)
    for op in topological([out]):
        if isinstance(op, PlaceholderOp) or not isinstance(op, ComputeOp):
            new[id(op)] = (op, None)
            continue
        body = tuple(_Remap(new).visit(b) for b in op.body)
        new[id(op)] = rule(op, body, op is out.op)
    final, _ = new[id(out.op)]
    return final.output(out.value_index)


class _Remap(Mutator):
    """Reads of rewritten tensors redirected to their new ops (and index maps)."""

    def __init__(self, new: dict):
        self.new = new

    def visit_TensorRead(self, node):
        node = self.generic_visit(node)
        hit = self.new.get(id(node.tensor.op))
        if hit is None or (hit[0] is node.tensor.op and hit[1] is None):
            return node
        op, reindex = hit
        indices = reindex(node.indices) if reindex is not None else node.indices
        return n.TensorRead(op.output(node.tensor.value_index), tuple(indices))


# ---------------------------------------------------------------- reuse


def _worth_reusing(e) -> bool:
    """Bodies with a transcendental call: recomputing them costs more than a read."""
    return any(isinstance(x, n.Call) and x.name in ("exp", "log", "tanh", "erf", "pow",
                                                     "sqrt", "sigmoid")
               for x in post_order(e))


def _match(pattern, e, axes: dict, bound: dict) -> bool:
    """Whether ``e`` is ``pattern`` with its axis variables (``axes``) bound to plain
    variables (``bound``, filled in); everything else identical."""
    if isinstance(pattern, n.Var) and pattern in axes:
        if not isinstance(e, n.Var):
            return False
        if pattern in bound:
            return bound[pattern] is e
        bound[pattern] = e
        return True
    if pattern is e:
        return True
    if type(pattern) is not type(e):
        return False
    if isinstance(pattern, (n.IntImm, n.FloatImm)):
        return pattern.value == e.value and pattern.dtype == e.dtype
    if isinstance(pattern, n.TensorRead):
        return pattern.tensor == e.tensor and len(pattern.indices) == len(e.indices) and \
            all(_match(a, b, axes, bound) for a, b in zip(pattern.indices, e.indices))
    from dataclasses import fields
    if not hasattr(pattern, "__dataclass_fields__") or isinstance(pattern, n.Reduce):
        return False
    for f in fields(pattern):
        a, b = getattr(pattern, f.name), getattr(e, f.name)
        if isinstance(a, n.Node):
            if not _match(a, b, axes, bound):
                return False
        elif isinstance(a, tuple):
            if not isinstance(b, tuple) or len(a) != len(b) or not all(
                    _match(x, y, axes, bound) if isinstance(x, n.Node) else x == y
                    for x, y in zip(a, b)):
                return False
        elif a != b:
            return False
    return True


def _reuse(body: tuple, op, reusable: list) -> tuple:
    if not reusable:
        return body
    extents = {iv.var: const_int(iv.dom.extent) for iv in (*op.axis, *op.reduce_axis)}
    mins = {iv.var: const_int(iv.dom.min) for iv in (*op.axis, *op.reduce_axis)}

    class _Reads(Mutator):
        def visit(self, node):
            if isinstance(node, n.Expr) and not isinstance(node, (n.Var, n.IntImm,
                                                                  n.FloatImm, n.Reduce)):
                for e in reusable:
                    axes = {iv.var: const_int(iv.dom.extent) for iv in e.axis}
                    bound: dict = {}
                    if node.dtype == e.body[0].dtype and _match(e.body[0], node, axes, bound) \
                            and all(mins.get(v) == 0 and extents.get(v) == axes[a]
                                    for a, v in bound.items()) and len(bound) == len(axes):
                        return n.TensorRead(e.output(0),
                                            tuple(bound[iv.var] for iv in e.axis))
            return super().visit(node)

    return tuple(_Reads().visit(b) for b in body)


# ---------------------------------------------------------------- helpers


def _is_sum(reduce: n.Reduce) -> bool:
    r = reduce.combiner
    return len(r.result) == 1 and isinstance(r.result[0], n.Add) and \
        isinstance(r.identity[0], (n.FloatImm, n.IntImm)) and r.identity[0].value == 0


def _conjuncts(c) -> list:
    if isinstance(c, n.And):
        return _conjuncts(c.a) + _conjuncts(c.b)
    if isinstance(c, n.IntImm) and c.value:
        return []
    return [c]


def _conjunction(conds):
    from .reverse import _and_all
    return _and_all(conds) if conds else _TRUE


def _factors(e) -> list:
    """The factors of a product ``a * b * ...`` (``e`` itself if not a product)."""
    if isinstance(e, n.Mul):
        return _factors(e.a) + _factors(e.b)
    return [e]


def _extents(op) -> dict:
    """Var -> (min, max) of every axis of ``op`` with constant bounds."""
    out = {}
    for iv in (*op.axis, *op.reduce_axis):
        lo, ext = const_int(iv.dom.min), const_int(iv.dom.extent)
        if lo is not None and ext is not None:
            out[iv.var] = (lo, lo + ext - 1)
    return out


def _interval(e, ranges: dict):
    """(min, max) of an integer expression over ``ranges``, or None if unknown."""
    if isinstance(e, n.IntImm):
        return e.value, e.value
    if isinstance(e, n.Var):
        return ranges.get(e)
    if isinstance(e, (n.Add, n.Sub)):
        a, b = _interval(e.a, ranges), _interval(e.b, ranges)
        if a is None or b is None:
            return None
        return (a[0] + b[0], a[1] + b[1]) if isinstance(e, n.Add) else \
            (a[0] - b[1], a[1] - b[0])
    if isinstance(e, n.Mul):
        a, b = _interval(e.a, ranges), _interval(e.b, ranges)
        if a is None or b is None:
            return None
        products = [x * y for x in a for y in b]
        return min(products), max(products)
    if isinstance(e, n.Cast):
        return _interval(e.value, ranges)
    return None


def _linear(e, names):
    """``e`` as {var: coefficient} over the vars in ``names`` plus a rest free of them;
    None if they occur otherwise than linearly."""
    if not any(v in names for v in free_vars(e)):
        return {}
    if isinstance(e, n.Var):
        return {e: 1}
    if isinstance(e, (n.Add, n.Sub)):
        a, b = _linear(e.a, names), _linear(e.b, names)
        if a is None or b is None:
            return None
        sign = 1 if isinstance(e, n.Add) else -1
        out = dict(a)
        for v, c in b.items():
            out[v] = out.get(v, 0) + sign * c
        return out
    if isinstance(e, n.Mul):
        for x, c in ((e.a, e.b), (e.b, e.a)):
            k = const_int(c)
            if k is not None:
                inner = _linear(x, names)
                return None if inner is None else {v: a * k for v, a in inner.items()}
        return None
    if isinstance(e, n.Cast) and e.dtype == e.value.dtype:
        return _linear(e.value, names)
    return None


def _reads(e) -> list:
    return [x for x in post_order(e) if isinstance(x, n.TensorRead)]


# ---------------------------------------------------------------- the rewrites


def _one_element_reduction(op):
    body = op.body[0]
    if not isinstance(body, n.Reduce) or not all(
            const_int(iv.dom.extent) == 1 for iv in body.axis):
        return op
    mapping = {iv.var: iv.dom.min for iv in body.axis}
    value = substitute(body.source[body.value_index], mapping)
    cond = substitute(body.condition, mapping)
    if not (isinstance(cond, n.IntImm) and cond.value):
        value = if_then_else(cond, value, body.combiner.identity[body.value_index])
    return ComputeOp(op.name, op.axis, (value,), op.tag)


def _bounds_as_padding(op):
    body = op.body[0]
    if not isinstance(body, n.Reduce) or not _is_sum(body) or len(body.source) != 1:
        return op
    conds = _conjuncts(body.condition)
    if not conds:
        return op
    keys = Simplifier()
    lower, upper = {}, {}      # key of e -> the condition (0 <= e), (e < extent)
    for c in conds:
        if isinstance(c, n.LE) and const_int(c.a) == 0:
            lower[keys.key(c.b)] = c
        elif isinstance(c, n.GE) and const_int(c.b) == 0:
            lower[keys.key(c.a)] = c
        elif isinstance(c, n.LT) and const_int(c.b) is not None:
            upper[(keys.key(c.a), const_int(c.b))] = c
    ranges = _extents(op)
    source = body.source[0]
    factors = _factors(source)
    used: set = set()
    replaced = {}
    for f in factors:
        if not isinstance(f, n.TensorRead) or id(f) in replaced:
            continue
        before, after, indices, hit = [], [], list(f.indices), False
        for d, e in enumerate(f.indices):
            extent = const_int(f.tensor.shape[d])
            k = keys.key(e)
            lo_c, hi_c = lower.get(k), upper.get((k, extent))
            span = _interval(e, ranges)
            if lo_c is None or hi_c is None or span is None or extent is None:
                before.append(0)
                after.append(0)
                continue
            lo, hi = max(0, -span[0]), max(0, span[1] - (extent - 1))
            before.append(lo)
            after.append(hi)
            indices[d] = e + const(lo, e.dtype) if lo else e
            used.update((id(lo_c), id(hi_c)))
            hit = True
        if hit:
            rows = _padded_rows(f.tensor, before, after, indices)
            if rows is not None:
                replaced[id(f)] = rows
                continue
            from kernels.dense import pad
            padded = pad(f.tensor, before, after, name=f"{f.tensor.name}.padded")
            replaced[id(f)] = n.TensorRead(padded, tuple(indices))
    if not replaced:
        return op

    class _Swap(Mutator):
        def visit_TensorRead(self, node):
            return replaced.get(id(node), node)

    source = _Swap().visit(source)
    rest = [c for c in conds if id(c) not in used]
    reduce = n.Reduce(body.combiner, (source,), body.axis, _conjunction(rest),
                      body.value_index)
    return ComputeOp(op.name, op.axis, (reduce,), op.tag)


def _row_width(op):
    """``S`` if ``op`` is elementwise and its last axis occurs only as ``p // S`` and
    ``p % S`` (a flat position of rows of ``S``, ``S`` dividing its extent), else None."""
    if not isinstance(op, ComputeOp) or op.num_outputs != 1 or op.reduce_axis or not op.axis:
        return None
    p = op.axis[-1]
    body = op.body[0]
    found = _row_divisor(p, body)
    if found is None:
        return None
    P, S = found
    return S if S > 1 and P % S == 0 else None


def _padded_rows(t, before, after, indices):
    """The read of a zero-padded copy of ``t`` padded only along its last dimension, a
    flat position of rows (``_row_width``), made in rows and columns: whole rows of zeros
    before and after, ``t``'s body substituted (``p = (r - lead) * S + s``) and simplified,
    so the copy reads its source row by row, contiguously (the flat form would gather
    every element through ``p // S``, ``p % S``). None if ``t`` is not such a compute."""
    S = _row_width(t.op)
    last = len(t.shape) - 1
    if S is None or any(before[:last]) or any(after[:last]):
        return None
    P = const_int(t.shape[-1])
    lead = -(-before[last] // S)                       # rows of zeros before (rounded up)
    total = -(-(lead * S + P + after[last]) // S)      # rows in all
    zero = const(0, "int64")
    axes = tuple(n.IterVar(n.Var(iv.var.name), iv.dom) for iv in t.op.axis[:-1]) + (
        n.IterVar(n.Var("row"), n.Range(zero, const(total, "int64"))),
        n.IterVar(n.Var("col"), n.Range(zero, const(S, "int64"))))
    r, c = axes[-2].var, axes[-1].var
    flat = (r - const(lead, "int64")) * const(S, "int64") + c
    mapping = {iv.var: new.var for iv, new in zip(t.op.axis[:-1], axes[:-2])}
    mapping[t.op.axis[-1].var] = flat
    ranges = {iv.var: (const_int(iv.dom.min), const_int(iv.dom.min) + const_int(iv.dom.extent) - 1)
              for iv in axes if const_int(iv.dom.extent) is not None}
    from ..arith.simplify import simplify_expr
    inside = n.And(n.GE(r, const(lead, "int64")), n.LT(r, const(lead + P // S, "int64")))
    body = if_then_else(inside, simplify_expr(substitute(t.op.body[0], mapping), ranges),
                        const(0, t.dtype))
    op = ComputeOp(f"{t.name}.padded", axes, (body,), t.op.tag)
    e = indices[last] + const(lead * S - before[last], indices[last].dtype)
    size = const(S, e.dtype)
    return n.TensorRead(op.output(0), (*indices[:last], e // size, e % size))


def _operand_order(op):
    """``x * y`` reordered so ``y`` is read along the last output axis (and ``x`` not)."""
    body = op.body[0]
    if not isinstance(body, n.Reduce) or len(op.axis) < 2 or \
            not isinstance(body.source[0], n.Mul):
        return op
    src = body.source[0]
    last = op.axis[-1].var

    def along_last(e):
        return any(last in free_vars(i) for r in _reads(e) for i in r.indices)

    if along_last(src.a) and not along_last(src.b):
        swapped = n.Mul(src.b, src.a)
        reduce = n.Reduce(body.combiner, (swapped,), body.axis, body.condition,
                          body.value_index)
        return ComputeOp(op.name, op.axis, (reduce,), op.tag)
    return op


class _IndexSites(Visitor):
    """Every integer expression in an index or a comparison: where axes occur."""

    def __init__(self):
        self.sites = []

    def visit_TensorRead(self, node):
        indices = node.indices
        if len(indices) >= 2:
            q, r = indices[-2], indices[-1]
            S = const_int(node.tensor.shape[-1])
            if isinstance(q, n.FloorDiv) and isinstance(r, n.FloorMod) and S is not None \
                    and const_int(q.b) == S == const_int(r.b):
                # a flat position read back as (row, column) of rows of S: after storage
                # flattening, the position itself
                self.sites.extend((*indices[:-2], q.a, r.a))
                return
        self.sites.extend(indices)

    def _compare(self, node):
        self.sites.extend((node.a, node.b))

    visit_LT = visit_LE = visit_GT = visit_GE = visit_EQ = visit_NE = _compare


def _flatten_last_axes(op):
    """(op over ``q = r * S + s``, its readers' index map) if the last two axes occur
    only in that combination (and in some index together); else (op, None)."""
    body = op.body[0]
    if not isinstance(body, n.Reduce) or len(op.axis) < 2:
        return op, None
    r, s = op.axis[-2], op.axis[-1]
    S = const_int(s.dom.extent)
    R = const_int(r.dom.extent)
    if S is None or R is None or const_int(r.dom.min) != 0 or const_int(s.dom.min) != 0:
        return op, None
    names = {r.var, s.var}
    sites = _IndexSites()
    sites.visit(body)
    covered, together = 0, False
    for e in sites.sites:
        k = _linear(e, names)
        if k is None:
            return op, None
        cr, cs = k.get(r.var, 0), k.get(s.var, 0)
        if cr != S * cs:
            return op, None
        if cs:
            together = True
    occurrences = sum(1 for x in post_order(body) if x is r.var or x is s.var)
    for e in sites.sites:
        covered += sum(1 for x in post_order(e) if x is r.var or x is s.var)
    if not together or covered != occurrences:
        return op, None
    q = n.IterVar(n.Var(f"{r.var.name}.{s.var.name}"), n.Range(const(0, "int64"),
                                                              const(R * S, "int64")))
    new_body = substitute(body, {r.var: const(0, r.var.dtype), s.var: q.var})
    flat = ComputeOp(f"{op.name}.flat", (*op.axis[:-2], q), (new_body,), op.tag)

    def reindex(indices):
        *lead, a, b = indices
        return (*lead, a * const(S, a.dtype) + b)
    return flat, reindex


def _trimmer(out):
    """The rule of ``_rewrite`` that computes each compute (not the output) over the
    index ranges its readers read, where all of them are affine over known domains."""
    spans: dict = {}        # id(op) -> per dimension [lo, hi] read, None: unknown
    for reader in topological([out]):
        if not isinstance(reader, ComputeOp):
            continue
        ranges = _extents(reader)
        for b in reader.body:
            for rd in _reads(b):
                op = rd.tensor.op
                if not isinstance(op, ComputeOp) or op.num_outputs != 1:
                    continue
                cur = spans.setdefault(id(op), [(None, None)] * len(rd.indices))
                for d, e in enumerate(rd.indices):
                    span = _interval(e, ranges)
                    if cur[d] is None or span is None:
                        cur[d] = None
                    elif cur[d] == (None, None):
                        cur[d] = span
                    else:
                        cur[d] = (min(cur[d][0], span[0]), max(cur[d][1], span[1]))

    def rule(op, body, is_out):
        op2 = ComputeOp(op.name, op.axis, body, op.tag) if any(
            a is not b for a, b in zip(body, op.body)) else op
        read = spans.get(id(op))
        if is_out or read is None or op.num_outputs != 1:
            return op2, None
        axes, shift, mapping = [], [], {}
        for iv, span in zip(op2.axis, read):
            lo, ext = const_int(iv.dom.min), const_int(iv.dom.extent)
            if span is None or span == (None, None) or lo != 0 or ext is None or \
                    span[0] < 0 or span[1] >= ext or (span[0] == 0 and span[1] == ext - 1):
                axes.append(iv)
                shift.append(0)
                continue
            new = n.IterVar(n.Var(iv.var.name), n.Range(const(0, "int64"),
                                                        const(span[1] - span[0] + 1, "int64")))
            mapping[iv.var] = new.var + const(span[0], "int64") if span[0] else new.var
            axes.append(new)
            shift.append(span[0])
        if not mapping:
            return op2, None
        trimmed = ComputeOp(op2.name, tuple(axes), tuple(substitute(b, mapping)
                                                          for b in op2.body), op2.tag)

        def reindex(indices):
            return tuple(i - const(k, i.dtype) if k else i for i, k in zip(indices, shift))
        return trimmed, reindex
    return rule


def _rows_and_columns(op):
    """(op over (p // S, p % S), its readers' index map) for an elementwise op whose last
    axis ``p`` occurs only divided and reduced by one constant ``S``; else (op, None)."""
    body = op.body[0]
    if isinstance(body, n.Reduce) or not op.axis:
        return op, None
    p = op.axis[-1]
    found = _row_divisor(p, body)
    if found is None:
        return op, None
    P, S = found
    if S <= 1 or P % S:
        return op, None
    zero = const(0, "int64")
    rows = n.IterVar(n.Var(f"{p.var.name}.row"), n.Range(zero, const(P // S, "int64")))
    cols = n.IterVar(n.Var(f"{p.var.name}.col"), n.Range(zero, const(S, "int64")))

    class _Split(Mutator):
        def visit_FloorDiv(self, node):
            return rows.var if node.a is p.var else self.generic_visit(node)

        def visit_FloorMod(self, node):
            return cols.var if node.a is p.var else self.generic_visit(node)

    split = ComputeOp(f"{op.name}.rows", (*op.axis[:-1], rows, cols),
                      (_Split().visit(body),), op.tag)
    size = const(S, "int64")

    def reindex(indices):
        *lead, q = indices
        return (*lead, q // size, q % size)
    return split, reindex


def _panel_axis(op):
    """An output axis (not the last) alone in one dimension of a factor read whose other
    dimensions hold a reduction axis, the last output axis occurring in no index alone."""
    body = op.body[0]
    if not isinstance(body, n.Reduce) or not _is_sum(body) or len(op.axis) < 2:
        return None
    reads = _reads(body.source[0])
    last = op.axis[-1].var
    if any(len(rd.indices) and rd.indices[-1] is last for rd in reads):
        return None    # the last axis already runs along an operand's rows
    if any(i is last for rd in reads for i in rd.indices):
        return None
    reduce_vars = {iv.var for iv in op.reduce_axis}
    for iv in op.axis[:-1]:
        for rd in reads:
            dims = [d for d, i in enumerate(rd.indices) if i is iv.var]
            others = {v for d, i in enumerate(rd.indices) if d not in dims
                      for v in free_vars(i)}
            in_other_reads = any(iv.var in free_vars(i) for o in reads if o is not rd
                                 for i in o.indices)
            if len(dims) == 1 and others & reduce_vars and iv.var not in others and \
                    not in_other_reads:
                return iv
    return None


def _vector_axis_last(t: Tensor) -> Tensor:
    op = t.op
    f = _panel_axis(op)
    if f is None:
        return t
    axes = [iv for iv in op.axis if iv is not f] + [f]
    permuted = ComputeOp(f"{op.name}.t", tuple(axes), op.body, op.tag).output(0)
    from ..te import api
    return api.compute(t.shape, lambda *i: permuted[tuple(i[op.axis.index(iv)]
                                                          for iv in axes)], name=op.name)


def _row_divisor(p, body):
    """(extent P, divisor S) when axis ``p`` (from 0, constant extent) occurs in ``body``
    only as ``p // S`` and ``p % S`` for one constant ``S``; else None."""
    P = const_int(p.dom.extent)
    if P is None or const_int(p.dom.min) != 0:
        return None
    divisors, inside = set(), 0
    for x in post_order(body):
        if isinstance(x, (n.FloorDiv, n.FloorMod)) and x.a is p.var:
            divisors.add(const_int(x.b))
            inside += 1
    uses = sum(1 for x in post_order(body) if x is p.var)
    if len(divisors) != 1 or None in divisors or inside != uses:
        return None
    return P, next(iter(divisors))
