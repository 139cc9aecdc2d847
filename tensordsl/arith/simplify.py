"""The index simplifier.

Integer ``int64`` expressions are put in a canonical affine form
``c1*atom1 + c2*atom2 + ... + c0`` (an atom is anything that is not ``+``, ``-`` or a
multiplication by a constant). With the constant bounds of loop variables it applies
these rules:

* ``(c*q + r) // c  ->  q + r // c``, and ``r // c -> 0`` when ``0 <= r < c``
* ``(c*q + r) %  c  ->  r % c``,      and ``r %  c -> r`` when ``0 <= r < c``
* ``(x // c)*c + x % c  ->  x``       (undoes a fused loop index)
* ``(x // a) // b -> x // (a*b)``;  ``(x % a) % b -> x % b`` when b divides a
* ``(g*m + s) // c -> m // (c/g)`` and ``(g*m + s) % c -> g*(m % (c/g)) + s`` when
  ``g`` divides ``c`` and ``0 <= s < g`` (a K slice ``ko*32 + t`` over window rows of 192)
* ``a*((x // a) % b) + x % a -> x % (a*b)``: a fused index's digits recombine
* ``bitwise_xor`` (swizzled offsets): low bits below a power-of-two multiple of the
  other operand pass through, as do whole multiples of a power of two above it
* ``min``/``max``/comparisons decided by the bounds of the difference of the operands;
  ``(X + c1) // d - (X + c2) // d`` lies in ``[(c1 - c2) // d, ceil((c1 - c2) / d)]``
  whatever ``X`` is, so ``min(n // 8, (n + 7) // 8) -> n // 8``
* ``X // d <= q  ->  X <= q*d + d - 1`` (and ``<``, ``>``, ``>=`` alike), so a guard
  ``(m + 3) // 4 <= 0`` reads ``m <= 0``
* ``P - N + c < 0  ->  P + c < N``: a comparison with zero reads as one of two sums
* a sum is written with a positive term first: ``n - 8*i``, not ``0 - 8*i + n``
* constant folding, ``if``/``select`` on constant conditions, loops of extent 0 or 1.

Other dtypes only get constant folding: wrap-around semantics make affine rewriting of
narrow integers unsound.
"""
from __future__ import annotations

import math

from dataclasses import fields

from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.visitor import Mutator, substitute
from .facts import multiple_of

INDEX = dt.INDEX_DTYPE

Bounds = tuple  # (lo, hi), either may be None for unbounded


def _is_index(e) -> bool:
    return e.dtype == INDEX


def _int(v: int) -> n.IntImm:
    return n.IntImm(INDEX, v)


def _const_value(e):
    return e.value if isinstance(e, n.IntImm) else None


def _add_bounds(a: Bounds, b: Bounds) -> Bounds:
    lo = None if a[0] is None or b[0] is None else a[0] + b[0]
    hi = None if a[1] is None or b[1] is None else a[1] + b[1]
    return lo, hi


def _scale_bounds(a: Bounds, c: int) -> Bounds:
    lo = None if a[0] is None else a[0] * c
    hi = None if a[1] is None else a[1] * c
    return (lo, hi) if c >= 0 else (hi, lo)


UNBOUNDED = (None, None)


class Simplifier(Mutator):
    """Simplifies expressions and statements; ``ranges`` maps loop Vars to constant
    ``(lo, hi)`` bounds (inclusive) known in the current scope."""

    def __init__(self, ranges: dict | None = None):
        self.ranges: dict = dict(ranges or {})
        self._keys: dict[int, tuple] = {}
        self._alive: list = []

    # ------------------------------------------------------------ structural keys
    def key(self, e) -> tuple:
        """A hashable key equal for structurally equal expressions."""
        k = self._keys.get(id(e))
        if k is None:
            k = self._make_key(e)
            self._keys[id(e)] = k
            self._alive.append(e)
        return k

    def _make_key(self, e):
        if isinstance(e, n.Var):
            return ("Var", id(e))
        if isinstance(e, (n.IntImm, n.FloatImm)):
            return (type(e).__name__, e.dtype, e.value)
        parts = [type(e).__name__]
        for f in fields(e):
            v = getattr(e, f.name)
            if isinstance(v, n.Node):
                parts.append(self.key(v))
            elif isinstance(v, tuple):
                parts.append(tuple(self.key(x) if isinstance(x, n.Node) else id(x) for x in v))
            elif isinstance(v, (str, int, float)):
                parts.append(v)
            else:
                parts.append(id(v))
                self._alive.append(v)
        return tuple(parts)

    # ------------------------------------------------------------ affine forms
    def linear(self, e) -> tuple[dict, int]:
        """``e`` as ({key: [atom, coeff]}, constant)."""
        if isinstance(e, n.IntImm):
            return {}, e.value
        if isinstance(e, (n.Add, n.Sub)):
            ta, ca = self.linear(e.a)
            tb, cb = self.linear(e.b)
            sign = 1 if isinstance(e, n.Add) else -1
            terms = {k: [a, c] for k, (a, c) in ta.items()}
            for k, (atom, c) in tb.items():
                if k in terms:
                    terms[k][1] += sign * c
                else:
                    terms[k] = [atom, sign * c]
            return terms, ca + sign * cb
        if isinstance(e, n.Mul):
            ta, ca = self.linear(e.a)
            tb, cb = self.linear(e.b)
            if not tb:
                return {k: [a, c * cb] for k, (a, c) in ta.items()}, ca * cb
            if not ta:
                return {k: [a, c * ca] for k, (a, c) in tb.items()}, ca * cb
        return {self.key(e): [e, 1]}, 0

    def rebuild(self, terms: dict, const: int) -> n.Expr:
        terms, extra = self._merge_divmod(terms)
        const += extra
        out = None
        # a positive term first: ``n - i*8`` rather than ``0 - i*8 + n``, and
        # ``100 - i*8`` rather than ``0 - i*8 + 100``
        ordered = sorted(terms.values(), key=lambda t: t[1] < 0)
        if const > 0 and all(c <= 0 for _, c in ordered):
            out, const = _int(const), 0
        for atom, c in ordered:
            if c == 0:
                continue
            mag = atom if abs(c) == 1 else n.Mul(atom, _int(abs(c)))
            if out is None:
                out = mag if c > 0 else n.Sub(_int(0), mag)
            else:
                out = n.Add(out, mag) if c > 0 else n.Sub(out, mag)
        if out is None:
            return _int(const)
        if const > 0:
            out = n.Add(out, _int(const))
        elif const < 0:
            out = n.Sub(out, _int(-const))
        return out

    def _merge_divmod(self, terms: dict) -> dict:
        """``m*(x // c)*c + m*(x % c) -> m*x``; also for a symbolic ``c`` (a fused loop
        over a symbolic extent: ``(f // n)*n + f % n -> f``)."""
        terms, extra = self._merge_symbolic_divmod(terms)
        terms = self._remainders(terms)
        terms = self._nested_remainders(terms)
        mods = [(k, a, c) for k, (a, c) in terms.items()
                if isinstance(a, n.FloorMod) and c != 0 and isinstance(a.b, n.IntImm)]
        if not mods:
            return terms, extra
        terms = {k: [a, c] for k, (a, c) in terms.items()}
        for kmod, mod, m in mods:
            div_key = self._matching_div(terms, mod)
            div = terms.get(div_key)
            if div is not None and div[1] == m * mod.b.value and terms[kmod][1] == m:
                del terms[div_key], terms[kmod]
                # (x // c)*c + y % c == x when y ≡ x (mod c): y's coefficients may have been
                # reduced modulo c already (64*p % 58 -> 6*p % 58)
                inner, inner_const = self.linear(div[0].a)
                for k, (a, c) in inner.items():
                    if k in terms:
                        terms[k][1] += c * m
                    else:
                        terms[k] = [a, c * m]
                extra += inner_const * m
        return terms, extra

    def _nested_remainders(self, terms: dict) -> dict:
        """``m*a*((x // a) % b) + m*(x % a) -> m*(x % (a*b))``: the digits of a fused
        index recombine (``((p // 3136)*56 + p // 56 % 56)*56 + p % 56`` is ``p``, an
        implicit GEMM's output position written back as image, row and column), one
        level at a time until a whole ``(x // c)*c + x % c`` is left for
        ``_merge_divmod``."""
        terms = dict(terms)
        changed = True
        while changed:
            changed = False
            for k1, (outer, c1) in list(terms.items()):
                if not (isinstance(outer, n.FloorMod) and isinstance(outer.b, n.IntImm)
                        and isinstance(outer.a, n.FloorDiv)
                        and isinstance(outer.a.b, n.IntImm) and outer.a.b.value > 0):
                    continue
                x, a, b = outer.a.a, outer.a.b.value, outer.b.value
                # x % a, or y % a with y congruent to x (its coefficients reduced)
                k2 = self._matching_mod(terms, x, a)
                inner = terms.get(k2)
                if inner is None or inner[1] * a != c1 or b <= 0:
                    continue
                merged = n.FloorMod(x, _int(a * b))
                m = inner[1]
                del terms[k1], terms[k2]
                key = self.key(merged)
                terms[key] = [merged, terms.get(key, [merged, 0])[1] + m]
                changed = True
                break
        return terms

    def _matching_mod(self, terms: dict, x, a: int):
        """The key of a term ``y % a`` with ``y`` congruent to ``x`` modulo ``a``."""
        for k, (t, _) in terms.items():
            if not (isinstance(t, n.FloorMod) and isinstance(t.b, n.IntImm)
                    and t.b.value == a):
                continue
            diff, const = self.linear(n.Sub(x, t.a))
            if const % a == 0 and all(coeff % a == 0 for _, coeff in diff.values()):
                return k
        return None

    def _remainders(self, terms: dict) -> dict:
        """``m*x - m*c*(x // c) -> m*(x % c)`` (a remainder written out, as a derived
        index ``k - 2*(k // 2)`` is): the remainder's range is then known."""
        divs = [(k, a, c) for k, (a, c) in terms.items()
                if isinstance(a, n.FloorDiv) and isinstance(a.b, n.IntImm)
                and a.b.value > 0 and c != 0 and c % a.b.value == 0]
        for kdiv, div, d in divs:
            if kdiv not in terms:
                continue
            m = -d // div.b.value
            inner, inner_const = self.linear(div.a)
            if inner_const or not inner or any(
                    k not in terms or terms[k][1] != m * c for k, (_, c) in inner.items()):
                continue
            terms = {k: [a, c] for k, (a, c) in terms.items()
                     if k != kdiv and k not in inner}
            mod = n.FloorMod(div.a, div.b)
            terms[self.key(mod)] = [mod, m]
        return terms

    def _merge_symbolic_divmod(self, terms: dict) -> dict:
        """``m*((x // y)*y) + m*(x % y) -> m*x`` for a non-constant ``y`` (for ``y == 0``
        the left side divides by zero, so any value will do)."""
        mods = [(k, a, c) for k, (a, c) in terms.items()
                if isinstance(a, n.FloorMod) and c != 0 and not isinstance(a.b, n.IntImm)]
        if not mods:
            return terms, 0
        terms = {k: [a, c] for k, (a, c) in terms.items()}
        extra = 0
        for kmod, mod, m in mods:
            x, y = self.key(mod.a), self.key(mod.b)
            for kmul, (atom, c) in list(terms.items()):
                if c != m or not isinstance(atom, n.Mul):
                    continue
                div, other = (atom.a, atom.b) if isinstance(atom.a, n.FloorDiv) \
                    else (atom.b, atom.a)
                if isinstance(div, n.FloorDiv) and self.key(div.a) == x and \
                        self.key(div.b) == y and self.key(other) == y:
                    del terms[kmul], terms[kmod]
                    inner, inner_const = self.linear(mod.a)
                    for k, (a, coeff) in inner.items():
                        terms.setdefault(k, [a, 0])[1] += coeff * m
                    extra += inner_const * m
                    break
        return terms, extra

    def _matching_div(self, terms: dict, mod: n.FloorMod):
        """The key of a term ``x // c`` with ``x`` congruent to ``mod.a`` modulo ``c``."""
        exact = ("FloorDiv", self.key(mod.a), self.key(mod.b))
        if exact in terms:
            return exact
        c = mod.b.value
        for k, (a, _) in terms.items():
            if not (isinstance(a, n.FloorDiv) and isinstance(a.b, n.IntImm) and a.b.value == c):
                continue
            diff, const = self.linear(n.Sub(a.a, mod.a))
            if const % c == 0 and all(coeff % c == 0 for _, coeff in diff.values()):
                return k
        return None

    def canonical(self, e) -> n.Expr:
        return self.rebuild(*self.linear(e))

    def extent_upper_bound(self, e) -> int | None:
        """A constant upper bound of a region's extent such as ``(x + 5)//12 - x//12 + 8``
        (see ``_paired_divisions``); None if terms remain unpaired."""
        terms, const = self.linear(e)
        (_, hi), rest = self._paired_divisions(terms)
        if any(c for _, c in rest.values()):
            return None
        return const + hi

    def _paired_divisions(self, terms: dict) -> tuple[Bounds, dict]:
        """Bounds of the terms ``k*a//d`` paired with ``-k*b//d`` where ``a - b`` is
        bounded (``a = X + c1``, ``b = X + c2``; or ``b = X - v`` for a loop variable
        ``v``): ``floor(a/d) - floor(b/d)`` lies in ``[floor(lo/d), ceil(hi/d)]`` for
        ``a - b`` in ``[lo, hi]``, whatever ``X`` is. Returns those bounds and the terms
        left unpaired."""
        rest, pending = {}, []
        for key, (atom, c) in terms.items():
            if c != 0 and isinstance(atom, n.FloorDiv) and isinstance(atom.b, n.IntImm) \
                    and atom.b.value > 0:
                pending.append((key, atom, c))
            else:
                rest[key] = [atom, c]
        lo = hi = 0
        while pending:
            key, atom, c = pending.pop(0)
            d = atom.b.value
            for partner in pending:
                if partner[2] != -c or partner[1].b.value != d:
                    continue
                a, b = (atom.a, partner[1].a) if c > 0 else (partner[1].a, atom.a)
                dlo, dhi = self.bounds(self.canonical(n.Sub(a, b)))
                if dlo is not None and dhi is not None:
                    break
            else:
                rest[key] = [atom, c]
                continue
            pending.remove(partner)
            lo += abs(c) * (dlo // d)
            hi += abs(c) * -(-dhi // d)
        return (lo, hi), rest

    # ------------------------------------------------------------ bounds
    def bounds(self, e) -> Bounds:
        """Constant inclusive bounds of an index expression."""
        if isinstance(e, n.IntImm):
            return e.value, e.value
        if isinstance(e, n.Var):
            return self.ranges.get(e, UNBOUNDED)
        if isinstance(e, (n.Add, n.Sub, n.Mul)):
            terms, const = self.linear(e)
            if len(terms) > 1 or const or isinstance(e, (n.Add, n.Sub)) or \
                    (terms and next(iter(terms.values()))[0] is not e):
                paired, terms = self._paired_divisions(terms)
                out = (const + paired[0], const + paired[1])
                for atom, c in terms.values():
                    if atom is e:  # a product of two non-constants
                        return self._product_bounds(e)
                    out = _add_bounds(out, _scale_bounds(self.bounds(atom), c))
                return out
            return self._product_bounds(e)
        if isinstance(e, n.FloorDiv):
            c = _const_value(e.b)
            if c is not None and c > 0:
                lo, hi = self.bounds(e.a)
                return (None if lo is None else lo // c, None if hi is None else hi // c)
            return UNBOUNDED
        if isinstance(e, n.FloorMod):
            c = _const_value(e.b)
            if c is not None and c > 0:
                lo, hi = self.bounds(e.a)
                if lo is not None and hi is not None and 0 <= lo and hi < c:
                    return lo, hi
                return 0, c - 1
            return UNBOUNDED
        if isinstance(e, (n.Min, n.Max)):
            a, b = self.bounds(e.a), self.bounds(e.b)
            pick = min if isinstance(e, n.Min) else max
            lo = _pick(pick, a[0], b[0], isinstance(e, n.Max))
            hi = _pick(pick, a[1], b[1], isinstance(e, n.Min))
            return lo, hi
        if isinstance(e, n.Select):
            a, b = self.bounds(e.true_value), self.bounds(e.false_value)
            lo = None if a[0] is None or b[0] is None else min(a[0], b[0])
            hi = None if a[1] is None or b[1] is None else max(a[1], b[1])
            return lo, hi
        if isinstance(e, n.Call) and e.name == "bitwise_xor":
            (alo, ahi), (blo, bhi) = self.bounds(e.args[0]), self.bounds(e.args[1])
            if None in (alo, ahi, blo, bhi) or min(alo, blo) < 0:
                return UNBOUNDED
            return 0, (1 << max(ahi, bhi).bit_length()) - 1
        return UNBOUNDED

    def _product_bounds(self, e) -> Bounds:
        a, b = self.bounds(e.a), self.bounds(e.b)
        if None in a or None in b:
            if a[0] is not None and b[0] is not None and a[0] >= 0 and b[0] >= 0:
                # two sizes (m*n): at least the product of the lower bounds
                return a[0] * b[0], None
            return UNBOUNDED
        corners = [x * y for x in a for y in b]
        return min(corners), max(corners)

    def sign_of_difference(self, a, b) -> Bounds:
        return self.bounds(self.canonical(n.Sub(a, b)))

    # ------------------------------------------------------------ expressions
    def visit_Add(self, node):
        return self._arith(node)

    visit_Sub = visit_Add
    visit_Mul = visit_Add

    def _arith(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        if _is_index(node):
            return self.canonical(type(node)(a, b))
        folded = _fold(type(node), a, b)
        if folded is not None:
            return folded
        if isinstance(node, n.Mul):
            # x * 1.0 is x exactly (NaN, infinities and -0.0 included): derived
            # adjoints multiply by partial derivatives that fold to one
            for x, y in ((a, b), (b, a)):
                if isinstance(y, n.FloatImm) and y.value == 1.0:
                    return x
        return node if a is node.a and b is node.b else type(node)(a, b)

    def visit_FloorDiv(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        c = _const_value(b)
        if _is_index(node) and c is not None and c > 0:
            return self._floordiv(a, c)
        folded = _fold(n.FloorDiv, a, b)
        if folded is not None:
            return folded
        return node if a is node.a and b is node.b else n.FloorDiv(a, b)

    def _floordiv(self, a, c: int) -> n.Expr:
        if c == 1:
            return a
        if isinstance(a, n.FloorDiv) and isinstance(a.b, n.IntImm) and a.b.value > 0:
            return self._floordiv(a.a, a.b.value * c)
        terms, const = self.linear(a)
        q_terms = {k: [x, k_c // c] for k, (x, k_c) in terms.items() if k_c % c == 0}
        r_terms = {k: [x, k_c] for k, (x, k_c) in terms.items() if k_c % c != 0}
        cq, cr = divmod(const, c)
        r = self.rebuild(r_terms, cr)
        lo, hi = self.bounds(r)
        if lo is not None and hi is not None and lo // c == hi // c:
            return self.rebuild(q_terms, cq + lo // c)
        split = self._multiple_and_remainder(r_terms, cr, c)
        if split is not None:      # r = g*m + small, 0 <= small < g, g | c
            g, m, _ = split     # the quotient's terms scaled by c/g beside m
            terms = {k: [x, k_c * (c // g)] for k, (x, k_c) in q_terms.items()}
            terms[self.key(m)] = [m, 1]
            return self._floordiv(self.rebuild(terms, cq * (c // g)), c // g)
        rest = n.FloorDiv(r, _int(c))
        if not q_terms and cq == 0:
            return rest
        q_terms[self.key(rest)] = [rest, 1]
        return self.rebuild(q_terms, cq)

    def visit_FloorMod(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        c = _const_value(b)
        if _is_index(node) and c is not None and c > 0:
            return self._floormod(a, c)
        folded = _fold(n.FloorMod, a, b)
        if folded is not None:
            return folded
        return node if a is node.a and b is node.b else n.FloorMod(a, b)

    def _floormod(self, a, c: int) -> n.Expr:
        if c == 1:
            return _int(0)
        if isinstance(a, n.FloorMod) and isinstance(a.b, n.IntImm) and a.b.value % c == 0:
            a = a.a
        terms, const = self.linear(a)
        r_terms = {k: [x, k_c % c] for k, (x, k_c) in terms.items() if k_c % c != 0}
        r = self.rebuild(r_terms, const % c)
        lo, hi = self.bounds(r)
        if lo is not None and hi is not None and lo // c == hi // c:
            return self.canonical(n.Sub(r, _int(lo // c * c)))
        split = self._multiple_and_remainder(r_terms, const % c, c)
        if split is not None:      # (g*m + small) % c = g*(m % (c/g)) + small
            g, m, small = split
            return self.canonical(n.Add(n.Mul(self._floormod(m, c // g), _int(g)), small))
        return n.FloorMod(r, _int(c))

    def _multiple_and_remainder(self, terms: dict, const: int, c: int):
        """``terms + const`` as ``g*m + small`` with ``g`` a proper divisor of ``c`` and
        ``0 <= small < g`` (a K slice ``ko*32 + t``, t < 32, divided by a window row of
        192): (g, m, small), the largest such g, or None. Then ``(g*m + small) // c`` is
        ``m // (c/g)``: the remainder never carries into the next multiple of c."""
        divisors = sorted({math.gcd(c, k_c) for _, k_c in terms.values()} - {1, c},
                          reverse=True)
        for g in divisors:
            big = {k: [x, k_c // g] for k, (x, k_c) in terms.items() if k_c % g == 0}
            small = self.rebuild({k: t for k, t in terms.items() if k not in big}, const % g)
            lo, hi = self.bounds(small)
            if lo is not None and hi is not None and 0 <= lo and hi < g:
                return g, self.rebuild(big, const // g), small
        return None

    def visit_Min(self, node):
        return self._minmax(node)

    visit_Max = visit_Min

    def _minmax(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        is_min = isinstance(node, n.Min)
        if _is_index(node):
            lo, hi = self.sign_of_difference(a, b)
            if hi is not None and hi <= 0:
                return a if is_min else b
            if lo is not None and lo >= 0:
                return b if is_min else a
        folded = _fold(type(node), a, b)
        if folded is not None:
            return folded
        if isinstance(node, n.Mul):
            # x * 1.0 is x exactly (NaN, infinities and -0.0 included): derived
            # adjoints multiply by partial derivatives that fold to one
            for x, y in ((a, b), (b, a)):
                if isinstance(y, n.FloatImm) and y.value == 1.0:
                    return x
        return node if a is node.a and b is node.b else type(node)(a, b)

    def visit_LT(self, node):
        return self._compare(node)

    visit_LE = visit_GT = visit_GE = visit_EQ = visit_NE = visit_LT

    def _compare(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        if _is_index(a) and _is_index(b):
            lo, hi = self.sign_of_difference(a, b)
            decided = _decide(type(node), lo, hi)
            if decided is not None:
                return n.IntImm("bool", int(decided))
            undivided = self._compare_division(type(node), a, b)
            if undivided is not None:
                return undivided
            if isinstance(b, n.IntImm) and b.value == 0 and type(node) in _ORDER:
                # P - N + c < 0  ->  P + c < N (two sums, as a person writes it)
                terms, const = self.linear(a)
                pos = {k: t for k, t in terms.items() if t[1] > 0}
                neg = {k: [x, -c] for k, (x, c) in terms.items() if c < 0}
                if pos and neg:   # the constant on the side where it is positive
                    return type(node)(self.rebuild(pos, max(const, 0)),
                                      self.rebuild(neg, max(-const, 0)))
        decided = self._decide_lanes(type(node), a, b)
        if decided is not None:
            return decided
        folded = _fold(type(node), a, b)
        if folded is not None:
            return folded
        if isinstance(node, n.Mul):
            # x * 1.0 is x exactly (NaN, infinities and -0.0 included): derived
            # adjoints multiply by partial derivatives that fold to one
            for x, y in ((a, b), (b, a)):
                if isinstance(y, n.FloatImm) and y.value == 1.0:
                    return x
        return node if a is node.a and b is node.b else type(node)(a, b)

    def _compare_division(self, cls, a, b):
        """``X // d`` compared with a constant as ``X`` compared with one:
        ``X // d <= q  <=>  X <= q*d + d - 1``, ``X // d >= q  <=>  X >= q*d``."""
        if cls not in (n.LT, n.LE, n.GT, n.GE):
            return None
        terms, const = self.linear(n.Sub(a, b))
        live = [(atom, c) for atom, c in terms.values() if c != 0]
        if len(live) != 1 or abs(live[0][1]) != 1:
            return None
        atom, sign = live[0]
        if not (isinstance(atom, n.FloorDiv) and isinstance(atom.b, n.IntImm)
                and atom.b.value > 0):
            return None
        # sign*atom + const OP 0: as atom OP' q
        if sign < 0:
            cls = {n.LT: n.GT, n.LE: n.GE, n.GT: n.LT, n.GE: n.LE}[cls]
        q, d = -const * sign, atom.b.value
        # X//d < q <=> X < q*d;  X//d <= q <=> X <= q*d + d - 1;  >= and > alike
        bound = q * d if cls in (n.LT, n.GE) else q * d + d - 1
        x_terms, x_const = self.linear(atom.a)
        return cls(self.rebuild(x_terms, 0), _int(bound - x_const))

    def _decide_lanes(self, cls, a, b):
        """A comparison of ramps and broadcasts that every lane decides the same way
        (``ramp(16*i, 1, 16) < x16(56)`` for ``i <= 2``): a broadcast constant."""
        la, lb = _affine_lanes(a), _affine_lanes(b)
        if la is None or lb is None or la[2] != lb[2]:
            return None
        (base_a, stride_a, lanes), (base_b, stride_b, _) = la, lb
        lo, hi = self.sign_of_difference(base_a, base_b)
        spread = (stride_a - stride_b) * (lanes - 1)
        lo = None if lo is None else lo + min(0, spread)
        hi = None if hi is None else hi + max(0, spread)
        decided = _decide(cls, lo, hi)
        return None if decided is None else n.Broadcast(n.IntImm("bool", int(decided)), lanes)

    def visit_And(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        for x, y in ((a, b), (b, a)):
            if _is_const_bool(x):
                return y if _bool_value(x) else x
        if isinstance(a, n.Broadcast) and isinstance(b, n.Broadcast) and a.lanes == b.lanes:
            return n.Broadcast(self.visit(n.And(a.value, b.value)), a.lanes)
        return node if a is node.a and b is node.b else n.And(a, b)

    def visit_Or(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        for x, y in ((a, b), (b, a)):
            if _is_const_bool(x):
                return x if _bool_value(x) else y
        return node if a is node.a and b is node.b else n.Or(a, b)

    def visit_Not(self, node):
        a = self.visit(node.a)
        if _is_const_bool(a):
            return _bool_like(a, not _bool_value(a))
        return node if a is node.a else n.Not(a)

    def visit_Load(self, node):
        node = self.generic_visit(node)
        if node.predicate is not None and _is_const_bool(node.predicate) and \
                _bool_value(node.predicate):
            return n.Load(node.dtype, node.buffer, node.index)
        return node

    def visit_Store(self, node):
        node = self.generic_visit(node)
        if node.predicate is not None and _is_const_bool(node.predicate):
            if not _bool_value(node.predicate):
                return n.Seq(())
            return n.Store(node.buffer, node.value, node.index)
        return node

    def visit_Select(self, node):
        cond = self.visit(node.condition)
        if _is_const_bool(cond):
            return self.visit(node.true_value if _bool_value(cond) else node.false_value)
        t, f = self.visit(node.true_value), self.visit(node.false_value)
        if (cond, t, f) == (node.condition, node.true_value, node.false_value):
            return node
        return n.Select(cond, t, f)

    def visit_Call(self, node):
        if node.name == "if_then_else":
            cond = self.visit(node.args[0])
            if _is_const_bool(cond):
                return self.visit(node.args[1] if _bool_value(cond) else node.args[2])
        if node.name in ("vector_any", "vector_all"):
            arg = self.visit(node.args[0])
            if isinstance(arg, n.Broadcast):
                return arg.value
        if node.name == "bitwise_xor" and _is_index(node):
            return self._xor(self.visit(node.args[0]), self.visit(node.args[1]))
        return self.generic_visit(node)

    def _xor(self, a, b) -> n.Expr:
        """``a ^ b`` (``flatten_storage``'s swizzled offsets). Where ``0 <= b < p``, a
        power of two, the terms of ``a`` that are multiples of ``p`` pass through:
        ``(H + L) ^ b = H + (L ^ b)`` (a tile's pipeline stage, a 1024-byte block,
        added to a permutation computed once). Where ``b`` is a multiple of a power of
        two ``g`` and ``a`` is ``g*m + small`` with ``0 <= small < g``, ``(g*m ^ b) +
        small``: the low bits pass through, so a swizzled vector index stays a base
        plus the lane (a 16-byte chunk's elements are permuted together)."""
        ca, cb = _const_value(a), _const_value(b)
        if ca is not None and cb is not None and ca >= 0 and cb >= 0:
            return _int(ca ^ cb)
        terms, const = self.linear(a)
        blo, bhi = self.bounds(b)
        if blo is not None and bhi is not None and blo >= 0:
            p = 1 << bhi.bit_length()
            high = {k: t for k, t in terms.items() if t[1] % p == 0}
            if high or (const and const % p == 0):
                hc = const - const % p
                low = self.rebuild({k: t for k, t in terms.items() if k not in high},
                                   const % p)
                return self.canonical(n.Add(self.rebuild(high, hc), self._xor(low, b)))
        for g in sorted({k_c & -k_c for _, k_c in terms.values() if k_c > 1} |
                        ({const & -const} if const > 1 else set()), reverse=True):
            if not multiple_of(b, g):
                continue
            big = {k: t for k, t in terms.items() if t[1] % g == 0}
            small = self.rebuild({k: t for k, t in terms.items() if k not in big}, const % g)
            lo, hi = self.bounds(small)
            if lo is not None and hi is not None and 0 <= lo and hi < g and \
                    not (isinstance(small, n.IntImm) and small.value == 0):
                high = self.rebuild(big, const - const % g)
                return self.canonical(n.Add(n.Call("int64", "bitwise_xor", (high, b)), small))
        return n.Call("int64", "bitwise_xor", (a, b))

    def visit_Cast(self, node):
        v = self.visit(node.value)
        if isinstance(v, n.IntImm) and dt.lanes(node.dtype) == 1:
            if dt.is_int(node.dtype):
                return n.IntImm(node.dtype, _wrap(v.value, node.dtype))
            if dt.is_float(node.dtype):
                return n.FloatImm(node.dtype, float(v.value))
        return node if v is node.value else n.Cast(node.dtype, v)

    # ------------------------------------------------------------ statements
    def visit_For(self, node):
        lo, ext = self.visit(node.min), self.visit(node.extent)
        ext_c = _const_value(ext)
        if ext_c is not None and ext_c <= 0:
            return n.Seq(())
        if ext_c == 1 and node.kind != "thread_binding":
            return self.visit(substitute(node.body, {node.var: lo}))
        min_lo, min_hi = self.bounds(lo)
        _, ext_hi = self.bounds(ext)
        hi = None if min_hi is None or ext_hi is None else min_hi + ext_hi - 1
        saved = self.ranges.get(node.var)
        self.ranges[node.var] = (min_lo, hi)
        body = self.visit(node.body)
        if saved is None:
            self.ranges.pop(node.var, None)
        else:
            self.ranges[node.var] = saved
        if _is_empty(body):
            return body
        if lo is node.min and ext is node.extent and body is node.body:
            return node
        return n.For(node.var, lo, ext, node.kind, body, node.thread_tag,
                     node.balance)

    def visit_LetStmt(self, node):
        value = self.visit(node.value)
        if _is_index(value):
            self.ranges[node.var] = self.bounds(value)
        body = self.visit(node.body)
        if value is node.value and body is node.body:
            return node
        return n.LetStmt(node.var, value, body)

    def visit_IfThenElse(self, node):
        cond = self.visit(node.condition)
        if _is_const_bool(cond):
            chosen = node.then_case if _bool_value(cond) else node.else_case
            return n.Seq(()) if chosen is None else self.visit(chosen)
        then_case = self.visit(node.then_case)
        else_case = None if node.else_case is None else self.visit(node.else_case)
        if else_case is not None and _is_empty(else_case):
            else_case = None
        if _is_empty(then_case) and else_case is None:
            return then_case
        if (cond, then_case, else_case) == (node.condition, node.then_case, node.else_case):
            return node
        return n.IfThenElse(cond, then_case, else_case)

    def visit_Seq(self, node):
        stmts = [self.visit(s) for s in node.stmts]
        if all(a is b for a, b in zip(stmts, node.stmts)):
            return node
        return n.seq(*[s for s in stmts if not _is_empty(s)]) if any(
            not _is_empty(s) for s in stmts) else n.Seq(())


_ORDER = (n.LT, n.LE, n.GT, n.GE)


def _is_empty(s) -> bool:
    return isinstance(s, n.Seq) and not s.stmts


def _is_const_bool(e) -> bool:
    """A constant bool, or a broadcast of one."""
    if isinstance(e, n.Broadcast):
        e = e.value
    return isinstance(e, n.IntImm) and e.dtype == "bool"


def _bool_value(e) -> bool:
    return bool((e.value if isinstance(e, n.Broadcast) else e).value)


def _bool_like(e, value: bool):
    c = n.IntImm("bool", int(value))
    return n.Broadcast(c, e.lanes) if isinstance(e, n.Broadcast) else c


def _affine_lanes(e):
    """(base, stride, lanes) of an index ramp or broadcast, else None."""
    if isinstance(e, n.Ramp) and _is_index(e.base) and isinstance(e.stride, n.IntImm):
        return e.base, e.stride.value, e.lanes
    if isinstance(e, n.Broadcast) and _is_index(e.value):
        return e.value, 0, e.lanes
    return None


def _pick(f, a, b, none_wins_other: bool):
    if a is None:
        return b if none_wins_other else None
    if b is None:
        return a if none_wins_other else None
    return f(a, b)


def _decide(cls, lo, hi):
    """The truth of ``(a - b) <op> 0`` given bounds of ``a - b``, or None."""
    if cls is n.LT:
        return True if hi is not None and hi < 0 else False if lo is not None and lo >= 0 else None
    if cls is n.LE:
        return True if hi is not None and hi <= 0 else False if lo is not None and lo > 0 else None
    if cls is n.GT:
        return True if lo is not None and lo > 0 else False if hi is not None and hi <= 0 else None
    if cls is n.GE:
        return True if lo is not None and lo >= 0 else False if hi is not None and hi < 0 else None
    if cls is n.EQ:
        if lo == 0 and hi == 0:
            return True
        return False if (lo is not None and lo > 0) or (hi is not None and hi < 0) else None
    if cls is n.NE:
        eq = _decide(n.EQ, lo, hi)
        return None if eq is None else not eq
    return None


def _wrap(value: int, dtype: str) -> int:
    if dt.is_bool(dtype):
        return int(bool(value))
    b = dt.bits(dtype)
    value &= (1 << b) - 1
    if not dt.is_unsigned(dtype) and value >= 1 << (b - 1):
        value -= 1 << b
    return value


_INT_FOLD = {
    n.Add: lambda a, b: a + b, n.Sub: lambda a, b: a - b, n.Mul: lambda a, b: a * b,
    n.FloorDiv: lambda a, b: a // b if b else None,
    n.FloorMod: lambda a, b: a % b if b else None,
    n.Min: min, n.Max: max,
    n.LT: lambda a, b: a < b, n.LE: lambda a, b: a <= b, n.GT: lambda a, b: a > b,
    n.GE: lambda a, b: a >= b, n.EQ: lambda a, b: a == b, n.NE: lambda a, b: a != b,
}


def _fold(cls, a, b):
    """Constant-fold integer operations (floats are left to the backend, which folds
    them in the right precision)."""
    if not (isinstance(a, n.IntImm) and isinstance(b, n.IntImm)):
        return None
    f = _INT_FOLD.get(cls)
    if f is None:
        return None
    v = f(a.value, b.value)
    if v is None:
        return None
    if isinstance(v, bool):
        return n.IntImm("bool", int(v))
    return n.IntImm(a.dtype, _wrap(v, a.dtype))


def simplify_expr(e: n.Expr, ranges: dict | None = None) -> n.Expr:
    return Simplifier(ranges).visit(e)


def simplify_stmt(s: n.Stmt, ranges: dict | None = None) -> n.Stmt:
    return Simplifier(ranges).visit(s)


def const_int(e: n.Expr) -> int | None:
    """The value of an integer expression that simplifies to a constant (a shape such as
    ``H - 2`` with ``H`` known), else None: ``const_int(td.const(20) - 2) == 18``."""
    e = simplify_expr(e) if isinstance(e, n.Expr) else e
    return e.value if isinstance(e, n.IntImm) else None


def prove(cond: n.Expr, ranges: dict | None = None) -> bool:
    """True when ``cond`` simplifies to True."""
    c = simplify_expr(cond, ranges)
    return _is_const_bool(c) and _bool_value(c)
