"""Storage flattening: n-d tensors become flat buffers.

Argument tensors become the function's parameter buffers (row-major, dense). Each
``ProducerRealize`` becomes an ``Allocate`` of the realized region, so a stage computed
at a loop only stores its tile; ``T[i, j]`` becomes ``T[(i - min0)*stride0 + (j - min1)]``.
``storage_align`` pads a dimension's stride to ``factor*k + offset``.
"""
from __future__ import annotations

from ..errors import BuildError
from ..ir import nodes as n
from ..ir.visitor import Mutator

_ONE = n.IntImm("int64", 1)


def row_major_strides(shape, align: dict | None = None) -> list[n.Expr]:
    strides = [_ONE] * len(shape)
    acc = _ONE
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc
        acc = n.Mul(acc, shape[d])
        if align and d - 1 in align and d > 0:
            factor, offset = align[d - 1]
            f = n.IntImm("int64", factor)
            # round the next stride up to factor*k + offset
            acc = n.Add(n.Mul(n.FloorDiv(n.Add(acc, n.IntImm("int64", factor - 1 - offset)), f), f),
                        n.IntImm("int64", offset))
    return strides


class _Layout:
    def __init__(self, buffer: n.Buffer, mins, strides):
        self.buffer, self.mins, self.strides = buffer, mins, strides

    def offset(self, indices) -> n.Expr:
        out = None
        for idx, lo, stride in zip(indices, self.mins, self.strides):
            rel = idx if lo is None else n.Sub(idx, lo)
            term = rel if isinstance(stride, n.IntImm) and stride.value == 1 else n.Mul(rel, stride)
            out = term if out is None else n.Add(out, term)
        return out if out is not None else n.IntImm("int64", 0)


class FlattenStorage(Mutator):
    def __init__(self, param_buffers: dict, aligns: dict):
        self.layouts = {}
        self.aligns = aligns
        for tensor, buf in param_buffers.items():
            self.layouts[tensor] = _Layout(buf, [None] * len(buf.shape),
                                           row_major_strides(buf.shape))

    def layout(self, tensor) -> _Layout:
        lay = self.layouts.get(tensor)
        if lay is None:
            raise BuildError(f"tensor {tensor.name!r} is used but is neither an argument of "
                             "the function nor computed by the schedule; pass it in args")
        return lay

    def visit_ProducerRealize(self, node):
        extents = [r.extent for r in node.bounds]
        strides = row_major_strides(extents, self.aligns.get(node.tensor.op))
        size = extents[0] if extents else _ONE
        if extents:
            size = n.Mul(strides[0], extents[0])
        buf = n.Buffer(node.tensor.name, node.tensor.dtype, (size,), node.scope)
        self.layouts[node.tensor] = _Layout(buf, [r.min for r in node.bounds], strides)
        body = self.visit(node.body)
        del self.layouts[node.tensor]
        return n.Allocate(buf, size, body)

    def visit_ProducerStore(self, node):
        lay = self.layout(node.tensor)
        value = self.visit(node.value)
        index = self.visit(lay.offset(node.indices))
        return n.Store(lay.buffer, value, index)

    def visit_TensorRead(self, node):
        lay = self.layout(node.tensor)
        index = self.visit(lay.offset(node.indices))
        return n.Load(node.tensor.dtype, lay.buffer, index)


def flatten_storage(body: n.Stmt, param_buffers: dict, aligns: dict) -> n.Stmt:
    return FlattenStorage(param_buffers, aligns).visit(body)
