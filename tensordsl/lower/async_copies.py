"""Pipelined tile copies (GPU): ``s[T].pipeline(stages=S)`` made into ``cp.async``.

Runs after ``insert_barriers``. A pipelined shared tile has ``S`` copies indexed by
``ko % S`` (``flatten_storage``), and the loop ``ko`` it is computed at reads, once the
barriers are in::

    for ko in range(lo, lo + n):
        <copies of tile ko>           stores to the pipelined buffers only
        barrier
        <readers of tile ko>

That becomes (each copy a ``cp.async`` under ``Pragma("async_copy")``, written by the
backend; ``cp_async_commit`` closes a group of them, ``cp_async_wait(N)`` waits until at
most N groups of this thread are still in flight)::

    for p in range(S - 1):                         the prologue: tiles lo .. lo+S-2
        if p < n: <copies of tile lo + p>
        cp_async_commit()
    for ko in range(lo, lo + n):
        cp_async_wait(S - 2)                       this thread's copies of tile ko landed
        barrier                                    ... everyone's; and tile ko-1 is read
        if ko + S - 1 < lo + n: <copies of tile ko + S - 1>    into ko-1's copy, now free
        cp_async_commit()                          (every iteration: the count stays exact)
        <readers of tile ko>

One barrier per iteration, as with ``double_buffer``, and the copies of the next S-1
tiles in flight while this one is used. The readers' own barriers (if any) stay.
"""
from __future__ import annotations

from ..errors import BuildError
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor, substitute
from .gpu import _map_kernels

ASYNC_COPY = "async_copy"       # the Pragma key the backend writes as cp.async


def commit() -> n.Stmt:
    return n.Evaluate(n.Call("int32", "cp_async_commit", ()))


def wait(pending: int) -> n.Stmt:
    return n.Evaluate(n.Call("int32", "cp_async_wait", (n.IntImm("int32", pending),)))


class _Stores(Visitor):
    """The buffers a statement stores to, and whether it holds a barrier."""

    def __init__(self):
        self.stored: set = set()
        self.barrier = False

    def visit_Store(self, node):
        self.stored.add(id(node.buffer))
        self.generic_visit(node)

    def visit_Barrier(self, node):
        self.barrier = True

    def visit_AllReduce(self, node):
        self.barrier = True
        self.generic_visit(node)


def _stores(stmt) -> _Stores:
    v = _Stores()
    v.visit(stmt)
    return v


class _Pipeline(Mutator):
    def __init__(self, by_loop: dict):
        self.by_loop = by_loop           # loop Var -> (stages, {id(buffer): buffer})

    def visit_For(self, node):
        node = self.generic_visit(node)
        if node.var not in self.by_loop or node.kind == "thread_binding":
            return node
        stages, buffers = self.by_loop[node.var]
        allocs, body = [], node.body
        while isinstance(body, n.Allocate):
            allocs.append(body)
            body = body.body
        stmts = list(body.stmts) if isinstance(body, n.Seq) else [body]
        first_barrier = next((k for k, s in enumerate(stmts) if isinstance(s, n.Barrier)), None)
        copies = stmts[:first_barrier] if first_barrier is not None else []
        names = ", ".join(sorted(b.name for b in buffers.values()))
        if not copies or any(not _stores(c).stored or _stores(c).stored - set(buffers)
                             or _stores(c).barrier for c in copies):
            raise BuildError(
                f"pipeline: loop {node.var.name!r} must start with the copies of the "
                f"pipelined tiles ({names}) and a barrier before their readers; its body "
                "does something else first (compute the tile at the loop that reads it, "
                "from global memory only)")
        readers = stmts[first_barrier + 1:]
        ahead = stages - 1
        end = n.Add(node.min, node.extent)

        def copies_of(tile: n.Expr) -> n.Stmt:
            return n.Pragma(ASYNC_COPY, substitute(n.seq(*copies), {node.var: tile}))

        p = n.Var(f"{node.var.name}.prologue", node.var.dtype)
        prologue = n.For(p, n.IntImm(node.var.dtype, 0), n.IntImm(node.var.dtype, ahead),
                         "serial", n.seq(
                             n.IfThenElse(n.LT(p, node.extent),
                                          copies_of(n.Add(node.min, p))),
                             commit()))
        later = n.Add(node.var, n.IntImm(node.var.dtype, ahead))
        loop_body = n.seq(wait(stages - 2), n.Barrier("shared"),
                          n.IfThenElse(n.LT(later, end), copies_of(later)), commit(),
                          *readers)
        out: n.Stmt = n.seq(prologue, n.For(node.var, node.min, node.extent, node.kind,
                                            loop_body, node.thread_tag, node.balance))
        for a in reversed(allocs):        # the tiles now live across the whole loop
            out = n.Allocate(a.buffer, a.extent, out)
        return out


def pipeline_async_copies(f: n.PrimFunc) -> n.PrimFunc:
    """The pipelined tiles' loops rewritten as in the module docstring."""
    by_loop: dict = {}
    for buf, loop, stages in f.attrs.get("pipelined", ()):
        known = by_loop.setdefault(loop, (stages, {}))
        if known[0] != stages:
            raise BuildError(f"pipeline: the tiles copied in loop {loop.name!r} ask for "
                             f"{known[0]} and {stages} stages; give them the same number")
        known[1][id(buf)] = buf
    if not by_loop:
        return f
    return f.with_body(_map_kernels(f.body, lambda k: _Pipeline(by_loop).visit(k)))
