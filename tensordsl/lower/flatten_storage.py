"""Storage flattening: n-d tensors become flat buffers.

Argument tensors become the function's parameter buffers (row-major, dense). Each
``ProducerRealize`` becomes an ``Allocate`` of the realized region, so a stage computed
at a loop only stores its tile; ``T[i, j]`` becomes ``T[(i - min0)*stride0 + (j - min1)]``.
``storage_align`` pads a dimension's stride to ``factor*k + offset``.

A double-buffered stage (``s[T].double_buffer()``) gets two copies of its tile; the
iterations of the loop it is computed in alternate between them (``offset + (i % 2) *
size``), so a GPU block can fill the next tile while slow threads still read the last
one, with one barrier per iteration instead of two. A pipelined stage
(``s[T].pipeline(stages=S)``) gets ``S`` copies the same way (``(i % S) * size``), and
is listed with its loop for the GPU pass that copies it ahead (``async_copies.py``).
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
    def __init__(self, buffer: n.Buffer, mins, strides, base=None):
        self.buffer, self.mins, self.strides, self.base = buffer, mins, strides, base

    def offset(self, indices) -> n.Expr:
        out = self.base
        for idx, lo, stride in zip(indices, self.mins, self.strides):
            rel = idx if lo is None else n.Sub(idx, lo)
            term = rel if isinstance(stride, n.IntImm) and stride.value == 1 else n.Mul(rel, stride)
            out = term if out is None else n.Add(out, term)
        return out if out is not None else n.IntImm("int64", 0)


class FlattenStorage(Mutator):
    def __init__(self, param_buffers: dict, aligns: dict, double_buffered=frozenset(),
                 pipelined=None):
        self.layouts = {}
        self.aligns = aligns
        self.double_buffered = double_buffered
        self.pipelined = pipelined or {}     # op -> stages
        self.loops: list[n.Var] = []
        self.doubled: list[n.Buffer] = []
        self.pipelined_buffers: list[tuple[n.Buffer, n.Var, int]] = []
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
        base = None
        copies = self.pipelined.get(node.tensor.op, 2)
        if node.tensor.op in self.double_buffered and self.loops:
            # (with no loop around it, e.g. one of extent 1, one copy is all it needs)
            base = n.Mul(n.FloorMod(self.loops[-1], n.IntImm("int64", copies)), size)
            size = n.Mul(size, n.IntImm("int64", copies))
        buf = n.Buffer(node.tensor.name, node.tensor.dtype, (size,), node.scope)
        if base is not None:
            self.doubled.append(buf)
            if node.tensor.op in self.pipelined:
                self.pipelined_buffers.append((buf, self.loops[-1], copies))
        self.layouts[node.tensor] = _Layout(buf, [r.min for r in node.bounds], strides, base)
        body = self.visit(node.body)
        del self.layouts[node.tensor]
        return n.Allocate(buf, size, body)

    def visit_For(self, node):
        serial = node.kind in ("serial", "unrolled")
        if serial:
            self.loops.append(node.var)
        try:
            return self.generic_visit(node)
        finally:
            if serial:
                self.loops.pop()

    def visit_ProducerStore(self, node):
        lay = self.layout(node.tensor)
        value = self.visit(node.value)
        index = self.visit(lay.offset(node.indices))
        return n.Store(lay.buffer, value, index)

    def visit_TensorRead(self, node):
        lay = self.layout(node.tensor)
        index = self.visit(lay.offset(node.indices))
        return n.Load(node.tensor.dtype, lay.buffer, index)


def flatten_storage(body: n.Stmt, param_buffers: dict, aligns: dict,
                    double_buffered=frozenset(), pipelined=None):
    """The flattened body, the buffers that were double-buffered (or pipelined), and the
    pipelined ones as ``(buffer, loop variable, stages)``."""
    f = FlattenStorage(param_buffers, aligns, double_buffered, pipelined)
    return f.visit(body), f.doubled, f.pipelined_buffers
