"""Symbolic intervals: the range an index expression covers while some variables sweep
their ranges and the others stay fixed. Bound inference asks this of every read.

``eval_interval(i*8 + ii, {ii: (0, 7)}) == (i*8, i*8 + 7)`` (bounds inclusive).
An expression these rules cannot bound gives None; the caller falls back to the
whole tensor.
"""
from __future__ import annotations

from ..ir import nodes as n
from ..ir.visitor import free_vars
from .simplify import Simplifier

Interval = tuple  # (lo, hi) expressions, inclusive


def eval_interval(e: n.Expr, relax: dict, simplifier: Simplifier | None = None):
    s = simplifier or Simplifier()
    iv = _Interval(relax, s).eval(e)
    if iv is None:
        return None
    return s.visit(iv[0]), s.visit(iv[1])


class _Interval:
    def __init__(self, relax: dict, s: Simplifier):
        self.relax, self.s = relax, s

    def depends(self, e) -> bool:
        return any(v in self.relax for v in free_vars(e))

    def eval(self, e):
        if not self.depends(e):
            return e, e
        method = getattr(self, "eval_" + type(e).__name__, None)
        return None if method is None else method(e)

    def eval_Var(self, e):
        return self.relax[e]

    def eval_Add(self, e):
        a, b = self.eval(e.a), self.eval(e.b)
        if a is None or b is None:
            return None
        return n.Add(a[0], b[0]), n.Add(a[1], b[1])

    def eval_Sub(self, e):
        a, b = self.eval(e.a), self.eval(e.b)
        if a is None or b is None:
            return None
        return n.Sub(a[0], b[1]), n.Sub(a[1], b[0])

    def eval_Mul(self, e):
        for x, c in ((e.a, e.b), (e.b, e.a)):
            if isinstance(c, n.IntImm):
                iv = self.eval(x)
                if iv is None:
                    return None
                lo, hi = n.Mul(iv[0], c), n.Mul(iv[1], c)
                return (lo, hi) if c.value >= 0 else (hi, lo)
        return None

    def eval_FloorDiv(self, e):
        if isinstance(e.b, n.IntImm) and e.b.value > 0 and not self.depends(e.b):
            iv = self.eval(e.a)
            if iv is None:
                return None
            return n.FloorDiv(iv[0], e.b), n.FloorDiv(iv[1], e.b)
        return None

    def eval_FloorMod(self, e):
        if isinstance(e.b, n.IntImm) and e.b.value > 0:
            iv = self.eval(e.a)
            if iv is not None:
                # When the whole interval stays inside one period the modulus is exact.
                lo_q = self.s.visit(n.FloorDiv(iv[0], e.b))
                hi_q = self.s.visit(n.FloorDiv(iv[1], e.b))
                same = self.s.visit(n.Sub(hi_q, lo_q))
                if isinstance(same, n.IntImm) and same.value == 0:
                    return n.FloorMod(iv[0], e.b), n.FloorMod(iv[1], e.b)
            return n.IntImm("int64", 0), n.IntImm("int64", e.b.value - 1)
        return None

    def eval_Min(self, e):
        a, b = self.eval(e.a), self.eval(e.b)
        if a is None or b is None:
            return None
        return n.Min(a[0], b[0]), n.Min(a[1], b[1])

    def eval_Max(self, e):
        a, b = self.eval(e.a), self.eval(e.b)
        if a is None or b is None:
            return None
        return n.Max(a[0], b[0]), n.Max(a[1], b[1])

    def eval_Select(self, e):
        a, b = self.eval(e.true_value), self.eval(e.false_value)
        if a is None or b is None:
            return None
        return n.Min(a[0], b[0]), n.Max(a[1], b[1])

    def eval_Call(self, e):
        if e.name == "if_then_else":
            return self.eval_Select(n.Select(*e.args))
        return None
