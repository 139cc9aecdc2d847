"""Every differentiable compute body as a masked sum: ``Y[i] = sum over r where c of s``.

Both modes differentiate that one form. A plain body is a sum over no axes; ``td.sum``
is one already. ``max``/``min`` become the sum over the single element that attains
them: an argmax compute (the index of the first maximal element in the reduction's
row-major order, a tuple reduction that is exact whatever order the schedule reduces
in) masks the sum. Every other ``comm_reducer`` is refused, by name.
"""
from __future__ import annotations

from ..errors import TensorDSLError
from ..ir import nodes as n
from ..ir.op import const, max_value, min_value, select
from ..ir.visitor import substitute
from ..te import api
from ..te.tensor import ComputeOp


def reducer_kind(combiner: n.CommReducer, k: int = 0) -> str | None:
    """"sum", "max" or "min" when output ``k`` of the combiner is that reduction of its
    own component alone (a tuple reducer of independent sums, say), else None."""
    x, y, r = combiner.lhs[k], combiner.rhs[k], combiner.result[k]
    for kind, cls in (("sum", n.Add), ("max", n.Max), ("min", n.Min)):
        if isinstance(r, cls) and {id(r.a), id(r.b)} == {id(x), id(y)}:
            return kind
    return None


class SumForms:
    """``form(op, k)`` -> (source, reduce axes, condition) of output ``k``; the argmax
    computes it creates are shared by every derivation that uses this object."""

    def __init__(self):
        self._argmax: dict = {}

    def form(self, op: ComputeOp, k: int):
        body = op.body[k]
        if not isinstance(body, n.Reduce):
            return body, (), const(True)
        kind = reducer_kind(body.combiner, body.value_index)
        if kind is None:
            raise TensorDSLError(
                f"cannot differentiate {op.name!r}: its reduction {body.combiner.name!r} "
                "is not sum, max or min, and has no derivative rule (reduce into sum, max "
                "or min, or leave this tensor out of the differentiated graph)")
        source = body.source[body.value_index]
        if kind == "sum":
            return source, body.axis, body.condition
        chosen = n.EQ(_row_major(body.axis), self._argmax_of(op, k, kind)[
            tuple(iv.var for iv in op.axis)])
        return source, body.axis, n.And(body.condition, chosen)

    def _argmax_of(self, op: ComputeOp, k: int, kind: str):
        key = (id(op), k)
        if key not in self._argmax:
            self._argmax[key] = _argmax(op, k, kind)
        return self._argmax[key]


def _row_major(axes) -> n.Expr:
    flat = const(0)
    for iv in axes:
        flat = flat * iv.dom.extent + (iv.var - iv.dom.min)
    return flat


def _argmax(op: ComputeOp, k: int, kind: str):
    body = op.body[k]
    value = body.source[body.value_index]
    better = (lambda a, b: a > b) if kind == "max" else (lambda a, b: a < b)

    def combine(x, y):
        (i1, v1), (i2, v2) = x, y
        # the later operand wins on a strictly better value, or on a tie with a smaller
        # index: commutative and associative, so any reduction order agrees
        take = better(v2, v1) | ((v2 == v1) & (i2 < i1))
        return select(take, i2, i1), select(take, v2, v1)

    def identity(index_dtype, value_dtype):
        worst = min_value(value_dtype) if kind == "max" else max_value(value_dtype)
        return max_value(index_dtype), worst

    reducer = api.comm_reducer(combine, identity, name=f"arg{kind}")

    def f(*idx):
        mapping = {iv.var: i for iv, i in zip(op.axis, idx)}
        # (a range may read the compute's axes: a sparse row's [pos[i], pos[i + 1]))
        axes = [api.reduce_axis((substitute(iv.dom.min, mapping),
                                 substitute(iv.dom.min + iv.dom.extent, mapping)), iv.var.name)
                for iv in body.axis]
        mapping.update({iv.var: new.var for iv, new in zip(body.axis, axes)})
        flat = substitute(_row_major(body.axis), mapping)
        return reducer((flat, substitute(value, mapping)), axis=axes,
                       where=substitute(body.condition, mapping))

    index, _ = api.compute(op.shape, f, name=f"{op.name}.arg{kind}")
    return index
