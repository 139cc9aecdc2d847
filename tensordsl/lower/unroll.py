"""Unrolling: an ``unrolled`` loop of constant extent becomes a sequence of copies of
its body, one per iteration (a loop of symbolic extent stays a loop)."""
from __future__ import annotations

from ..ir import nodes as n
from ..ir.visitor import Mutator, substitute

MAX_UNROLL = 256


class UnrollLoops(Mutator):
    def visit_For(self, node):
        body = self.visit(node.body)
        if node.kind == "unrolled" and isinstance(node.extent, n.IntImm) \
                and node.extent.value <= MAX_UNROLL:
            return n.seq(*[substitute(body, {node.var: n.Add(node.min, n.IntImm("int64", k))})
                           for k in range(node.extent.value)])
        kind = "serial" if node.kind == "unrolled" else node.kind
        if body is node.body and kind == node.kind:
            return node
        return n.For(node.var, node.min, node.extent, kind, body, node.thread_tag, node.balance)


def unroll_loops(body: n.Stmt) -> n.Stmt:
    return UnrollLoops().visit(body)
