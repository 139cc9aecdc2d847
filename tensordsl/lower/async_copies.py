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

Tiles the TMA copies (``pipeline(..., tma=True)``, boxes from ``tma.py``) get a second
version of the loop, chosen where the kernel is compiled for sm_90 and later
(``if tma_available()``, an ``#if`` in the CUDA C): one thread starts each tile's copy
whole (``TmaLoad``), and an mbarrier per stage counts its bytes in::

    barrier                                        (an earlier run's readers are done)
    if first thread: mbarrier_init(bar[s], 1) for each s; fence
    barrier
    for p in range(S - 1):
        if p < n: <issue tile lo + p>
    for ko in range(lo, lo + n):
        mbarrier_wait(bar[ko % S], ((ko - lo) // S) % 2)     tile ko landed (phase parity)
        barrier                                              tile ko-1 is read
        if ko + S - 1 < lo + n: <issue tile ko + S - 1>      into ko-1's stage, now free
        <readers of tile ko>
    if first thread: mbarrier_inval(bar[s]) for each s

where ``<issue tile t>`` is ``if first thread: mbarrier_expect_tx(bar[t % S], bytes of
the tiles); TmaLoad(...) for each tile``: the thread's arrival, with the bytes the
copies will complete, so the stage's phase ends when all of them have landed.
"""
from __future__ import annotations

from ..errors import BuildError
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor, substitute
from .gpu import _map_kernels
from .tma import TMA_AVAILABLE

ASYNC_COPY = "async_copy"       # the Pragma key the backend writes as cp.async
FIRST_THREAD = "is_first_thread"   # Call: thread (0, 0, 0) of the block


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


def _mbarrier(op: str, barrier: n.Buffer, slot, *args) -> n.Stmt:
    """``mbarrier_<op>(&barrier[slot], args...)`` (the backend writes the PTX)."""
    slot = slot if isinstance(slot, n.Expr) else n.IntImm("int32", slot)
    return n.Evaluate(n.Call("int32", f"mbarrier_{op}",
                             (n.Load(barrier.dtype, barrier, slot),) + args))


def _first_thread(stmt: n.Stmt) -> n.Stmt:
    return n.IfThenElse(n.Call("bool", FIRST_THREAD, ()), stmt)


class _Pipeline(Mutator):
    def __init__(self, by_loop: dict):
        self.by_loop = by_loop   # loop Var -> (stages, {id(buffer): buffer}, {id: TmaBox})

    def visit_For(self, node):
        node = self.generic_visit(node)
        if node.var not in self.by_loop or node.kind == "thread_binding":
            return node
        stages, buffers, boxes = self.by_loop[node.var]
        allocs, body, after = [], node.body, []
        if isinstance(body, n.Seq) and len(body.stmts) == 2 and \
                isinstance(body.stmts[1], n.Barrier):
            # the barrier insert_barriers ends the iteration with, outside the tiles'
            # allocations, when another shared array is carried over (read, then written
            # the next time round): it stays last among the readers
            body, after = body.stmts[0], [body.stmts[1]]
        while isinstance(body, n.Allocate):
            allocs.append(body)
            body = body.body
        stmts = (list(body.stmts) if isinstance(body, n.Seq) else [body]) + after
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
        if boxes:
            out = n.IfThenElse(n.Call("bool", TMA_AVAILABLE, ()),
                               self.tma_loop(node, stages, boxes, allocs, readers), out)
        for a in reversed(allocs):        # the tiles now live across the whole loop
            out = n.Allocate(a.buffer, a.extent, out)
        return out


    def tma_loop(self, node: n.For, stages: int, boxes: dict, allocs, readers) -> n.Stmt:
        """The loop for the TMA (module docstring): ``boxes`` id(tile buffer) -> box."""
        var, dtype = node.var, node.var.dtype
        bars = n.Buffer(f"{var.name}.mbarrier", "int64", (n.IntImm("int64", stages),),
                        "shared")
        tiles = []
        for a in allocs:
            if id(a.buffer) in boxes:
                if not isinstance(a.extent, n.IntImm) or a.extent.value % stages:
                    raise BuildError(f"pipeline(tma=True): tile {a.buffer.name!r} needs a "
                                     f"constant size, {stages} stages of it; got {a.extent}")
                tiles.append((a.buffer, a.extent.value // stages, boxes[id(a.buffer)]))
        assert len(tiles) == len(boxes)     # (each tile is allocated at its loop)
        nbytes = sum(box.nbytes for _, _, box in tiles)
        count = n.IntImm(dtype, stages)

        def issue(tile: n.Expr) -> n.Stmt:
            slot = n.FloorMod(tile, count)
            copies = [n.TmaLoad(buf, n.Mul(slot, n.IntImm(dtype, size)), box.src,
                                tuple(substitute(o, {var: tile}) for o in box.origin),
                                box.box, box.swizzle, bars, slot)
                      for buf, size, box in tiles]
            return _first_thread(n.seq(_mbarrier("expect_tx", bars, slot,
                                                 n.IntImm("int32", nbytes)), *copies))

        end = n.Add(node.min, node.extent)
        p = n.Var(f"{var.name}.prologue", dtype)
        prologue = n.For(p, n.IntImm(dtype, 0), n.IntImm(dtype, stages - 1), "serial",
                         n.IfThenElse(n.LT(p, node.extent), issue(n.Add(node.min, p))))
        later = n.Add(var, n.IntImm(dtype, stages - 1))
        parity = n.FloorMod(n.FloorDiv(n.Sub(var, node.min), count), n.IntImm(dtype, 2))
        loop = n.For(var, node.min, node.extent, node.kind, n.seq(
            _mbarrier("wait", bars, n.FloorMod(var, count), parity), n.Barrier("shared"),
            n.IfThenElse(n.LT(later, end), issue(later)), *readers),
            node.thread_tag, node.balance)
        init = n.seq(*[_mbarrier("init", bars, s, n.IntImm("int32", 1))
                       for s in range(stages)],
                     n.Evaluate(n.Call("int32", "mbarrier_fence_init", ())))
        inval = n.seq(*[_mbarrier("inval", bars, s) for s in range(stages)])
        return n.Allocate(bars, n.IntImm("int64", stages), n.seq(
            n.Barrier("shared"), _first_thread(init), n.Barrier("shared"), prologue, loop,
            _first_thread(inval)))


def pipeline_async_copies(f: n.PrimFunc) -> n.PrimFunc:
    """The pipelined tiles' loops rewritten as in the module docstring."""
    by_loop: dict = {}
    for buf, loop, stages, box in f.attrs.get("pipelined", ()):
        known = by_loop.setdefault(loop, (stages, {}, {}))
        if known[0] != stages:
            raise BuildError(f"pipeline: the tiles copied in loop {loop.name!r} ask for "
                             f"{known[0]} and {stages} stages; give them the same number")
        known[1][id(buf)] = buf
        if box is not None:
            known[2][id(buf)] = box
    for loop, (_, buffers, boxes) in by_loop.items():
        if boxes and len(boxes) != len(buffers):
            names = ", ".join(sorted(b.name for b in buffers.values()))
            raise BuildError(f"pipeline: of the tiles copied in loop {loop.name!r} ({names}) "
                             "some ask for tma=True and some do not; give them the same")
    if not by_loop:
        return f
    return f.with_body(_map_kernels(f.body, lambda k: _Pipeline(by_loop).visit(k)))
