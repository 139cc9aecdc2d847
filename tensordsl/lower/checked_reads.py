"""Reads whose indices cannot be bounded before the kernel runs are checked as they run.

``check_bounds`` proves every read whose index is an interval over the loops; what is
left are indices read from another tensor (``A[idx[i]]``) and arithmetic the interval
rules do not cover. Each such read becomes

    if_then_else(0 <= idx < extent, A[idx], 0)      (never touches memory outside A)

and the statement holding it is preceded by

    if path_conditions and not (0 <= idx < extent):
        index_error[0] = code; index_error[1] = idx

where ``index_error`` is a two-element workspace buffer the runtime clears before the
call and reads after it: a non-zero code raises ``ValueError`` naming the reader, the
tensor, the dimension and the bad index (the first one recorded; with threads, one of
them). ``td.build(..., check_indices=False)`` skips this pass, for speed on trusted data.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import nodes as n
from ..ir.visitor import Mutator
from .check_bounds import reads_tensor

_ZERO = n.IntImm("int64", 0)


@dataclass(frozen=True)
class CheckedRead:
    """What an error code of ``index_error`` means."""
    reader: str
    tensor: str
    dim: int

    def message(self, index: int, extent) -> str:
        return (f"{self.reader!r} reads tensor {self.tensor!r} at index {index} in "
                f"dimension {self.dim}, outside its extent {extent} (an index read from "
                "data, or computed in a way the compiler cannot bound, is checked as the "
                "kernel runs)")


def checked_reads(f: n.PrimFunc) -> n.PrimFunc:
    unbounded = f.attrs.get("unbounded_reads", frozenset())
    if not f.attrs.get("check_indices", True):
        return f
    error = n.Buffer("index_error", "int64", (n.IntImm("int64", 2),), "workspace")
    guard = _GuardReads(unbounded, error)
    body = guard.visit(f.body)
    if not guard.codes:
        return f
    buffers = tuple(p for p in f.params if isinstance(p, n.Buffer))
    scalars = tuple(p for p in f.params if not isinstance(p, n.Buffer))
    attrs = dict(f.attrs, index_error=error, checked_reads=tuple(guard.codes),
                 workspace=(error,) + tuple(f.attrs.get("workspace", ())))
    return n.PrimFunc(f.name, buffers + (error,) + scalars, body, f.outputs, attrs)


class _GuardReads(Mutator):
    """Rewrites the reads; statements collect the error checks of their expressions."""

    def __init__(self, unbounded, error):
        self.unbounded, self.error = unbounded, error
        self.codes: list[CheckedRead] = []
        self.pending: list[n.Stmt] = []
        self.conds: list[n.Expr] = []
        self.reader = "?"

    def needs_check(self, tensor, dim, index) -> bool:
        return reads_tensor(index) or \
            (id(tensor.op), tensor.value_index, dim) in self.unbounded

    def visit_TensorRead(self, node):
        node = self.generic_visit(node)
        in_range = []
        for d, (index, extent) in enumerate(zip(node.indices, node.tensor.shape)):
            if not self.needs_check(node.tensor, d, index):
                continue
            ok = n.And(n.GE(index, _ZERO), n.LT(index, extent))
            in_range.append(ok)
            self.codes.append(CheckedRead(self.reader, node.tensor.name, d))
            bad = n.Not(ok)
            for c in reversed(self.conds):
                bad = n.And(c, bad)
            code = n.IntImm("int64", len(self.codes))
            self.pending.append(n.IfThenElse(bad, n.seq(
                n.Store(self.error, code, _ZERO),
                n.Store(self.error, _as_int64(index), n.IntImm("int64", 1)))))
        if not in_range:
            return node
        cond = in_range[0]
        for c in in_range[1:]:
            cond = n.And(cond, c)
        return n.Call(node.dtype, "if_then_else", (cond, node, _zero_of(node.dtype)))

    def visit_Call(self, node):
        if node.name != "if_then_else":
            return self.generic_visit(node)
        cond, then, other = node.args
        cond2 = self.visit(cond)
        self.conds.append(cond2)
        then2 = self.visit(then)
        self.conds[-1] = n.Not(cond2)
        other2 = self.visit(other)
        self.conds.pop()
        if (cond2, then2, other2) == (cond, then, other):
            return node
        return n.Call(node.dtype, node.name, (cond2, then2, other2))

    def collect(self, visit):
        """``visit()`` and the error checks of the reads it rewrote."""
        outer, self.pending = self.pending, []
        try:
            return visit(), self.pending
        finally:
            self.pending = outer

    def visit_ProducerStore(self, node):
        saved, self.reader = self.reader, node.tensor.name
        try:
            new, checks = self.collect(lambda: self.generic_visit(node))
        finally:
            self.reader = saved
        return n.seq(*checks, new)

    def visit_LetStmt(self, node):
        value, checks = self.collect(lambda: self.visit(node.value))
        body = self.visit(node.body)
        if value is node.value and body is node.body:
            return n.seq(*checks, node)
        return n.seq(*checks, n.LetStmt(node.var, value, body))

    def visit_IfThenElse(self, node):
        cond, checks = self.collect(lambda: self.visit(node.condition))
        then = self.visit(node.then_case)
        other = self.visit(node.else_case) if node.else_case is not None else None
        if cond is node.condition and then is node.then_case and other is node.else_case:
            return n.seq(*checks, node)
        return n.seq(*checks, n.IfThenElse(cond, then, other))


def _zero_of(dtype: str) -> n.Expr:
    if dtype.startswith("float") or dtype == "bfloat16":
        return n.FloatImm(dtype, 0.0)
    return n.IntImm(dtype, 0)


def _as_int64(e: n.Expr) -> n.Expr:
    return e if e.dtype == "int64" else n.Cast("int64", e)
