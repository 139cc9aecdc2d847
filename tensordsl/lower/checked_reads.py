"""Reads whose indices cannot be bounded before the kernel runs are checked as they run
(and so are the writes of a hand-written loop nest, ``td.ir_builder``).

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

from ..arith.interval import eval_interval
from ..arith.simplify import Simplifier
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

    access: str = "reads"

    def message(self, index: int, extent) -> str:
        return (f"{self.reader!r} {self.access} tensor {self.tensor!r} at index {index} in "
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
        self.loops: dict = {}      # enclosing loop variable -> (first, last)
        self.simplifier = Simplifier()

    def visit_For(self, node):
        last = n.Sub(n.Add(node.min, node.extent), n.IntImm("int64", 1))
        self.loops[node.var] = (node.min, last)
        try:
            return self.generic_visit(node)
        finally:
            del self.loops[node.var]

    def proved(self, index, extent) -> bool:
        """Whether the enclosing loops' ranges keep ``index`` inside ``extent``."""
        bounds = eval_interval(index, self.loops, self.simplifier)
        if bounds is None:
            return False
        inside = self.simplifier.visit(n.And(n.GE(bounds[0], _ZERO), n.LT(bounds[1], extent)))
        return isinstance(inside, n.IntImm) and bool(inside.value)

    def needs_check(self, tensor, dim, index) -> bool:
        return reads_tensor(index) or \
            (id(tensor.op), tensor.value_index, dim) in self.unbounded

    def in_range(self, tensor, indices, access: str, needs_check) -> n.Expr | None:
        """The condition that ``indices`` are inside ``tensor`` in the dimensions that
        ``needs_check``, with an error record for each queued in ``pending``."""
        in_range = []
        for d, (index, extent) in enumerate(zip(indices, tensor.shape)):
            if not needs_check(d, index) or self.proved(index, extent):
                continue
            ok = n.And(n.GE(index, _ZERO), n.LT(index, extent))
            in_range.append(ok)
            self.codes.append(CheckedRead(self.reader, tensor.name, d, access))
            bad = n.Not(ok)
            for c in reversed(self.conds):
                bad = n.And(c, bad)
            code = n.IntImm("int64", len(self.codes))
            first = n.EQ(n.Load("int64", self.error, _ZERO), _ZERO)   # keep the first
            self.pending.append(n.IfThenElse(bad, n.IfThenElse(first, n.seq(
                n.Store(self.error, code, _ZERO),
                n.Store(self.error, _as_int64(index), n.IntImm("int64", 1))))))
        if not in_range:
            return None
        cond = in_range[0]
        for c in in_range[1:]:
            cond = n.And(cond, c)
        return cond

    def visit_TensorRead(self, node):
        node = self.generic_visit(node)
        cond = self.in_range(node.tensor, node.indices, "reads",
                             lambda d, index: self.needs_check(node.tensor, d, index))
        if cond is None:
            return node
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
        tensor = node.tensor
        key = (id(tensor.op), tensor.value_index)
        try:
            def visit():
                new = self.generic_visit(node)
                # a hand-written loop nest's writes (td.ir_builder) are checked too
                cond = self.in_range(tensor, new.indices, "writes",
                                     lambda d, _: (*key, d, "write") in self.unbounded)
                return new if cond is None else n.IfThenElse(cond, new)
            new, checks = self.collect(visit)
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

    def visit_While(self, node):
        # the condition's checks run before every test of it: before the loop and
        # again at the end of each trip
        cond, checks = self.collect(lambda: self.visit(node.condition))
        body = self.visit(node.body)
        if cond is node.condition and body is node.body and not checks:
            return node
        return n.seq(*checks, n.While(cond, n.seq(body, *checks)))


def _zero_of(dtype: str) -> n.Expr:
    if dtype.startswith("float") or dtype == "bfloat16":
        return n.FloatImm(dtype, 0.0)
    return n.IntImm(dtype, 0)


def _as_int64(e: n.Expr) -> n.Expr:
    return e if e.dtype == "int64" else n.Cast("int64", e)
