"""Vectorization: a ``vectorized`` loop of constant extent L becomes one iteration of
L-lane vector operations.

The loop variable becomes ``ramp(min, 1, L)``; scalar operands meeting a vector are
broadcast; ``ramp + x`` stays a ramp, so a contiguous access remains one vector load or
store; other vector indices become gathers/scatters. A lane-dependent guard around stores (the
tail of a split that does not divide) becomes a mask: the loads and stores under it are
predicated, and the masked part runs only when some lane is active, so scalar loads in
it stay as safe as in the loop. A lane-dependent lazy ``if_then_else`` becomes a select
of its branches, each with its loads masked to its own lanes. A body that cannot be
vectorized (a lane-dependent ``else``, an allocation, a store whose address does not depend
on the loop, except a sum ``x[i] = x[i] + f(v)`` over a reduction axis, whose lanes are
added as a tree: ``vector_sum``) is left as a serial loop, which LLVM may still vectorize. A loop longer than
``MAX_LANES`` becomes a serial loop over vectors of ``MAX_LANES`` (the last one masked):
LLVM's compile time grows much faster than linearly with the vector width.
"""
from __future__ import annotations

from ..ir import dtype as dt
from ..arith.facts import multiple_of
from ..errors import BuildError
from ..ir import nodes as n
from ..ir.visitor import Mutator, post_order, substitute, uses_var

MAX_LANES = 64  # four AVX-512 registers of float32


class _CannotVectorize(Exception):
    pass


def _is_vector(e) -> bool:
    return dt.lanes(e.dtype) > 1


def _aligned_unit_ramp(a, b) -> bool:
    return (isinstance(a, n.Ramp) and isinstance(a.stride, n.IntImm) and a.stride.value == 1
            and isinstance(b, n.IntImm) and b.value > 0 and b.value % a.lanes == 0
            and multiple_of(a.base, a.lanes))


def _conjuncts(e) -> list:
    return _conjuncts(e.a) + _conjuncts(e.b) if isinstance(e, n.And) else [e]


def _all(conds: list):
    out = conds[0]
    for c in conds[1:]:
        out = n.And(out, c)
    return out


def _reads_buffer(e, buffer) -> bool:
    return any(isinstance(x, n.Load) and x.buffer is buffer for x in post_order(e))


def _widen(e, lanes: int):
    if _is_vector(e):
        if dt.lanes(e.dtype) != lanes:
            raise _CannotVectorize("lane count mismatch")
        return e
    return n.Broadcast(e, lanes)


class _Vectorizer(Mutator):
    def __init__(self, var: n.Var, ramp: n.Ramp):
        self.var, self.ramp, self.lanes = var, ramp, ramp.lanes
        self.mask = None  # the lanes that are active here (a bool vector), None: all
        self.in_lane_branch = False

    def visit_Var(self, node):
        return self.ramp if node is self.var else node

    def _binary(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        if a is node.a and b is node.b:
            return node
        if not (_is_vector(a) or _is_vector(b)):
            return type(node)(a, b)
        cls = type(node)
        # a broadcast behaves as its scalar, so ramps and broadcasts stay affine
        if isinstance(a, n.Broadcast) and (isinstance(b, n.Ramp) or not _is_vector(b)):
            a = a.value
        if isinstance(b, n.Broadcast) and (isinstance(a, n.Ramp) or not _is_vector(a)):
            b = b.value
        if isinstance(a, n.Broadcast) and isinstance(b, n.Broadcast):
            return n.Broadcast(cls(a.value, b.value), a.lanes)
        if not (_is_vector(a) or _is_vector(b)):
            return n.Broadcast(cls(a, b), self.lanes)
        if cls in (n.Add, n.Sub):
            if isinstance(a, n.Ramp) and not _is_vector(b):
                return n.Ramp(cls(a.base, b), a.stride, a.lanes)
            if isinstance(b, n.Ramp) and not _is_vector(a) and cls is n.Add:
                return n.Ramp(n.Add(a, b.base), b.stride, b.lanes)
            if isinstance(a, n.Ramp) and isinstance(b, n.Ramp):
                return n.Ramp(cls(a.base, b.base), cls(a.stride, b.stride), a.lanes)
        if cls in (n.FloorDiv, n.FloorMod) and _aligned_unit_ramp(a, b):
            # lanes b..b+L-1 with L | base and L | c lie in one block of c
            if cls is n.FloorDiv:
                return n.Broadcast(n.FloorDiv(a.base, b), a.lanes)
            return n.Ramp(n.FloorMod(a.base, b), a.stride, a.lanes)
        if cls is n.Mul:
            if isinstance(a, n.Ramp) and not _is_vector(b):
                return n.Ramp(n.Mul(a.base, b), n.Mul(a.stride, b), a.lanes)
            if isinstance(b, n.Ramp) and not _is_vector(a):
                return n.Ramp(n.Mul(a, b.base), n.Mul(a, b.stride), b.lanes)
        return cls(_widen(a, self.lanes), _widen(b, self.lanes))

    visit_Add = visit_Sub = visit_Mul = visit_Div = visit_FloorDiv = visit_FloorMod = _binary
    visit_Min = visit_Max = visit_EQ = visit_NE = visit_LT = visit_LE = _binary
    visit_GT = visit_GE = visit_And = visit_Or = _binary

    def visit_Not(self, node):
        return self.generic_visit(node)

    def visit_Cast(self, node):
        v = self.visit(node.value)
        if v is node.value:
            return node
        return n.Cast(dt.with_lanes(node.dtype, dt.lanes(v.dtype)), v)

    def visit_Select(self, node):
        c, t, f = (self.visit(node.condition), self.visit(node.true_value),
                   self.visit(node.false_value))
        if (c, t, f) == (node.condition, node.true_value, node.false_value):
            return node
        if not any(_is_vector(x) for x in (c, t, f)):
            return n.Select(c, t, f)
        return n.Select(_widen(c, self.lanes), _widen(t, self.lanes), _widen(f, self.lanes))

    def visit_Call(self, node):
        if node.name == "if_then_else":
            split = self._split_condition(node)
            if split is not None:
                return split
            cond = self.visit(node.args[0])
            if _is_vector(cond):
                return self._lane_if_then_else(cond, node)
        args = tuple(self.visit(a) for a in node.args)
        if all(a is b for a, b in zip(args, node.args)):
            return node
        if node.name == "address_of" and _is_vector(args[0]):
            raise BuildError(f"an address given to call_extern varies with the vectorized "
                             f"loop {self.var.name!r}: a C function given addresses is "
                             "called once per iteration; do not vectorize that loop")
        if node.name == "call_extern":
            # a C function of values: called lane by lane (the code generator's job)
            values = [a for a in args[1:] if a.dtype != "handle"]
            if not any(map(_is_vector, values)):
                return n.Call(node.dtype, node.name, args)
            if len(values) != len(args) - 1:
                raise BuildError(f"call_extern {args[0].value!r} takes an address and "
                                 f"values varying with the vectorized loop "
                                 f"{self.var.name!r}; do not vectorize that loop")
            return n.Call(dt.with_lanes(node.dtype, self.lanes), node.name,
                          (args[0], *(_widen(a, self.lanes) for a in args[1:])))
        if node.name == "if_then_else":
            t, f = _widen(args[1], self.lanes), _widen(args[2], self.lanes)
            return n.Call(t.dtype, node.name, (args[0], t, f))
        if any(_is_vector(a) for a in args):
            args = tuple(_widen(a, self.lanes) for a in args)
            return n.Call(dt.with_lanes(node.dtype, self.lanes), node.name, args)
        return n.Call(node.dtype, node.name, args)

    def _split_condition(self, node):
        """``if_then_else(row_ok && lane_ok, x, c)`` with a constant ``c`` (padding) →
        ``if_then_else(row_ok, select(lane_ok, x, c), c)``: the lane-independent part
        stays a branch, so where it fails nothing is loaded, and where the lane part is
        proved true later (the interior of a padded row) no load is masked."""
        if not isinstance(node.args[2], (n.IntImm, n.FloatImm)):
            return None
        conjuncts = _conjuncts(node.args[0])
        lane = [c for c in conjuncts if uses_var(c, self.var)]
        scalar = [c for c in conjuncts if not uses_var(c, self.var)]
        if not lane or not scalar:
            return None
        inner = n.Call(node.dtype, "if_then_else", (_all(lane), node.args[1], node.args[2]))
        return self.visit(n.Call(node.dtype, "if_then_else", (_all(scalar), inner, node.args[2])))

    def _lane_if_then_else(self, cond, node):
        """Each branch's loads are masked to the lanes that take it (the branches are
        lazy: a padded read past the end must not happen), then a select."""
        outer, outer_branch = self.mask, self.in_lane_branch
        self.in_lane_branch = True
        try:
            self.mask = cond if outer is None else n.And(outer, cond)
            t = _widen(self.visit(node.args[1]), self.lanes)
            self.mask = n.Not(cond) if outer is None else n.And(outer, n.Not(cond))
            f = _widen(self.visit(node.args[2]), self.lanes)
        finally:
            self.mask, self.in_lane_branch = outer, outer_branch
        return n.Select(cond, t, f)

    def visit_Let(self, node):
        raise _CannotVectorize("let")

    def visit_Reduce(self, node):
        raise _CannotVectorize("reduce")

    def visit_Load(self, node):
        index = self.visit(node.index)
        if index is node.index:
            return node
        if not _is_vector(index):
            if self.in_lane_branch:
                # one address for all lanes, valid only where some lane takes the branch
                raise _CannotVectorize("lane-independent load in a lane-dependent branch")
            return n.Load(node.dtype, node.buffer, index)
        return n.Load(dt.with_lanes(node.dtype, self.lanes), node.buffer, index, self.mask)

    def visit_Store(self, node):
        value, index = self.visit(node.value), self.visit(node.index)
        if not _is_vector(index) and _is_vector(value) and self.mask is None:
            folded = self._horizontal_sum(node, index)
            if folded is not None:
                return folded
        if not _is_vector(index):
            if _is_vector(value) or _reads_buffer(value, node.buffer):
                # lanes would store different values, or each lane updates the last one's
                raise _CannotVectorize("store address does not depend on the loop")
            store = node if (value is node.value and index is node.index) else \
                n.Store(node.buffer, value, index)
            if self.mask is not None:
                # the same value to the same place from every active lane: once, if any
                return n.IfThenElse(n.Call("bool", "vector_any", (self.mask,)), store)
            return store
        return n.Store(node.buffer, _widen(value, self.lanes), index, self.mask)

    def _horizontal_sum(self, node, index):
        """``x[i] = x[i] + f(v)`` over a vectorized reduction axis ``v`` (``x[i]`` not
        depending on it): ``x[i] = x[i] + vector_sum(f(ramp))``, the lanes summed as a
        tree — in another order than the loop's, as vectorizing a reduction asks."""
        value = node.value
        if not (isinstance(value, n.Add) and isinstance(value.a, n.Load)
                and value.a.buffer is node.buffer and repr(value.a.index) == repr(node.index)
                and self.lanes & (self.lanes - 1) == 0):
            return None
        terms = self.visit(value.b)
        if not _is_vector(terms) or _reads_buffer(terms, node.buffer):
            return None
        total = n.Call(dt.element(terms.dtype), "vector_sum", (terms,))
        return n.Store(node.buffer, n.Add(n.Load(value.a.dtype, node.buffer, index), total),
                       index)

    def visit_IfThenElse(self, node):
        cond = self.visit(node.condition)
        if not _is_vector(cond):
            return self.generic_visit(node)
        if node.else_case is not None:
            raise _CannotVectorize("lane-dependent else branch")
        outer = self.mask
        self.mask = cond if outer is None else n.And(outer, cond)
        try:
            then_case = self.visit(node.then_case)
        finally:
            mask, self.mask = self.mask, outer
        if outer is not None:
            return then_case  # the enclosing masked region already checks for activity
        return n.IfThenElse(n.Call("bool", "vector_any", (mask,)), then_case)

    def visit_For(self, node):
        lo, ext = self.visit(node.min), self.visit(node.extent)
        if _is_vector(lo) or _is_vector(ext):
            raise _CannotVectorize("inner loop bounds depend on the vector lanes")
        body = self.visit(node.body)
        if lo is node.min and ext is node.extent and body is node.body:
            return node
        return n.For(node.var, lo, ext, node.kind, body, node.thread_tag,
                     node.balance)

    def visit_LetStmt(self, node):
        value = self.visit(node.value)
        if _is_vector(value):
            raise _CannotVectorize("vector let")
        return self.generic_visit(node)

    def visit_Allocate(self, node):
        raise _CannotVectorize("allocation inside a vectorized loop")


class VectorizeLoops(Mutator):
    def visit_For(self, node):
        body = self.visit(node.body)
        if node.kind != "vectorized":
            return node if body is node.body else n.For(
                node.var, node.min, node.extent, node.kind, body, node.thread_tag,
                node.balance)
        if not isinstance(node.extent, n.IntImm) or node.extent.value < 2:
            return n.For(node.var, node.min, node.extent, "serial", body)
        if node.extent.value > MAX_LANES:
            return self._in_chunks(node, body)
        ramp = n.Ramp(node.min, n.IntImm(node.min.dtype, 1), node.extent.value)
        try:
            return _Vectorizer(node.var, ramp).visit(body)
        except _CannotVectorize:
            return n.For(node.var, node.min, node.extent, "serial", body)

    def _in_chunks(self, node, body):
        """``for v in vectorized(E)`` → ``for c in serial(ceil(E/L)): vectorized(L)``,
        lanes past E masked off by a guard."""
        extent, t = node.extent.value, node.min.dtype
        chunk = n.Var(node.var.name + ".chunk", t)
        lane = n.Var(node.var.name + ".lane", t)
        offset = n.Add(n.Mul(chunk, n.IntImm(t, MAX_LANES)), lane)
        inner = substitute(body, {node.var: n.Add(node.min, offset)})
        if extent % MAX_LANES:
            inner = n.IfThenElse(n.LT(offset, n.IntImm(t, extent)), inner)
        ramp = n.Ramp(n.IntImm(t, 0), n.IntImm(t, 1), MAX_LANES)
        try:
            vector = _Vectorizer(lane, ramp).visit(inner)
        except _CannotVectorize:
            return n.For(node.var, node.min, node.extent, "serial", body)
        return n.For(chunk, n.IntImm(t, 0), n.IntImm(t, -(-extent // MAX_LANES)), "serial",
                     vector)


def vectorize_loops(body: n.Stmt) -> n.Stmt:
    return VectorizeLoops().visit(body)
