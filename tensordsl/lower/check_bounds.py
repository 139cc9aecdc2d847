"""Out-of-bounds reads refused before any code runs, as Halide refuses them.

Every compute defines its value over its own shape (and its reduction axes' domains), and
reads each tensor at index expressions of those axes. For every such read this module
evaluates, per dimension, the interval of indices it touches over the whole definition
domain (``arith.interval``) and compares it with the tensor's extent:

- all static: a read outside the extent raises ``td.BuildError`` naming the reader, the
  tensor, the dimension, the accessed range and the extent;
- symbolic: an ``AccessCheck`` is kept in the lowered function, and the runtime evaluates
  it from the argument shapes before the kernel runs (a ``ValueError``, Halide's "Input
  buffer A is accessed at 100, which is beyond the max (99)");
- not boundable (an index read from another tensor, ``A[idx[i]]``, or arithmetic the
  interval rules do not cover): the read is left to ``checked_reads``, which guards it in
  the generated code (on unless ``td.build(..., check_indices=False)``).

A read under ``if_then_else(cond, ...)`` (lazy: only evaluated where ``cond`` holds) or
under a reduction's ``where=`` condition is bounded with that condition: a comparison of
one loop variable (``y >= 1``) narrows the variable's range, and a comparison of the very
index expression (``y - 1 < H``) bounds the index directly. ``td.select`` evaluates both
values, so it guards nothing.

Schedules never widen what a compute reads (bound inference guards producer regions to
their shapes), so checking the definitions covers every schedule of them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..arith.interval import eval_interval
from ..arith.simplify import Simplifier
from ..errors import BuildError
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.visitor import Visitor, free_vars
from ..te.tensor import ComputeOp, ExternOp, ScanOp, tensors_read

_ZERO = n.IntImm("int64", 0)
_ONE = n.IntImm("int64", 1)


@dataclass(frozen=True)
class AccessCheck:
    """``reader`` reads ``tensor`` in dimension ``dim`` over ``[lo, hi]``, whenever its
    definition domain is not empty (``nonempty``); all are expressions of shape
    variables, evaluated at call time."""
    reader: str
    tensor: str
    dim: int
    lo: n.Expr
    hi: n.Expr
    extent: n.Expr
    nonempty: n.Expr

    def violation(self, lo: int, hi: int, extent: int) -> str:
        where = f"at {lo}, which is below the min (0)" if lo < 0 else \
            f"at {hi}, which is beyond the max ({extent - 1})"
        return (f"{self.reader!r} reads tensor {self.tensor!r} {where} in dimension "
                f"{self.dim} (accessed range [{lo}, {hi}], extent {extent})")


def access_checks(ops) -> tuple[list[AccessCheck], frozenset]:
    """The reads of ``ops`` (compute ops) that need a check at call time, and the reads
    no interval bounds, as ``(id(tensor.op), value_index, dim)`` for ``checked_reads``.
    Raises ``BuildError`` for a read that is out of bounds whatever the sizes."""
    simp = Simplifier()
    checks, unbounded = [], set()
    ops = list(ops)
    # a scan computes the rows of its body from init_len on only (rows before are init's)
    first_rows = {op: scan.init_len for scan in ops if isinstance(scan, ScanOp)
                  for op in scan.body_ops()}
    for op in ops:
        if isinstance(op, ExternOp) and op.body is not None:
            # a hand-written loop nest (td.ir_builder): every access is checked as it
            # runs (the simplifier drops the checks its loop ranges prove)
            unbounded |= _hand_written_accesses(op.body)
        if not isinstance(op, ComputeOp):
            continue
        domain = _domain(op, simp, first_rows.get(op))
        if domain is None:
            # reduction bounds no interval covers: every read is checked as it runs
            for tensor, indices, _ in _guarded_reads(op.body):
                unbounded.update((id(tensor.op), tensor.value_index, d)
                                 for d in range(len(indices)))
            continue
        # a reduction extent that varies with the output index may be empty for some
        # rows only: such rows are caught by the empty interval, not by this condition
        nonempty = simp.visit(_conjunction([
            n.GT(iv.dom.extent, _ZERO) for iv in tuple(op.axis) + tuple(op.reduce_axis)
            if not set(free_vars(iv.dom.extent)) & domain.keys()]))
        if isinstance(nonempty, n.IntImm) and not nonempty.value:
            continue  # an empty domain reads nothing
        for read in _guarded_reads(op.body):
            checks.extend(_read_checks(op, read, domain, nonempty, simp, unbounded))
    return checks, frozenset(unbounded)


class _Accesses(Visitor):
    def __init__(self):
        self.keys = set()

    def visit_TensorRead(self, node):
        self.keys.update((id(node.tensor.op), node.tensor.value_index, d)
                         for d in range(len(node.indices)))
        self.generic_visit(node)

    def visit_ProducerStore(self, node):
        self.keys.update((id(node.tensor.op), node.tensor.value_index, d, "write")
                         for d in range(len(node.indices)))
        self.generic_visit(node)


def _hand_written_accesses(body) -> set:
    """The keys of every read and (``"write"``) write of a statement."""
    accesses = _Accesses()
    accesses.visit(body)
    return accesses.keys


def _domain(op, simp, first_row=None):
    """Inclusive (lo, hi) of every axis of ``op``; a reduction axis whose range depends on
    the output index (``reduce_axis((0, i + 1))``) gets its hull over the output's range.
    ``first_row``: where the first axis starts instead of 0 (a scan's update). None if
    some range has no interval."""
    domain = {iv.var: (iv.dom.min, n.Sub(n.Add(iv.dom.min, iv.dom.extent), _ONE))
              for iv in op.axis}
    if first_row is not None and op.axis:
        domain[op.axis[0].var] = (first_row, domain[op.axis[0].var][1])
    for iv in op.reduce_axis:
        lo = eval_interval(iv.dom.min, domain, simp)
        hi = eval_interval(n.Sub(n.Add(iv.dom.min, iv.dom.extent), _ONE), domain, simp)
        if lo is None or hi is None:
            return None
        domain[iv.var] = (lo[0], hi[1])
    return domain


def _read_checks(op, read, domain, nonempty, simp, unbounded):
    tensor, indices, conds = read
    relax, atoms = _narrow(domain, conds, simp)
    for d, (index, extent) in enumerate(zip(indices, tensor.shape)):
        if reads_tensor(index):
            continue  # data-dependent: guarded in the generated code
        iv = _index_interval(index, dict(relax), atoms, domain, simp)
        if iv is None:
            unbounded.add((id(tensor.op), tensor.value_index, d))
            continue  # guarded in the generated code
        lo, hi, ext = simp.visit(iv[0]), simp.visit(iv[1]), simp.visit(extent)
        check = AccessCheck(op.name, tensor.name, d, lo, hi, ext, nonempty)
        if all(isinstance(x, n.IntImm) for x in (lo, hi, ext, nonempty)):
            if lo.value > hi.value:
                continue  # the guard's range is empty: never read
            if lo.value < 0 or hi.value >= ext.value:
                raise BuildError(check.violation(lo.value, hi.value, ext.value))
            continue
        yield check


def _index_interval(index, relax, atoms, domain, simp):
    """The interval of ``index`` over ``relax``, narrowed by the guarding ``atoms``;
    None if unbounded. Both the index as written and as simplified are bounded and the
    tighter ends kept: simplifying finds ranges (``k - 2*(k // 2)`` is ``k % 2``), but
    can also pull a guarded sum apart (``(6*o + i) // 2`` is ``3*o + i // 2``, which
    ``where 6*o + i < 7`` no longer bounds)."""
    simplified = simp.visit(index)
    forms = (index,) if simplified is index else (index, simplified)
    intervals = [eval_interval(_bounded_parts(e, relax, atoms, domain, simp), relax, simp)
                 for e in forms]
    intervals = [iv for iv in intervals if iv is not None]
    if not intervals:
        return None
    lo, hi = intervals[0]
    for other_lo, other_hi in intervals[1:]:
        lo, hi = n.Max(lo, other_lo), n.Min(hi, other_hi)
    return lo, hi


# ---------------------------------------------------------------- reads and their guards


class _ReadsWithGuards(Visitor):
    """Every tensor read, with the lazy conditions it sits under."""

    def __init__(self):
        self.reads, self.conds = [], []

    def visit_TensorRead(self, node):
        self.reads.append((node.tensor, node.indices, tuple(self.conds)))
        self.generic_visit(node)

    def visit_Call(self, node):
        if node.name != "if_then_else":
            return self.generic_visit(node)
        cond, then, other = node.args
        self.visit(cond)
        self.guarded(cond, then)
        negated = _negate(cond)
        if negated is not None:
            self.guarded(negated, other)
        else:
            self.visit(other)

    def visit_Reduce(self, node):
        self.visit(node.condition)
        for src in node.source:
            self.guarded(node.condition, src)

    def guarded(self, cond, expr):
        self.conds.append(cond)
        self.visit(expr)
        self.conds.pop()


def _guarded_reads(bodies):
    v = _ReadsWithGuards()
    for b in bodies:
        v.visit(b)
    return v.reads


def reads_tensor(e) -> bool:
    """Whether ``e`` reads any tensor (an index read from data)."""
    return bool(tensors_read([e]))


# ---------------------------------------------------------------- narrowing by conditions


def _atoms(cond) -> list:
    """The conjuncts of ``cond`` as expressions ``e`` meaning ``e >= 0`` (integers)."""
    if isinstance(cond, n.And):
        return _atoms(cond.a) + _atoms(cond.b)
    if isinstance(cond, n.Call) and cond.name == "likely":
        return _atoms(cond.args[0])
    if isinstance(cond, n.Call) and cond.name == "if_then_else" and \
            isinstance(cond.args[2], n.IntImm) and not cond.args[2].value:
        return _atoms(cond.args[0]) + _atoms(cond.args[1])   # a lazy ``and``
    if not all(_is_int(x) for x in (getattr(cond, "a", None), getattr(cond, "b", None))):
        return []
    if isinstance(cond, n.GE):
        return [n.Sub(cond.a, cond.b)]
    if isinstance(cond, n.GT):
        return [n.Sub(n.Sub(cond.a, cond.b), _ONE)]
    if isinstance(cond, n.LE):
        return [n.Sub(cond.b, cond.a)]
    if isinstance(cond, n.LT):
        return [n.Sub(n.Sub(cond.b, cond.a), _ONE)]
    if isinstance(cond, n.EQ):
        return [n.Sub(cond.a, cond.b), n.Sub(cond.b, cond.a)]
    return []


def _is_int(e) -> bool:
    return isinstance(e, n.Expr) and dt.is_int(e.dtype)


def _negate(cond):
    """``not cond`` for a single comparison (else None: a conjunction's negation is a
    disjunction, which narrows nothing)."""
    flip = {n.LT: n.GE, n.GE: n.LT, n.LE: n.GT, n.GT: n.LE}
    for a, b in flip.items():
        if isinstance(cond, a):
            return b(cond.a, cond.b)
    return None


def _split_affine(e, domain, simp):
    """``e`` as (its terms over domain variables ``{key: [atom, coeff]}``, the rest as an
    expression). An atom is a variable, or a non-linear term of them (``i % 12``) taken
    as a whole, so that ``where i % 12 < 11`` bounds a read at ``[i % 12]``."""
    terms, const = simp.linear(simp.visit(e))
    var_terms, rest_terms = {}, {}
    for key, (atom, c) in terms.items():
        used = set(free_vars(atom)) & domain.keys()
        if not used:
            rest_terms[key] = [atom, c]
        elif c:
            var_terms[key] = [atom, c]
    return var_terms, simp.rebuild(rest_terms, const)


_ARITH = (n.Add, n.Sub, n.Mul, n.FloorDiv, n.FloorMod, n.Min, n.Max)


def _bounded_parts(e, relax, atoms, domain, simp):
    """``e`` with each sub-expression ``P + rest`` whose variable part ``P`` a guarding
    condition bounds replaced by ``p + rest``, ``p`` a fresh variable whose range (added
    to ``relax``) is P's interval narrowed by the condition: ``(P) // 333`` under
    ``where P < 999`` is at most 2. A condition ``±P + R + c >= 0`` with other variables
    ``R`` bounds P by R's interval."""
    if not (isinstance(e, n.Expr) and _is_int(e) and set(free_vars(e)) & domain.keys()):
        return e
    split = _split_affine(e, domain, simp) if atoms else None
    if split is not None and split[0]:
        var_terms, rest = split
        hull = eval_interval(simp.rebuild(var_terms, 0), relax, simp)
        bounds = [b for atom in atoms for b in [_bound_by(var_terms, atom, relax, simp)] if b]
        if hull is not None and bounds:
            lo, hi = hull
            for bound_lo, bound_hi in bounds:
                lo = lo if bound_lo is None else n.Max(lo, bound_lo)
                hi = hi if bound_hi is None else n.Min(hi, bound_hi)
            p = n.Var(f"bounded{len(relax)}")
            relax[p] = (lo, hi)
            whole = n.Add(p, rest)
            parts = _bounded_subexpressions(e, relax, atoms, domain, simp)
            if parts is e:
                return whole
            # the bound of the whole and the one its parts give: the tighter of each
            a, b = eval_interval(whole, relax, simp), eval_interval(parts, relax, simp)
            if a is None or b is None:
                return whole if b is None else parts
            q = n.Var(f"bounded{len(relax)}")
            relax[q] = (n.Max(a[0], b[0]), n.Min(a[1], b[1]))
            return q
    return _bounded_subexpressions(e, relax, atoms, domain, simp)


def _bounded_subexpressions(e, relax, atoms, domain, simp):
    if isinstance(e, _ARITH):
        a = _bounded_parts(e.a, relax, atoms, domain, simp)
        b = _bounded_parts(e.b, relax, atoms, domain, simp)
        return e if (a is e.a and b is e.b) else type(e)(a, b)
    return e


def _bound_by(var_terms, atom, relax, simp):
    """What ``atom`` (terms ``A``, rest: ``A + rest >= 0``) says of ``P = var_terms``:
    writing ``P = A + R`` gives ``P >= R.lo - rest``, and ``P = -A + R`` gives
    ``P <= R.hi + rest``, ``R`` bounded by its variables' ranges. Returns (lo, hi),
    either None, or None for neither (no term in common)."""
    atom_terms, atom_rest = atom
    if not any(k in var_terms for k in atom_terms):
        return None
    bounds = [None, None]
    for sign in (1, -1):
        rest_terms = {k: [a, c] for k, (a, c) in var_terms.items()}
        for k, (a, c) in atom_terms.items():
            if k in rest_terms:
                rest_terms[k][1] -= sign * c
            else:
                rest_terms[k] = [a, -sign * c]
        r = eval_interval(simp.rebuild({k: v for k, v in rest_terms.items() if v[1]}, 0),
                          relax, simp)
        if r is None:
            continue
        if sign == 1:
            bounds[0] = n.Sub(r[0], atom_rest)
        else:
            bounds[1] = n.Add(r[1], atom_rest)
    return None if bounds[0] is None and bounds[1] is None else tuple(bounds)


def _narrow(domain, conds, simp):
    """Ranges of the domain variables narrowed by single-variable conditions, and every
    linear condition as (terms, rest) meaning ``terms + rest >= 0``."""
    relax = dict(domain)
    atoms = []
    for cond in conds:
        for atom in _atoms(cond):
            split = _split_affine(atom, domain, simp)
            if split is None or not split[0]:
                continue
            var_terms, rest = split
            atoms.append(split)
            (atom_var, c), = var_terms.values() if len(var_terms) == 1 else [(None, 0)]
            if isinstance(atom_var, n.Var):
                lo, hi = relax[atom_var]
                if c == 1:
                    relax[atom_var] = (n.Max(lo, n.Sub(_ZERO, rest)), hi)
                elif c == -1:
                    relax[atom_var] = (lo, n.Min(hi, rest))
    return relax, atoms


def _conjunction(conds):
    out = None
    for c in conds:
        out = c if out is None else n.And(out, c)
    return out if out is not None else n.IntImm("bool", 1)
