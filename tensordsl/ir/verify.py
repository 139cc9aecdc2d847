"""IR well-formedness: every variable is defined before use (a parameter, an enclosing
loop or let), every buffer is a parameter or allocated around its use, and lane counts
of vector operands agree. Run between passes in tests (``td.lower(..., verify=True)``).
"""
from __future__ import annotations

from ..errors import BuildError
from . import dtype as dt
from . import nodes as n
from .visitor import Visitor


class _Verifier(Visitor):
    def __init__(self, func: n.PrimFunc):
        self.vars = {p for p in func.params if isinstance(p, n.Var)}
        self.buffers = {p for p in func.params if isinstance(p, n.Buffer)}
        self.errors: list[str] = []
        self.undefined: dict[n.Var, None] = {}

    def visit_Var(self, node):
        if node not in self.vars:
            self.undefined[node] = None
            self.errors.append(f"variable {node.name!r} used outside its scope")

    def _scoped(self, var, children):
        self.vars.add(var)
        for c in children:
            self.visit(c)
        self.vars.discard(var)

    def visit_For(self, node):
        self.visit(node.min)
        self.visit(node.extent)
        self._scoped(node.var, [node.body])

    def visit_LetStmt(self, node):
        self.visit(node.value)
        self._scoped(node.var, [node.body])

    def visit_Let(self, node):
        self.visit(node.value)
        self._scoped(node.var, [node.body])

    def visit_Reduce(self, node):
        for iv in node.axis:
            self.vars.add(iv.var)
        self.generic_visit(node)
        for iv in node.axis:
            self.vars.discard(iv.var)

    def visit_Allocate(self, node):
        self.visit(node.extent)
        self.buffers.add(node.buffer)
        self.visit(node.body)
        self.buffers.discard(node.buffer)

    def _check_buffer(self, b):
        if b not in self.buffers:
            self.errors.append(f"buffer {b.name!r} used outside its allocation")

    def visit_Load(self, node):
        self._check_buffer(node.buffer)
        if dt.lanes(node.dtype) != dt.lanes(node.index.dtype):
            self.errors.append(f"load of {node.buffer.name!r}: {node.dtype} with index "
                               f"{node.index.dtype}")
        self.visit(node.index)

    def visit_Store(self, node):
        self._check_buffer(node.buffer)
        if dt.lanes(node.value.dtype) != dt.lanes(node.index.dtype):
            self.errors.append(f"store to {node.buffer.name!r}: value {node.value.dtype} "
                               f"with index {node.index.dtype}")
        self.visit(node.value)
        self.visit(node.index)


def verify(func: n.PrimFunc, after: str = ""):
    v = _Verifier(func)
    v.visit(func.body)
    if v.errors:
        where = f" after {after}" if after else ""
        raise BuildError(f"malformed IR{where}: " + "; ".join(sorted(set(v.errors))[:5]))


def undefined_vars(func: n.PrimFunc) -> list[n.Var]:
    """Variables the body uses that no parameter, loop or let defines."""
    v = _Verifier(func)
    v.visit(func.body)
    return list(v.undefined)
