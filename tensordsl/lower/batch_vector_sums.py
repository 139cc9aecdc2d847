"""Batched vector sums: a block of dot products summed side by side.

A reduction vectorized over its whole axis sums each result's lanes as a tree
(``vector_sum``): log2(lanes) shuffles and adds for every result. When an unrolled loop
computes a block of such results into consecutive elements (SDDMM's dot products of 16
stored entries, computed at the block of entries that consumes them),

    unrolled for j in range(N):             if c(0) and c(N - 1):
      if c(j):                                dot[ramp(b, 1, N)] = vector_sums(v(0), ..., v(N-1))
        dot[b + j] = 0                  ->  else:
        dot[b + j] = dot[b + j] + vector_sum(v(j))      (the loop as it was)

the N trees become one transpose-and-add network (codegen): pairs of vectors are
shuffled into halves and added, so N sums cost about N shuffle pairs and N adds in all
instead of N log2(lanes) of each — 16 dot products of 64 floats take about half the
vector instructions. ``c`` (the guards of a block that may run past its data's end) is
a conjunction of comparisons linear in ``j``: true at both ends, true between.
"""
from __future__ import annotations

from ..arith.simplify import Simplifier
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor, free_vars, substitute
from .local_accumulators import buffers_loaded

MIN_BLOCK = 4          # fewer sums gain too little over their trees
MAX_BLOCK = 64

_COMPARISONS = (n.LT, n.LE, n.GT, n.GE)


class BatchVectorSums(Mutator):
    def __init__(self):
        self.simp = Simplifier()

    def visit_For(self, node):
        node = self.generic_visit(node)
        if node.kind != "unrolled" or not isinstance(node.extent, n.IntImm):
            return node
        count = node.extent.value
        if count < MIN_BLOCK or count > MAX_BLOCK or count & (count - 1):
            return node
        found = self._block_sum(node.body, node.var)
        if found is None:
            return node
        conds, buffer, index, terms = found
        at = [{node.var: self.simp.visit(n.Add(node.min, n.IntImm("int64", k)))}
              for k in range(count)]
        first = self.simp.visit(substitute(index, at[0]))
        sums = n.Call(dt.with_lanes(dt.element(terms.dtype), count), "vector_sums",
                      tuple(self.simp.visit(substitute(terms, a)) for a in at))
        batched = n.Store(buffer, sums, n.Ramp(first, n.IntImm("int64", 1), count))
        if not conds:
            return batched
        both_ends = [self.simp.visit(substitute(c, a)) for c in conds for a in (at[0], at[-1])]
        condition = both_ends[0]
        for c in both_ends[1:]:
            condition = n.And(condition, c)
        return n.IfThenElse(condition, batched, node)

    def _block_sum(self, body, var):
        """(guards, buffer, index, summed vector) of the loop body ``[if c:] x[i] = 0;
        x[i] = x[i] + vector_sum(v)`` (or ``x[i] = vector_sum(v)``) with ``i`` of unit
        stride in ``var``; None for anything else."""
        conds = []
        while isinstance(body, n.IfThenElse) and body.else_case is None:
            conds.append(body.condition)
            body = body.then_case
        stmts = list(body.stmts) if isinstance(body, n.Seq) else [body]
        if not all(isinstance(s, n.Store) and s.predicate is None for s in stmts):
            return None
        if len(stmts) == 2:
            init, update = stmts
            v = update.value
            if not (_is_zero(init.value) and init.buffer is update.buffer
                    and self.simp.key(init.index) == self.simp.key(update.index)
                    and isinstance(v, n.Add) and isinstance(v.a, n.Load)
                    and v.a.buffer is update.buffer and v.a.predicate is None
                    and self.simp.key(v.a.index) == self.simp.key(update.index)):
                return None
            store, total = update, v.b
        elif len(stmts) == 1:
            store, total = stmts[0], stmts[0].value
        else:
            return None
        if not (isinstance(total, n.Call) and total.name == "vector_sum"
                and dt.is_float(total.dtype) and dt.lanes(total.dtype) == 1):
            return None
        (terms,) = total.args
        if store.buffer in buffers_loaded(terms) or not self._unit_stride(store.index, var):
            return None
        if not all(self._linear_guard(c, var) for c in conds):
            return None
        return conds, store.buffer, store.index, terms

    def _unit_stride(self, index, var) -> bool:
        step = self.simp.visit(n.Sub(substitute(index, {var: n.Add(var, n.IntImm("int64", 1))}),
                                     index))
        return isinstance(step, n.IntImm) and step.value == 1 and _linear(index, var)

    def _linear_guard(self, cond, var) -> bool:
        if isinstance(cond, n.And):
            return self._linear_guard(cond.a, var) and self._linear_guard(cond.b, var)
        if not isinstance(cond, _COMPARISONS):
            return var not in free_vars(cond)
        diff = n.Sub(cond.a, cond.b)
        step = self.simp.visit(n.Sub(substitute(diff, {var: n.Add(var, n.IntImm("int64", 1))}),
                                     diff))
        return isinstance(step, n.IntImm) and _linear(diff, var)


def _linear(e, var) -> bool:
    """``var`` occurs in ``e`` only outside reads and calls (its step is then constant
    where the caller found it so)."""
    finder = _VarInside(var)
    finder.visit(e)
    return not finder.found


class _VarInside(Visitor):
    def __init__(self, var):
        self.var, self.found = var, False

    def _inside(self, node):
        if self.var in free_vars(node):
            self.found = True

    visit_Load = visit_TensorRead = visit_Call = _inside


def _is_zero(e) -> bool:
    return isinstance(e, (n.FloatImm, n.IntImm)) and e.value == 0


def batch_vector_sums(body: n.Stmt) -> n.Stmt:
    return BatchVectorSums().visit(body)
