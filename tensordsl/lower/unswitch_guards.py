"""Guard unswitching: take boundary checks out of the hot loops (Halide's and TVM's
loop partitioning, in its simplest form).

A split that does not divide its extent leaves a guard such as ``mo*6 + mi < 1000``
deep inside the loop nest, where it blocks vectorization (a lane-dependent branch) and
keeps accumulators in memory (a conditional store). For each guard whose condition is
an affine comparison, this pass finds the innermost enclosing serial or parallel loop
whose variable it depends on (vectorized and unrolled loops are skipped: they are about
to disappear) and rewrites that loop's body as

    if <the guard holds for every iteration of the loops inside>:
        body without the guard          # the fast path: all full tiles
    else:
        body                            # the edge: guards kept

The condition is the guard evaluated over the inner loops' ranges, so it is exact for
affine guards; only the last, partial tile takes the slow path.
"""
from __future__ import annotations

from ..arith.interval import eval_interval
from ..arith.simplify import Simplifier
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor, free_vars, substitute

_ZERO = n.IntImm("int64", 0)
_TRANSPARENT = ("vectorized", "unrolled")


def _is_affine_guard(cond) -> bool:
    if isinstance(cond, n.And):
        return _is_affine_guard(cond.a) and _is_affine_guard(cond.b)
    return isinstance(cond, (n.LT, n.LE, n.GT, n.GE)) and cond.a.dtype == "int64"


class _CollectGuards(Visitor):
    """Guards below a loop, with the loops between, and the vars defined by lets."""

    def __init__(self):
        self.loops: list[n.For] = []
        self.found: list[tuple[n.IfThenElse, tuple]] = []
        self.let_vars: set = set()

    def visit_For(self, node):
        self.loops.append(node)
        self.visit(node.body)
        self.loops.pop()

    def visit_LetStmt(self, node):
        self.let_vars.add(node.var)
        self.generic_visit(node)

    def visit_IfThenElse(self, node):
        if node.else_case is None and _is_affine_guard(node.condition):
            self.found.append((node, tuple(self.loops)))
        self.generic_visit(node)


def _all_iterations_hold(cond, inner_loops, s: Simplifier):
    """A condition on the outer variables under which ``cond`` is true for every value
    of the ``inner_loops`` variables; None if it cannot be expressed."""
    if isinstance(cond, n.And):
        a = _all_iterations_hold(cond.a, inner_loops, s)
        b = _all_iterations_hold(cond.b, inner_loops, s)
        return None if a is None or b is None else n.And(a, b)
    relax = {}
    for loop in inner_loops:
        hi = n.Sub(n.Add(loop.min, loop.extent), n.IntImm("int64", 1))
        relax[loop.var] = (loop.min, hi)
    if isinstance(cond, (n.LT, n.LE)):
        diff, strict = n.Sub(cond.a, cond.b), isinstance(cond, n.LT)
    else:
        diff, strict = n.Sub(cond.b, cond.a), isinstance(cond, n.GT)
    iv = eval_interval(diff, relax, s)
    if iv is None:
        return None
    return n.LT(iv[1], _ZERO) if strict else n.LE(iv[1], _ZERO)


class _RemoveGuards(Mutator):
    def __init__(self, guards):
        self.guards = {id(g) for g in guards}

    def visit_IfThenElse(self, node):
        if id(node) in self.guards:
            return self.visit(node.then_case)
        return self.generic_visit(node)


def _covers(stmt, key, s: Simplifier) -> bool:
    """Whether every store in ``stmt`` sits under a guard with condition ``key``."""
    if isinstance(stmt, n.IfThenElse):
        return stmt.else_case is None and s.key(stmt.condition) == key
    if isinstance(stmt, (n.For, n.Pragma)):
        return _covers(stmt.body, key, s)
    if isinstance(stmt, n.Seq):
        return bool(stmt.stmts) and all(_covers(x, key, s) for x in stmt.stmts)
    return False


class _RemoveGuardsByKey(Mutator):
    def __init__(self, key, s):
        self.key, self.s = key, s

    def visit_IfThenElse(self, node):
        if node.else_case is None and self.s.key(node.condition) == self.key:
            return self.visit(node.then_case)
        return self.generic_visit(node)


class UnswitchGuards(Mutator):
    def __init__(self):
        self.s = Simplifier()
        # partitioned-off edge loops, whose guard stays; kept by id *and* alive, since an
        # id is reused once its object is freed (a later loop would pass for an edge),
        # with the key of that guard: it fails somewhere in every iteration of the edge,
        # so "whole tile inside?" would be a dead branch there
        self.edges: dict[int, tuple[n.For, tuple]] = {}

    def tighten(self, node: n.For):
        """``for v: if v + r < b: body``  →  ``for v in [min, min(b - r, min + ext)): body``
        when the guard covers the whole body and ``r`` does not depend on inner loops."""
        collector = _CollectGuards()
        collector.visit(node.body)
        for guard, loops in collector.found:
            cond = guard.condition
            if not isinstance(cond, n.LT):
                continue
            terms, const = self.s.linear(n.Sub(cond.a, cond.b))
            coeff = sum(c for atom, c in terms.values() if atom is node.var)
            inner = {lp.var for lp in loops}
            rest_vars = set()
            for atom, c in terms.values():
                if atom is not node.var:
                    rest_vars |= set(free_vars(atom))
            if coeff < 1 or rest_vars & collector.let_vars:
                continue
            key = self.s.key(cond)
            if not _covers(node.body, key, self.s):
                continue
            rest = self.s.rebuild({k: [a, c] for k, (a, c) in terms.items()
                                   if a is not node.var}, const)
            if coeff != 1 or rest_vars & inner:
                split = self.partition(node, coeff, rest, loops, key, cond)
                if split is None:
                    continue
                return split
            # v + rest < 0  <=>  v < -rest
            bound = self.s.visit(n.Sub(_ZERO, rest))
            end = self.s.visit(n.Min(n.Add(node.min, node.extent), bound))
            extent = self.s.visit(n.Sub(end, node.min))
            body = _RemoveGuardsByKey(key, self.s).visit(node.body)
            return n.For(node.var, node.min, extent, node.kind, body, node.thread_tag,
                     node.balance)
        return None

    def partition(self, node: n.For, coeff: int, rest, inner_loops, key, cond):
        """``for v: if c*v + rest < 0: body`` where ``rest`` varies over loops inside (an
        unrolled k pair: ``2*ko + ku``) → the iterations where the guard holds for every
        inner iteration, without it, then those where it holds for some, with it."""
        relax = {lp.var: (lp.min, n.Sub(n.Add(lp.min, lp.extent), n.IntImm("int64", 1)))
                 for lp in inner_loops}
        iv = eval_interval(rest, relax, self.s)
        if iv is None:
            return None
        c = n.IntImm("int64", coeff)
        lo, end = node.min, n.Add(node.min, node.extent)

        def first_failing(r):  # the least v with c*v + r >= 0
            return self.s.visit(n.Min(n.Max(n.FloorDiv(
                n.Add(n.Sub(_ZERO, r), n.IntImm("int64", coeff - 1)), c), lo), end))
        all_hold, some_hold = first_failing(iv[1]), first_failing(iv[0])
        fast = n.For(node.var, lo, self.s.visit(n.Sub(all_hold, lo)), node.kind,
                     _RemoveGuardsByKey(key, self.s).visit(node.body), node.thread_tag)
        edge_var = n.Var(node.var.name, node.var.dtype)
        edge_body = substitute(node.body, {node.var: edge_var})
        edge = n.For(edge_var, all_hold, self.s.visit(n.Sub(some_hold, all_hold)), node.kind,
                     edge_body, node.thread_tag)
        self.edges[id(edge)] = (edge, self.s.key(substitute(cond, {node.var: edge_var})))
        return n.seq(fast, edge)

    def visit_For(self, node):
        if node.kind in _TRANSPARENT:
            return self.generic_visit(node)
        tightened = None if id(node) in self.edges else self.tighten(node)
        if isinstance(tightened, n.Seq):  # partitioned: the edge keeps its guard
            fast, edge = tightened.stmts
            return n.seq(self.visit(fast), self.visit(edge))
        if tightened is not None:
            return self.visit(tightened)
        collector = _CollectGuards()
        collector.visit(node.body)
        hoisted, conditions = [], []
        failing = self.edges[id(node)][1] if id(node) in self.edges else None
        for guard, loops in collector.found:
            deps = set(free_vars(guard.condition))
            if deps & collector.let_vars or self.s.key(guard.condition) == failing:
                continue
            # the innermost serial/parallel loop (this one or one inside) it depends on
            home = node
            for loop in loops:
                if loop.kind not in _TRANSPARENT and loop.var in deps:
                    home = loop
            if home is not node or node.var not in deps:
                continue
            holds = _all_iterations_hold(guard.condition, loops, self.s)
            if holds is None:
                continue
            hoisted.append(guard)
            conditions.append(holds)
        if not hoisted:
            return self.generic_visit(node)
        unique = {}
        for c in conditions:
            c = self.s.visit(c)
            unique.setdefault(self.s.key(c), c)
        cond = None
        for c in unique.values():
            cond = c if cond is None else n.And(cond, c)
        fast = self.visit(_RemoveGuards(hoisted).visit(node.body))
        # the edge keeps these guards, but loops inside it still get theirs hoisted or
        # turned into bounds (a ragged k inside the last column panel)
        slow = self.visit(node.body)
        body = n.IfThenElse(cond, fast, slow)
        return n.For(node.var, node.min, node.extent, node.kind, body, node.thread_tag,
                     node.balance)


def unswitch_guards(body: n.Stmt) -> n.Stmt:
    return UnswitchGuards().visit(body)
