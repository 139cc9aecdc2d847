"""inject_virtual_threads: loops bound to ``vthread`` become interleaved copies of their
body in one real thread (TVM's ``InjectVirtualThread``).

A virtual thread is a thread the hardware never sees: ``s[C].bind(ax, td.thread_axis(
"vthread"))`` asks for ``ax``'s iterations to be interleaved, so each real thread works
on several strided tiles at once. ``schedule_ops`` leaves the loop as a ``For`` of kind
``vthread``; this pass (after ``flatten_storage``, on flat buffers) removes it:

* the loop is pushed inwards, through sequences, serial, unrolled and thread-bound
  loops, allocations, lets and ifs that do not depend on it, and a statement that does
  is copied once per virtual thread with its index substituted. A statement that does
  not mention it runs once for all of them, as a shared tile's fill does (bound
  inference gives a ``shared`` stage the region of every virtual thread);
* a ``shared`` buffer allocated inside the loop is one buffer for all of them, as for
  real threads: its allocation moves outside the loop;
* any other buffer allocated inside it is per virtual thread: one allocation
  ``extent * count`` long, virtual thread ``v`` using ``[v * extent, (v + 1) * extent)``.

Before (``vx`` a vthread of extent 2, ``T`` local, ``S`` shared)::

    for vx in range(0, 2):  # vthread
      T = allocate(float32[4], local)
      for k in range(0, 8):
        S[tx] = ...              # no vx
        T[j] = T[j] + S[...] * A[vx*4 + j, k]

After::

    T = allocate(float32[8], local)
    for k in range(0, 8):
      S[tx] = ...
      T[j] = T[j] + S[...] * A[j, k]
      T[4 + j] = T[4 + j] + S[...] * A[4 + j, k]

The copies are reordered against each other exactly as threads may be: a schedule whose
virtual threads communicate through memory other than a shared tile is not one TVM
accepts either.
"""
from __future__ import annotations

from ..errors import BuildError
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor, substitute

# loops the virtual threads are pushed into; a vectorized (or parallel) loop is copied
# whole, so that each copy stays one vector operation
_PUSH_THROUGH = ("serial", "unrolled", "thread_binding")


def inject_virtual_threads(f: n.PrimFunc) -> n.PrimFunc:
    injector = _Inject()
    body = injector.visit(f.body)
    if body is f.body:
        return f
    doubled = tuple(injector.expanded.get(b, b) for b in f.attrs.get("double_buffered", ()))
    return n.PrimFunc(f.name, f.params, body, f.outputs, {**f.attrs, "double_buffered": doubled})


class _Inject(Mutator):
    def __init__(self):
        self.expanded: dict[n.Buffer, n.Buffer] = {}

    def visit_For(self, node):
        body = self.visit(node.body)   # inner virtual threads first
        if node.kind != "vthread":
            if body is node.body:
                return node
            return n.For(node.var, node.min, node.extent, node.kind, body, node.thread_tag,
                     node.balance)
        if not isinstance(node.extent, n.IntImm):
            raise BuildError(f"the loop {node.var.name!r} bound to {node.thread_tag} has the "
                             f"symbolic extent {node.extent}; a virtual thread count must be "
                             "a constant")
        count = node.extent.value
        v = node.var
        expand = _ExpandPrivate(v, count, self.expanded)
        body = _push(expand.visit(body), v, node.min, count)
        for alloc in reversed(expand.shared):
            body = n.Allocate(alloc.buffer, alloc.extent, body)
        return body


class _ExpandPrivate(Mutator):
    """Every non-shared allocation becomes one slice per virtual thread ``v``; the
    (constant-size) shared ones are taken out, to be allocated around the loop."""

    def __init__(self, v, count, expanded):
        self.v, self.count, self.expanded = v, count, expanded
        self.slices: dict[n.Buffer, tuple[n.Buffer, n.Expr]] = {}
        self.shared: list[n.Allocate] = []

    def visit_Allocate(self, node):
        if node.buffer.scope == "shared":
            if not isinstance(node.extent, n.IntImm):
                return self.generic_visit(node)
            self.shared.append(node)
            return self.visit(node.body)
        old = node.buffer
        extent = n.Mul(node.extent, n.IntImm("int64", self.count))
        new = n.Buffer(old.name, old.dtype, (extent,), old.scope)
        self.slices[old] = (new, n.Mul(self.v, node.extent))
        self.expanded[old] = new
        body = self.visit(node.body)
        del self.slices[old]
        return n.Allocate(new, extent, body)

    def visit_Load(self, node):
        node = self.generic_visit(node)
        if node.buffer not in self.slices:
            return node
        new, base = self.slices[node.buffer]
        return n.Load(node.dtype, new, n.Add(base, node.index), node.predicate)

    def visit_Store(self, node):
        node = self.generic_visit(node)
        if node.buffer not in self.slices:
            return node
        new, base = self.slices[node.buffer]
        return n.Store(new, node.value, n.Add(base, node.index), node.predicate)


class _Mentions(Visitor):
    def __init__(self, var):
        self.var, self.found = var, False

    def visit(self, node):
        if not self.found:
            super().visit(node)

    def visit_Var(self, node):
        self.found |= node is self.var


def _mentions(node, var) -> bool:
    m = _Mentions(var)
    m.visit(node)
    return m.found


def _push(stmt: n.Stmt, v: n.Var, lo: n.Expr, count: int) -> n.Stmt:
    """``for v in range(lo, lo + count): stmt`` with the loop moved as far in as it goes."""
    if not _mentions(stmt, v):
        return stmt
    if isinstance(stmt, n.Seq):
        return n.seq(*[_push(s, v, lo, count) for s in stmt.stmts])
    if isinstance(stmt, n.For) and stmt.kind in _PUSH_THROUGH and not (
            _mentions(stmt.min, v) or _mentions(stmt.extent, v)):
        return n.For(stmt.var, stmt.min, stmt.extent, stmt.kind, _push(stmt.body, v, lo, count),
                     stmt.thread_tag)
    if isinstance(stmt, n.Allocate) and not _mentions(stmt.extent, v):
        return n.Allocate(stmt.buffer, stmt.extent, _push(stmt.body, v, lo, count))
    if isinstance(stmt, n.LetStmt) and not _mentions(stmt.value, v):
        return n.LetStmt(stmt.var, stmt.value, _push(stmt.body, v, lo, count))
    if isinstance(stmt, n.Pragma):
        return n.Pragma(stmt.key, _push(stmt.body, v, lo, count))
    if isinstance(stmt, n.IfThenElse) and not _mentions(stmt.condition, v):
        other = None if stmt.else_case is None else _push(stmt.else_case, v, lo, count)
        return n.IfThenElse(stmt.condition, _push(stmt.then_case, v, lo, count), other)
    return n.seq(*[substitute(stmt, {v: n.Add(lo, n.IntImm("int64", k))})
                   for k in range(count)])
