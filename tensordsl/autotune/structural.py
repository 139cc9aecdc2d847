"""A compute's identity, independent of names: what records of a user's compute are
filed under, so that ``td.build`` of the same computation finds what ``tensordsl tune
file.py:function`` measured, wherever the file lives and whatever the tensors are called.

Stages are numbered in dependency order, placeholders by their position among the
arguments, variables by first appearance; the key hashes that canonical form together
with every shape and dtype.
"""
from __future__ import annotations

import hashlib
from dataclasses import fields, is_dataclass

from ..arith.simplify import const_int
from ..ir import nodes as n
from ..te.tensor import ComputeOp, PlaceholderOp, Tensor


def structural_key(out: Tensor, inputs: list[Tensor]) -> str:
    order: list = []
    seen: set = set()

    def visit(op):
        if id(op) in seen:
            return
        seen.add(id(op))
        for t in getattr(op, "input_tensors", []):
            visit(t.op)
        order.append(op)

    visit(out.op)
    index = {id(op): k for k, op in enumerate(order)}
    position = {id(t.op): k for k, t in enumerate(inputs)}
    variables: dict = {}

    def enc(x):
        if isinstance(x, n.Var):
            return ("var", variables.setdefault(id(x), len(variables)), x.dtype)
        if isinstance(x, Tensor):
            return ("tensor", index[id(x.op)], x.value_index)
        if isinstance(x, n.IterVar):
            return ("iv", enc(x.var), enc(x.dom.min), enc(x.dom.extent), x.kind)
        if isinstance(x, (tuple, list)):
            return tuple(enc(v) for v in x)
        if is_dataclass(x):
            return (type(x).__name__,) + tuple(
                enc(getattr(x, f.name)) for f in fields(x) if f.name != "name")
        return x

    parts = []
    for op in order:
        if isinstance(op, PlaceholderOp):
            parts.append(("placeholder", position.get(id(op), -1), enc(op.shape), op.dtype))
        elif isinstance(op, ComputeOp):
            parts.append(("compute", enc(op.axis), enc(op.reduce_axis), enc(op.body)))
        else:
            parts.append((type(op).__name__,))
    return "compute:" + hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def record_key(out: Tensor, inputs: list[Tensor]) -> str | None:
    """The key its records are filed under (``Workload.key`` of the compute): what it
    computes and its inputs' shapes; None while a shape is symbolic (no records)."""
    from .records import canonical
    shapes = [[const_int(d) for d in t.shape] for t in inputs]
    if any(d is None for shape in shapes for d in shape):
        return None
    return canonical({"op": structural_key(out, inputs),
                      "args": [["array", shape, t.dtype] for shape, t in zip(shapes, inputs)],
                      "attrs": {}})
