"""Forward mode: a tangent compute beside each compute on a path from the inputs.

The tangent of ``Y[i] = sum over r where c of s(i, r)`` is the same sum of the
directional derivative of ``s``, reading the tangents of the tensors ``s`` reads at the
same indices: no index solving, the iteration domain is the compute's own.
"""
from __future__ import annotations

from ..ir.op import const
from ..ir.visitor import substitute
from ..te import api
from ..te.tensor import ComputeOp
from .derivative import differentiate, is_differentiable
from .graph import check_differentiable, depending_on, topological
from .reductions import SumForms


def tangents(ys, xs, tangents_of_xs, forms: SumForms | None = None) -> list:
    """The tangent of each of ``ys`` when each of ``xs`` moves along its tangent."""
    forms = forms or SumForms()
    order = topological(ys)
    needed = depending_on(order, xs)
    check_differentiable(order, needed, "jvp")
    tangent = dict(zip(xs, tangents_of_xs))

    def tangent_of(t):
        """``t``'s tangent (None: zero), derived on first use: only what is read."""
        if t not in tangent:
            tangent[t] = None
            if id(t.op) in needed and isinstance(t.op, ComputeOp) and \
                    is_differentiable(t.dtype):
                tangent[t] = _tangent(t.op, t.value_index, tangent_of, forms)
        return tangent[t]

    return [tangent_of(y) or _zeros(y) for y in ys]


def _zeros(t):
    return api.compute(t.shape, lambda *i: const(0, t.dtype), name=f"{t.name}.tangent")


def _tangent(op, k, tangent_of, forms):
    source, raxes, condition = forms.form(op, k)

    def read_tangent(r):
        t = tangent_of(r.tensor)
        return None if t is None else t[r.indices]

    derivative = differentiate(source, read_tangent)
    out = op.output(k)
    if derivative is None:
        return None

    def f(*idx):
        mapping = {iv.var: i for iv, i in zip(op.axis, idx)}
        if not raxes:
            return substitute(derivative, mapping)
        # (a range may read the compute's axes: a sparse row's [pos[i], pos[i + 1]))
        axes = [api.reduce_axis((substitute(iv.dom.min, mapping),
                                 substitute(iv.dom.min + iv.dom.extent, mapping)), iv.var.name)
                for iv in raxes]
        mapping.update({iv.var: new.var for iv, new in zip(raxes, axes)})
        return api.sum(substitute(derivative, mapping), axis=axes,
                       where=substitute(condition, mapping))

    return api.compute(out.shape, f, name=f"{out.name}.tangent")
