"""Solving index equations: which iterations of a compute read element ``j`` of a tensor.

A compute reading ``x[f(v)]`` over its iteration domain ``v`` (spatial and reduction
axes) sends its adjoint to ``x[j]`` from every ``v`` with ``f(v) == j``. Reverse mode
needs that set as a loop *per j* (a gather), so this module solves ``f(v) == j`` for as
many of ``v`` as possible, in terms of ``j`` and the rest; the rest are summed over
(the adjoint compute's reduction axes), under conditions (ranges, divisibility).

The equations are integer affine, with ``//`` and ``%`` by positive constants: each
``e // c`` becomes a new unknown ``q`` and ``e % c`` an unknown ``t`` in ``[0, c)``,
tied by ``e == c*q + t`` — after which everything is affine. Elimination, one unknown
at a time, picks in this order:

1. an equation with one unknown: ``a*v == r`` gives ``v = r // a`` (if ``r % a == 0``);
2. a unit-coefficient unknown ``u`` whose partners' coefficients share a factor
   ``g > 1`` (``g*y + u == r``): ``u`` is ``r mod g`` plus ``g`` times a new, shorter
   unknown — the stride decomposition of a strided convolution, and the exact inverse
   of a flattened index (``y*W + x`` with ``x < W``: no new unknown at all);
3. otherwise the unknown of the largest extent (``y`` in ``y + ry == j``), so the sum
   that is left runs over the small ones (the kernel window, not the image).

Sparse loops (``segments.py``): an unknown ranging over ``[pos[e], pos[e + 1])`` of a
sparse operand's compressed level (a segment axis) determines its parent once solved
(``q = p`` gives ``e = rows[p]``), and ``crd[q] == j`` / ``rows[q] == a`` for an unknown
position are inverted through the level's derived arrays (a loop over the positions of
column ``j``, ``q = perm[t]``; the run ``[pos[a], pos[a + 1])``). These are solved after
the affine equations, as they need the position unknown itself and not a combination.

An equation that is not affine (a data-dependent index ``x[idx[i]]``, a product of
two axes) is kept as a condition ``f(v) == j``, its unknowns summed over: correct, but
an accumulation over the domain, reported as ``exact=False``.

No sympy here: the systems are tiny and this runs on every derivation (sympy's
general solvers are also too slow to keep out of the hot path of ``td.grad``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..arith.simplify import Simplifier, const_int
from ..errors import TensorDSLError
from ..ir import nodes as n
from ..ir.op import const
from ..ir.visitor import free_vars, substitute
from . import segments
from .segments import Segment

_BIG = 1 << 40   # the extent assumed for a symbolic one (only to rank choices)


@dataclass
class Unknown:
    var: n.Var
    lo: n.Expr
    extent: n.Expr
    needs_range: bool = True   # solved: add lo <= value < lo + extent as a condition
    segment: Segment | None = None   # the range is a run of a sparse level's positions

    @property
    def size(self) -> int:
        e = const_int(self.extent)
        return _BIG if e is None else e


@dataclass
class Solution:
    """``substitution`` maps every original unknown to an expression of the targets and
    the ``free`` axes (new reduction IterVars); the read's iterations for one target
    element are exactly the free axes' values where all ``conditions`` hold."""
    substitution: dict
    free: list
    conditions: list
    exact: bool = True
    notes: list = field(default_factory=list)


def _int(v: int) -> n.Expr:
    return const(v, "int64")


class _Affine:
    """``e`` as ``{unknown var: int coefficient}`` plus a remainder free of unknowns;
    ``//`` and ``%`` by constants introduce new unknowns (shared by equal ``e``)."""

    def __init__(self, solver: "_Solver"):
        self.solver = solver

    def of(self, e):
        s = self.solver
        if not any(v in s.unknowns for v in free_vars(e)):
            return {}, e
        if isinstance(e, n.Var):
            return {e: 1}, _int(0)
        if isinstance(e, (n.Add, n.Sub)):
            a, b = self.of(e.a), self.of(e.b)
            if a is None or b is None:
                return None
            sign = 1 if isinstance(e, n.Add) else -1
            coeffs = dict(a[0])
            for v, c in b[0].items():
                coeffs[v] = coeffs.get(v, 0) + sign * c
            return {v: c for v, c in coeffs.items() if c}, \
                (a[1] + b[1] if sign == 1 else a[1] - b[1])
        if isinstance(e, n.Mul):
            for x, c in ((e.a, e.b), (e.b, e.a)):
                k = const_int(c) if not any(v in s.unknowns for v in free_vars(c)) else None
                if k is not None:
                    inner = self.of(x)
                    if inner is None:
                        return None
                    return {v: a * k for v, a in inner[0].items() if a * k}, inner[1] * k
            return None
        if isinstance(e, (n.FloorDiv, n.FloorMod)):
            c = const_int(e.b)
            if c is None or c <= 0:
                return None
            q, t = s.division(e.a, c)
            if q is None:
                return None
            return ({q: 1} if isinstance(e, n.FloorDiv) else {t: 1}), _int(0)
        if isinstance(e, n.Cast) and e.dtype == e.value.dtype:
            return self.of(e.value)
        return None


class _Solver:
    def __init__(self, unknowns: list[Unknown], ranges: dict, extents: dict):
        for u in unknowns:
            u.segment = u.segment or segments.segment_of(u.lo)
        self.unknowns = {u.var: u for u in unknowns}
        self.extents = extents                           # target var -> its extent
        self.level_equations: list = []   # (LevelRead, index, target): crd/rows reads
        self.original = [u.var for u in unknowns]
        self.equations: list[tuple[dict, n.Expr]] = []   # sum(c*v) == rhs
        self.solved: list[tuple[n.Var, n.Expr]] = []     # in order of solving
        self.conditions: list[n.Expr] = []
        self.exact = True
        self.divisions: dict = {}
        self.simplifier = Simplifier(ranges)
        self.affine = _Affine(self)

    # ------------------------------------------------------------ building
    def division(self, e, c: int):
        """Unknowns (q, t) with ``e == c*q + t``, ``0 <= t < c``, for ``e // c``, ``e % c``."""
        key = (self.simplifier.key(e), c)
        if key in self.divisions:
            return self.divisions[key]
        form = self.affine.of(e)
        if form is None:
            return None, None
        coeffs, rest = form
        lo, hi = self._bounds(coeffs, rest)
        k = len(self.divisions)
        t = Unknown(n.Var(f"mod{k}"), _int(0), _int(c))
        if lo is None:
            q = Unknown(n.Var(f"div{k}"), _int(0), _int(_BIG), needs_range=False)
        else:
            q = Unknown(n.Var(f"div{k}"), _int(lo // c), _int(hi // c - lo // c + 1),
                        needs_range=False)
        self.unknowns[q.var] = q
        self.unknowns[t.var] = t
        # e - c*q - t == 0
        eq = dict(coeffs)
        eq[q.var] = eq.get(q.var, 0) - c
        eq[t.var] = eq.get(t.var, 0) - 1
        self.equations.append((eq, self._simplify(_int(0) - rest)))
        self.divisions[key] = (q.var, t.var)
        return q.var, t.var

    def _bounds(self, coeffs, rest):
        """Constant bounds of ``sum(c*v) + rest`` over the unknowns' ranges, or Nones."""
        r = const_int(rest)
        if r is None:
            return None, None
        lo = hi = r
        for v, c in coeffs.items():
            u = self.unknowns[v]
            ulo, ext = const_int(u.lo), const_int(u.extent)
            if ulo is None or ext is None or ext >= _BIG:
                return None, None
            a, b = c * ulo, c * (ulo + ext - 1)
            lo, hi = lo + min(a, b), hi + max(a, b)
        return lo, hi

    def equate(self, index: n.Expr, target: n.Expr):
        read = segments.level_read(index, self.unknowns)
        if read is not None:
            self.level_equations.append((read, index, target))
            return
        form = self.affine.of(index)
        if form is None:
            # not affine in the unknowns: a condition, its unknowns summed over
            self.conditions.append(n.EQ(index, target))
            self.exact = False
            return
        coeffs, rest = form
        self.equations.append((coeffs, self._simplify(target - rest)))

    # ------------------------------------------------------------ elimination
    def run(self):
        while self.equations:
            self.equations = [eq for eq in self.equations if self._keep(eq)]
            if not self.equations:
                break
            choice = self._single() or self._modular() or self._largest()
            choice()
        self._invert_levels()

    def _keep(self, eq) -> bool:
        coeffs, rhs = eq
        if coeffs:
            return True
        self.conditions.append(n.EQ(rhs, _int(0)))   # no unknown left: must hold
        return False

    def _single(self):
        for k, (coeffs, rhs) in enumerate(self.equations):
            if len(coeffs) == 1:
                (v, a), = coeffs.items()
                return lambda: self._solve(k, v)
        return None

    def _modular(self):
        best = None
        for k, (coeffs, rhs) in enumerate(self.equations):
            for u, a in coeffs.items():
                if abs(a) != 1:
                    continue
                g = 0
                for v, c in coeffs.items():
                    if v is not u:
                        g = math.gcd(g, abs(c))
                if g > 1 and const_int(self.unknowns[u].lo) is not None \
                        and self.unknowns[u].size < _BIG and (best is None or g > best[0]):
                    best = (g, k, u)
        if best is None:
            return None
        g, k, u = best
        return lambda: self._split(k, u, g)

    def _largest(self):
        best = None
        for k, (coeffs, rhs) in enumerate(self.equations):
            for v, a in coeffs.items():
                rank = (self.unknowns[v].size, abs(a) == 1)
                if best is None or rank > best[0]:
                    best = (rank, k, v)
        _, k, v = best
        return lambda: self._solve(k, v)

    def _solve(self, k: int, v: n.Var):
        """Solve equation ``k`` for ``v`` and eliminate ``v`` everywhere."""
        coeffs, rhs = self.equations.pop(k)
        a = coeffs[v]
        sign = 1 if a > 0 else -1
        # a*v == rhs - others, so v = numerator / |a| with the numerator's terms:
        terms = {w: -c * sign for w, c in coeffs.items() if w is not v}
        constant = self._simplify(rhs if sign > 0 else _int(0) - rhs)
        self._eliminate(v, terms, constant, abs(a))

    def _split(self, k: int, u: n.Var, g: int):
        """Equation ``k`` is ``u + g*(...) == rhs``: ``u`` is ``lo + (rhs - lo) mod g +
        g*s`` for a new unknown ``s``, and the equation, divided by ``g``, keeps the rest."""
        coeffs, rhs = self.equations.pop(k)
        if coeffs[u] < 0:
            coeffs = {v: -c for v, c in coeffs.items()}
            rhs = _int(0) - rhs
        info = self.unknowns[u]
        lo, size = const_int(info.lo), info.size
        residue = self._simplify(n.FloorMod(rhs - _int(lo), _int(g)))
        steps = -(-size // g)
        reduced = {v: c // g for v, c in coeffs.items() if v is not u}
        # (rhs - u) / g, exactly: u is lo plus the residue of rhs - lo, plus g*s
        new_rhs = self._simplify(n.FloorDiv(rhs - _int(lo), _int(g)))
        terms = {}
        if steps > 1:
            s = Unknown(n.Var(f"{u.name}.step"), _int(0), _int(steps), needs_range=False)
            self.unknowns[s.var] = s
            terms[s.var] = g
            reduced[s.var] = 1
        self.equations.append((reduced, new_rhs))
        self._eliminate(u, terms, self._simplify(_int(lo) + residue), 1)

    def _eliminate(self, v: n.Var, terms: dict, constant: n.Expr, divisor: int):
        """``v = (sum(c*w for w in terms) + constant) / divisor`` (exact): record it and
        remove ``v`` from the other equations, scaled by ``divisor`` to stay integral
        (fraction-free elimination)."""
        info = self.unknowns.pop(v)
        numerator = constant
        for w, c in terms.items():
            numerator = numerator + _int(c) * w
        numerator = self._simplify(numerator)
        if divisor == 1:
            value = numerator
        else:
            self.conditions.append(n.EQ(n.FloorMod(numerator, _int(divisor)), _int(0)))
            value = self._simplify(n.FloorDiv(numerator, _int(divisor)))
        parent = self._known_parent(info, value)
        if info.needs_range and parent is None:
            self.conditions.append(n.And(n.LE(info.lo, value),
                                         n.LT(value, info.lo + info.extent)))
        self.solved.append((v, value))
        updated = []
        for coeffs, rhs in self.equations:
            c = coeffs.get(v)
            if c is None:
                updated.append((coeffs, rhs))
                continue
            # divisor * (c*v + rest) == divisor * rhs, with divisor*v = numerator
            scaled = {w: x * divisor for w, x in coeffs.items() if w is not v}
            for w, x in terms.items():
                scaled[w] = scaled.get(w, 0) + c * x
            scaled = {w: x for w, x in scaled.items() if x}
            new_rhs = self._simplify(_int(divisor) * rhs - _int(c) * constant)
            updated.append(_reduced(scaled, new_rhs))
        self.equations = updated
        if parent is not None:
            # the position's run is its parent's: the parent is rows[value], in range
            self.unknowns[info.segment.parent].needs_range = False
            self._eliminate(info.segment.parent, {}, parent, 1)

    # ------------------------------------------------------------ sparse levels
    def _known_parent(self, info: Unknown, value):
        """``rows[value]`` when ``info`` is a segment axis whose parent is still unknown
        and ``value`` (its solution) is free of unknowns: the parent it determines. A
        ``value`` not known to be a position gets the condition ``0 <= value < nnz``."""
        seg = info.segment
        if seg is None or seg.parent not in self.unknowns or \
                any(w in self.unknowns for w in free_vars(value)):
            return None
        nnz = seg.sparse.nnz[seg.k]
        if not (isinstance(value, n.Var) and self._same(self.extents.get(value), nnz)):
            self.conditions.append(n.And(n.LE(_int(0), value), n.LT(value, nnz)))
        return segments.parent_of(seg.sparse, seg.k, value)

    def _same(self, a, b) -> bool:
        return a is not None and (a is b or self.simplifier.key(a) == self.simplifier.key(b))

    def _is_all_positions(self, info: Unknown, sparse, level: int) -> bool:
        return segments.all_positions(info.lo, info.extent, sparse, level, self._same)

    def _run(self, starts, target):
        """(start, length) of the run of ``target`` in the prefix sums ``starts``
        (``pos`` or ``tpos``). A target that may be past the last run (a tensor read at
        the level's coordinates may be longer) is clamped: its run is empty, and
        nothing reads past ``starts``."""
        count = starts.shape[0] - _int(1)
        extent = self.extents.get(target)
        bound = None if extent is None else self.simplifier.visit(n.LE(extent, count))
        if isinstance(bound, n.IntImm) and bound.value:
            return segments.run_of(starts, target)
        first = segments.index(starts[self._simplify(n.Min(target, count))])
        last = segments.index(starts[self._simplify(n.Min(target + _int(1), count))])
        return first, last - first

    def _assign(self, v: n.Var, value, check_range: bool):
        """``v = value`` (after the affine equations: none is left to update)."""
        info = self.unknowns.pop(v)
        if check_range and info.needs_range:
            self.conditions.append(n.And(n.LE(info.lo, value),
                                         n.LT(value, info.lo + info.extent)))
        self.solved.append((v, value))

    def _invert_levels(self):
        """``rows[q] == a`` and ``crd[q] == j`` (``segments.py``); parents first, so that
        a position read by both loops over one run and tests its coordinate."""
        for read, index, target in sorted(self.level_equations,
                                          key=lambda e: e[0].role != "rows"):
            q, op = read.position, read.array
            sparse, k = op.sparse, op.level
            info = self.unknowns.get(q)
            seg = info.segment if info is not None else None
            open_parent = seg is not None and seg.sparse is sparse and seg.k == k and \
                seg.parent in self.unknowns
            if info is None:
                # solved by another read: a test of its value
                self.conditions.append(n.EQ(index, target))
            elif read.role == "rows" and self._is_all_positions(info, sparse, k):
                info.lo, info.extent = self._run(sparse.pos[k], target)
                info.segment = segments.segment_of(info.lo)
            elif read.role == "rows" and open_parent:
                self._eliminate(seg.parent, {}, target, 1)
            elif read.role == "crd" and (open_parent or self._is_all_positions(info, sparse, k)):
                lo, extent = self._run(sparse.transpose_ids(k)[0], target)
                t = Unknown(n.Var(f"{q.name}.t"), lo, extent, needs_range=False)
                self.unknowns[t.var] = t
                position = segments.permuted(sparse, k, t.var)
                self._assign(q, position, check_range=False)
                if open_parent:
                    self._assign(seg.parent, segments.parent_of(sparse, k, position),
                                 check_range=False)
            else:
                # a narrower range: the positions of a run tested one by one (a search
                # within one parent's entries), or of no sparse loop at all
                self.conditions.append(n.EQ(index, target))
                if seg is None:
                    self.exact = False

    def _simplify(self, e):
        return self.simplifier.visit(e)


def _free_axes(free: list[Unknown], values: dict, fresh_axis) -> tuple[list, dict]:
    """The reduction axes of the unknowns left free, and their vars by the unknowns'.
    A range may depend on other unknowns (a sparse loop's ``[pos[i], pos[i + 1])``):
    the solved ones are substituted, and an axis comes after the free ones its range
    reads (otherwise in the unknowns' order)."""
    axes, mapping, pending = [], {}, list(free)
    while pending:
        for u in pending:
            lo, extent = (substitute(substitute(e, values), mapping) for e in (u.lo, u.extent))
            if not any(w.var in free_vars(lo) or w.var in free_vars(extent) for w in pending):
                break
        else:
            raise TensorDSLError("cannot differentiate: the ranges of the axes "
                                 f"{', '.join(u.var.name for u in pending)} depend on "
                                 "each other")
        pending.remove(u)
        if u.size >= _BIG and const_int(u.extent) is not None:
            raise TensorDSLError(f"cannot differentiate a read indexed by {u.var.name}: "
                                 "the range of a division it involves is unbounded")
        iv = fresh_axis(u.var.name, lo, extent)
        axes.append(iv)
        mapping[u.var] = iv.var
    return axes, mapping


def _reduced(coeffs: dict, rhs):
    """The equation divided by its coefficients' gcd when the right side is a constant
    multiple of it (keeps coefficients small after fraction-free elimination)."""
    g = 0
    for c in coeffs.values():
        g = math.gcd(g, abs(c))
    r = const_int(rhs)
    if g > 1 and r is not None and r % g == 0:
        return {w: c // g for w, c in coeffs.items()}, _int(r // g)
    return coeffs, rhs


def solve(indices, targets, unknowns: list[Unknown], ranges: dict | None = None,
          fresh_axis=None, extents: dict | None = None) -> Solution:
    """Solve ``indices[k] == targets[k]`` for the ``unknowns``; ``ranges`` are constant
    (lo, hi) bounds of the targets (for simplification), ``extents`` their extents
    (symbolic ones too: a target over a sparse level's positions); ``fresh_axis(name,
    lo, extent)`` makes the reduction axis of an unknown left free."""
    unknowns = [Unknown(u.var, u.lo, u.extent, u.needs_range, u.segment) for u in unknowns]
    solver = _Solver(unknowns, dict(ranges or {}), dict(extents or {}))
    for index, target in zip(indices, targets):
        solver.equate(index, target)
    solver.run()
    # later solutions never mention earlier-solved unknowns (those were eliminated first)
    values: dict = {}
    for v, value in reversed(solver.solved):
        values[v] = substitute(value, values)
    axes, mapping = _free_axes(list(solver.unknowns.values()), values, fresh_axis)
    values = {v: substitute(value, mapping) for v, value in values.items()}
    everything = {**mapping, **values}
    ranges = dict(ranges or {})
    for iv in axes:
        lo, ext = const_int(iv.dom.min), const_int(iv.dom.extent)
        if lo is not None and ext is not None:
            ranges[iv.var] = (lo, lo + ext - 1)
    simp = Simplifier(ranges)
    conditions = []
    for c in solver.conditions:
        c = simp.visit(substitute(c, everything))
        if isinstance(c, n.IntImm):
            if c.value:
                continue
            return Solution({}, [], [c], solver.exact)   # never holds: no iteration
        conditions.append(c)
    substitution = {v: simp.visit(everything[v]) for v in solver.original}
    return Solution(substitution, axes, conditions, solver.exact)
