"""Reverse mode: adjoint computes, from the output back to the inputs.

For every compute on a path from an input to the output, and every tensor it reads,
one adjoint compute per distinct index tuple of those reads (the partial derivative
times the output's adjoint, gathered by solving the index equations, ``solve.py``);
the adjoints a tensor receives from several readers are summed in one compute.
"""
from __future__ import annotations

from ..arith.simplify import Simplifier, const_int
from ..ir import nodes as n
from ..ir.op import cast, const, if_then_else
from ..ir.visitor import Mutator, Visitor, substitute
from ..te import api
from ..te.tensor import ACCUMULATE_TAG, ComputeOp, tensors_read
from .derivative import differentiate, is_differentiable, mul
from .graph import check_differentiable, depending_on, topological
from .reductions import SumForms
from .solve import Unknown, solve


def adjoints(y, xs, head, forms: SumForms | None = None) -> list:
    """The adjoint of each of ``xs``; ``head`` None is a cotangent of ones."""
    forms = forms or SumForms()
    order = topological([y])
    needed = depending_on(order, xs)
    check_differentiable(order, needed, "grad")
    received: dict = {y: [head]}
    for op in reversed(order):
        if id(op) not in needed or not isinstance(op, ComputeOp):
            continue
        for k, out in enumerate(op.outputs):
            parts = received.get(out)
            if not parts or not is_differentiable(out.dtype):
                continue
            adjoint = _total(out, parts)
            for tensor in tensors_read([op.body[k]]):
                if id(tensor.op) in needed and is_differentiable(tensor.dtype):
                    received.setdefault(tensor, []).extend(
                        _contributions(op, k, adjoint, tensor, forms))
    return [_as_compute(x, _total(x, received.get(x, []))) for x in xs]


def _as_compute(x, adjoint):
    """The adjoint as a compute of its own: ``x`` may be ``y`` itself, whose adjoint is
    the head (a placeholder) or ones (None)."""
    if adjoint is not None and isinstance(adjoint.op, ComputeOp):
        return adjoint
    return api.compute(x.shape, lambda *i: const(1, x.dtype) if adjoint is None
                       else adjoint[i], name=f"{x.name}.grad")


def _total(tensor, parts):
    """The sum of the adjoints ``tensor`` received (zeros for none; None is ones)."""
    if len(parts) == 1:
        if parts[0] is None:
            return None
        return parts[0]
    name = f"{tensor.name}.grad"
    if not parts:
        return api.compute(tensor.shape, lambda *i: const(0, tensor.dtype), name=name)

    def f(*i):
        total = None
        for p in parts:
            term = const(1, tensor.dtype) if p is None else p[i]
            total = term if total is None else total + term
        return total
    return api.compute(tensor.shape, f, name=name)


def _contributions(op, k, adjoint, tensor, forms):
    source, raxes, condition = forms.form(op, k)
    keys = Simplifier()
    groups: dict = {}
    for read in _reads_of(source, tensor):
        groups.setdefault(tuple(keys.key(i) for i in read.indices), read.indices)
    one = const(1, tensor.dtype)
    out = []
    for key, indices in groups.items():
        partial = differentiate(source, lambda r, key=key: one if r.tensor == tensor and tuple(
            keys.key(i) for i in r.indices) == key else None)
        if partial is None:
            continue
        value = partial if adjoint is None else mul(adjoint[tuple(iv.var for iv in op.axis)],
                                                    partial)
        out.append(_gather(op, raxes, condition, indices, value, tensor, len(out)))
    return out


def _reads_of(expr, tensor):
    reads = []

    class _Reads(Visitor):
        def visit_TensorRead(self, node):
            if node.tensor == tensor:
                reads.append(node)
            self.generic_visit(node)

    _Reads().visit(expr)
    return reads


def _gather(op, raxes, condition, indices, value, tensor, part: int):
    """``tensor``'s adjoint from one index tuple of ``op``'s reads: for each element
    ``j``, the sum of ``value`` over the iterations of ``op`` that read ``j``."""
    unknowns = [Unknown(iv.var, iv.dom.min, iv.dom.extent) for iv in (*op.axis, *raxes)]
    exact = []

    def f(*j):
        ranges = {}
        for v, d in zip(j, tensor.shape):
            extent = const_int(d)
            if extent is not None:
                ranges[v] = (0, extent - 1)
        sol = solve(indices, j, unknowns, ranges,
                    fresh_axis=lambda name, lo, ext: api.reduce_axis((lo, lo + ext), name),
                    extents=dict(zip(j, tensor.shape)))
        exact.append(sol.exact)
        zero = const(0, tensor.dtype)
        if not sol.substitution:     # no iteration ever reads this index tuple
            return zero
        for iv in sol.free:
            lo, extent = const_int(iv.dom.min), const_int(iv.dom.extent)
            if lo is not None and extent is not None:
                ranges[iv.var] = (lo, lo + extent - 1)
        # simplified with the ranges: (2*q + t) // 2 with t < 2 is q, which the bounds
        # check can then see is in range
        simplify = Simplifier(ranges).visit
        body = simplify(cast(tensor.dtype, substitute(_known_reads(value, indices, j),
                                                      sol.substitution)))
        where = _conjunction(sol.conditions)
        own = simplify(substitute(condition, sol.substitution))
        if not (isinstance(own, n.IntImm) and own.value):
            # the compute's own condition may read tensors (an argmax mask): only where
            # the solved indices are in range (And evaluates both sides)
            where = own if where is None else if_then_else(where, own, const(False))
        if sol.free:
            return api.sum(body, axis=sol.free, where=where)
        return body if where is None else if_then_else(where, body, zero)

    suffix = f".{part}" if part else ""
    result = api.compute(tensor.shape, f, name=f"{op.name}.grad.{tensor.name}{suffix}")
    if not all(exact):
        result.op.tag = ACCUMULATE_TAG
    return result


def _known_reads(value, indices, targets):
    """``value`` with each data-dependent index of the read (``rows[p]``, ``crd[q]``)
    replaced by its target wherever it recurs: every iteration summed reads ``targets``
    (so ``total[rows[p]]`` over the entries of row ``i`` reads ``total[i]``)."""
    keys = Simplifier()
    known = {keys.key(e): t for e, t in zip(indices, targets)
             if isinstance(e, n.TensorRead) or isinstance(getattr(e, "value", None),
                                                          n.TensorRead)}
    if not known:
        return value

    class _Replace(Mutator):
        def visit(self, node):
            if isinstance(node, n.Expr) and node.dtype == "int64":
                hit = known.get(keys.key(node))
                if hit is not None:
                    return hit
            return super().visit(node)

    return _Replace().visit(value)


def _conjunction(conditions):
    """``c0 and c1 and ...``; None for no condition."""
    return None if not conditions else _and_all(conditions)


def _and_all(conditions):
    out = conditions[0]
    for c in conditions[1:]:
        out = n.And(out, c)
    return out
