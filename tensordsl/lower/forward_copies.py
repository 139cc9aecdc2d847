"""Forwarding copies: an intermediate copied whole into an output is computed in the
output's place.

A compute definition often produces its result in a shape of its own and ends with a
copy into the output's (``kernels.dense._conv2d_nchw_channels`` computes over flattened
positions, ``vec[b, f, q]``, then writes ``out[b, f, y, x] = vec[b, f, y*OW + x]``).
After flattening, such a copy reads and writes the same element offset; when nothing
else touches the output and nothing reads the intermediate afterwards, the copy is
dropped and the intermediate's accesses go to the output's buffer instead (b8 ResNet-50
stem: a 25.7 MB intermediate written, read and written again, every call).

The copy qualifies when it is a nest of loops (and guards) around one store
``out[i] = tmp[i]`` (the same index expression on both sides, no cast), ``tmp`` is an
allocation of ``out``'s dtype and size, the copy is the last statement of ``tmp``'s
scope to touch it, and ``out`` is an output accessed nowhere else. Elements of ``out``
the copy skipped now hold ``tmp``'s values instead of nothing. CPU pipeline only (runs
after ``simplify_flat``, before vectorization).
"""
from __future__ import annotations

import math

from ..arith.simplify import Simplifier
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor


class _Accesses(Visitor):
    """How many loads and stores name each buffer (by identity)."""

    def __init__(self):
        self.count: dict = {}

    def _note(self, buf):
        self.count[id(buf)] = self.count.get(id(buf), 0) + 1

    def visit_Load(self, node):
        self._note(node.buffer)
        self.generic_visit(node)

    def visit_Store(self, node):
        self._note(node.buffer)
        self.generic_visit(node)


def _accesses(*nodes) -> dict:
    acc = _Accesses()
    for node in nodes:
        acc.visit(node)
    return acc.count


def _copied(stmt, simp: Simplifier):
    """(destination, source) of a nest of loops and guards around one whole-element copy
    ``dst[i] = src[i]``, else None."""
    while True:
        if isinstance(stmt, n.For):
            stmt = stmt.body
        elif isinstance(stmt, n.IfThenElse) and stmt.else_case is None:
            stmt = stmt.then_case
        else:
            break
    if not isinstance(stmt, n.Store) or stmt.predicate is not None:
        return None
    value = stmt.value
    if not isinstance(value, n.Load) or value.predicate is not None or \
            value.dtype != stmt.buffer.dtype or value.buffer is stmt.buffer:
        return None
    if simp.key(value.index) != simp.key(stmt.index):
        return None
    return stmt.buffer, value.buffer


def _size(buf) -> int | None:
    dims = [d.value if isinstance(d, n.IntImm) else None for d in buf.shape]
    return None if None in dims else math.prod(dims)


class _Rename(Mutator):
    def __init__(self, old, new):
        self.old, self.new = old, new

    def visit_Load(self, node):
        node = self.generic_visit(node)
        if node.buffer is not self.old:
            return node
        return n.Load(node.dtype, self.new, node.index, node.predicate)

    def visit_Store(self, node):
        node = self.generic_visit(node)
        if node.buffer is not self.old:
            return node
        return n.Store(self.new, node.value, node.index, node.predicate)


class _Forward(Mutator):
    def __init__(self, outputs, counts):
        self.outputs = {id(b): b for b in outputs}
        self.counts = counts
        self.simp = Simplifier()

    def visit_Allocate(self, node):
        node = self.generic_visit(node)
        tmp = node.buffer
        if tmp.scope != "global" or not isinstance(node.extent, n.IntImm):
            return node
        # the allocation's scope: allocations of other buffers around one sequence
        wrappers, seq = [], node.body
        while isinstance(seq, n.Allocate):
            wrappers.append(seq)
            seq = seq.body
        if not isinstance(seq, n.Seq):
            return node
        for k, stmt in enumerate(seq.stmts):
            pair = _copied(stmt, self.simp)
            if pair is None or pair[1] is not tmp:
                continue
            out = pair[0]
            if (id(out) not in self.outputs or self.counts.get(id(out)) != 1
                    or out.dtype != tmp.dtype or _size(out) != node.extent.value
                    or id(tmp) in _accesses(*seq.stmts[k + 1:])):
                continue
            rest = seq.stmts[:k] + seq.stmts[k + 1:]
            body = _Rename(tmp, out).visit(rest[0] if len(rest) == 1 else n.Seq(rest))
            for w in reversed(wrappers):
                body = n.Allocate(w.buffer, w.extent, body)
            return body
        return node


def forward_copies(func: n.PrimFunc) -> n.PrimFunc:
    counts = _accesses(func.body)
    body = _Forward(func.outputs, counts).visit(func.body)
    return func if body is func.body else func.with_body(body)
