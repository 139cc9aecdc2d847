"""Co-iteration of sparse operands (TACO's merge lattices) and the assembly of a result
whose pattern is not known in advance (sparse + sparse): two kernels, *count* then
*fill*.

An elementwise expression of CSR operands of one shape — ``+``, ``-``, ``*`` between
operands, and scaling by numbers — has a stored entry wherever its value can be
non-zero: the union of the operands' patterns under ``+``/``-``, the intersection under
``*``. Each row merges the operands' sorted column lists. The *merge lattice* of the
expression says which operands must still have entries for an entry of the result to
be possible:

    lattice(a)       = [{a}]
    lattice(x * y)   = [p | q  for p in lattice(x), q in lattice(y)]      (intersection)
    lattice(x + y)   = lattice(x * y) + lattice(x) + lattice(y)           (union)

One ``while`` loop runs per lattice point, largest first, as long as all of the point's
operands have entries left; inside it the smallest current column ``j`` is the next
coordinate, the first point (of those below the loop's) whose operands all sit at
``j`` decides the value (absent operands are zero), and every operand at ``j``
advances. ``A + B`` is three loops: both, then what is left of ``A``, then of ``B``;
``A * B`` one.

    A = td.sparse_placeholder((m, n), "csr", name="A")
    B = td.sparse_placeholder((m, n), "csr", name="B")
    C = td.sparse.assemble(A + 2 * B, name="C")
    add = C.build()                       # a callable on td.nd sparse arrays
    c = add(a, b)                         # a CSR td.nd sparse array

*count* runs the merge once per row in parallel counting entries, then sums the
counts into ``C.pos``; the runtime allocates ``C.crd`` and ``C.vals`` (``pos[m]``
entries); *fill* runs the merge again writing the coordinates and values from
``C.pos[i]`` on. Entries whose value happens to be zero (``A - A``) are stored: the
pattern is structural, as TACO's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import nodes as n
from ..ir.op import cast, const
from ..te import api
from ..te import ir_builder
from .tensor import SparseTensor, sparse_placeholder

_ONE = n.IntImm("int64", 1)


# ---------------------------------------------------------------- expressions
class SparseExpr:
    """An elementwise expression of sparse operands (``A + B``, ``A * B``, ``2 * A``)."""

    kind = "expr"

    def __add__(self, other):
        return _Binary("add", self, _operand(other, "+"))

    def __radd__(self, other):
        return _Binary("add", _operand(other, "+"), self)

    def __sub__(self, other):
        return _Binary("sub", self, _operand(other, "-"))

    def __rsub__(self, other):
        return _Binary("sub", _operand(other, "-"), self)

    def __mul__(self, other):
        if isinstance(other, (int, float)):
            return _Scale(float(other), self)
        return _Binary("mul", self, _operand(other, "*"))

    def __rmul__(self, other):
        return self.__mul__(other)

    def __neg__(self):
        return _Scale(-1.0, self)


@dataclass(frozen=True, eq=False)
class _Operand(SparseExpr):
    tensor: SparseTensor
    kind = "operand"


@dataclass(frozen=True, eq=False)
class _Binary(SparseExpr):
    op: str
    a: SparseExpr
    b: SparseExpr
    kind = "binary"


@dataclass(frozen=True, eq=False)
class _Scale(SparseExpr):
    factor: float
    a: SparseExpr
    kind = "scale"


def _operand(x, symbol: str) -> SparseExpr:
    if isinstance(x, SparseExpr):
        return x
    if isinstance(x, SparseTensor):
        return _Operand(x)
    raise TypeError(f"sparse expression: {symbol} needs a sparse operand on both sides "
                    f"(a number {symbol} a sparse matrix would be dense), got "
                    f"{type(x).__name__}")


def as_expr(x) -> SparseExpr:
    return _operand(x, "assemble")


def operands(e: SparseExpr) -> list:
    """The distinct sparse tensors of ``e``, in order of appearance."""
    if isinstance(e, _Operand):
        return [e.tensor]
    found = operands(e.a) + (operands(e.b) if isinstance(e, _Binary) else [])
    return list(dict.fromkeys(found))


def lattice(e: SparseExpr) -> list:
    """The merge lattice of ``e``: the sets of operands (``frozenset`` of tensors) whose
    co-iteration can produce an entry, largest first."""
    def points(e) -> list:
        if isinstance(e, _Operand):
            return [frozenset([e.tensor])]
        if isinstance(e, _Scale):
            return points(e.a)
        both = [p | q for p in points(e.a) for q in points(e.b)]
        if e.op == "mul":
            return both
        return both + points(e.a) + points(e.b)
    unique = list(dict.fromkeys(points(e)))
    return sorted(unique, key=len, reverse=True)


def value(e: SparseExpr, present: dict):
    """``e`` where only the operands in ``present`` (tensor -> its value) have an entry;
    None where it is zero."""
    if isinstance(e, _Operand):
        return present.get(e.tensor)
    if isinstance(e, _Scale):
        a = value(e.a, present)
        return None if a is None else a * const(e.factor, a.dtype)
    a, b = value(e.a, present), value(e.b, present)
    if e.op == "mul":
        return None if a is None or b is None else a * b
    if b is None:
        return a
    if a is None:
        return b if e.op == "add" else -b
    return a + b if e.op == "add" else a - b


# ---------------------------------------------------------------- the merge, as IR
class _Merge:
    """The merge of one row of every operand, written with ``td.ir_builder``; ``emit``
    (the count's or the fill's) handles each entry of the result."""

    def __init__(self, ib, expr: SparseExpr, row, emit, count_runs: bool):
        self.ib, self.expr, self.row, self.emit = ib, expr, row, emit
        self.count_runs = count_runs
        self.tensors = operands(expr)
        self.points = lattice(expr)
        self.at, self.end, self.crd, self.vals = {}, {}, {}, {}
        for k, t in enumerate(self.tensors):
            pos = ib.buffer_ptr(t.pos[1])
            self.crd[t], self.vals[t] = ib.buffer_ptr(t.crd[1]), ib.buffer_ptr(t.vals)
            self.at[t] = ib.pointer("int64", name=f"{t.name}.p")
            self.at[t][0] = cast("int64", pos[row])
            self.end[t] = ib.let(f"{t.name}.end", cast("int64", pos[row + 1]))

    def run(self):
        for point in self.points:
            self.loop(point)

    def active(self, t):
        return self.at[t][0] < self.end[t]

    def loop(self, point):
        ib = self.ib
        below = [q for q in self.points if q <= point]
        ordered = [t for t in self.tensors if t in point]
        if len(ordered) == 1:
            (t,) = ordered
            if below == [point] and self.count_runs:
                # the count of a lone operand's rest is its length: no loop
                self.emit(None, None, self.end[t] - self.at[t][0])
                return
            with ib.while_loop(self.active(t)):
                p = self.at[t][0]
                v = value(self.expr, {t: self.vals[t][p]})
                if v is not None:
                    self.emit(cast("int64", self.crd[t][p]), v, _ONE)
                self.at[t][0] = p + 1
            return
        cond = self.active(ordered[0])
        for t in ordered[1:]:
            cond = n.And(cond, self.active(t))
        with ib.while_loop(cond):
            col = {t: ib.let(f"{t.name}.j", cast("int64", self.crd[t][self.at[t][0]]))
                   for t in ordered}
            j = col[ordered[0]]
            for t in ordered[1:]:
                j = n.Min(j, col[t])
            j = ib.let("j", j)
            if self.count_runs and self.always_emits(below, ordered):
                self.emit(None, None, _ONE)      # a union: one entry per step
            else:
                self.cases(below, col, j)
            for t in ordered:
                self.at[t][0] = self.at[t][0] + cast("int64", n.EQ(col[t], j))

    def always_emits(self, points, ordered) -> bool:
        """Whether every step produces an entry, whichever operands sit at ``j`` (at
        least one does): then a count needs no comparisons."""
        for bits in range(1, 1 << len(ordered)):
            at_j = frozenset(t for k, t in enumerate(ordered) if bits >> k & 1)
            case = next((q for q in points if q <= at_j), None)
            if case is None or value(self.expr, {t: _ONE for t in case}) is None:
                return False
        return True

    def cases(self, points, col, j):
        """if / elif over the lattice points below the loop's: the first whose operands
        all sit at ``j`` produces the entry."""
        if not points:
            return
        q, rest = points[0], points[1:]
        here = None
        for t in (t for t in self.tensors if t in q):
            eq = n.EQ(col[t], j)
            here = eq if here is None else n.And(here, eq)
        v = value(self.expr, {t: self.vals[t][self.at[t][0]] for t in q})
        with self.ib.if_scope(here):
            if v is not None:
                self.emit(j, v, _ONE)
        if rest:
            with self.ib.else_scope():
                self.cases(rest, col, j)


# ---------------------------------------------------------------- the two kernels
class Assembly:
    """``assemble(expr)``: the result's arrays as ``result`` (a CSR SparseTensor whose
    ``pos``/``crd``/``vals`` are placeholders of the fill kernel), the ``count``
    tensor (``pos``, computed from the operands) and the ``fill`` tensors (``crd``,
    ``vals``, computed from the operands and ``result.pos[1]``)."""

    def __init__(self, expr: SparseExpr, name: str):
        self.expr, self.name = expr, name
        self.operands = operands(expr)
        first = self.operands[0]
        for t in self.operands:
            kinds = [lv.kind for lv in t.format.levels]
            if kinds != ["dense", "compressed"] or t.format.order != (0, 1) or \
                    t.format.block or not all(lv.ordered and lv.unique
                                              for lv in t.format.levels):
                raise ValueError(f"assemble {name!r}: operand {t.name!r} must be CSR "
                                 f"with sorted, unique columns, got {t.format}")
            if repr(t.shape) != repr(first.shape) or t.dtype != first.dtype:
                raise ValueError(f"assemble {name!r}: operand {t.name!r} is "
                                 f"{t.dtype}{list(t.shape)}, {first.name!r} is "
                                 f"{first.dtype}{list(first.shape)}: they must agree")
        self.shape, self.dtype = first.shape, first.dtype
        self.result = sparse_placeholder(self.shape, "csr", self.dtype, name)
        self.inputs = [p for t in self.operands for p in t.placeholders()]
        rows = self.shape[0]
        self.count = api.extern((rows + 1,), self.inputs, self._count, name=f"{name}.count",
                                dtype="int32")
        self.fill = api.extern([(self.result.nnz[1],), (self.result.nnz[1],)],
                               self.inputs + [self.result.pos[1]], self._fill,
                               name=f"{name}.fill", dtype=["int32", self.dtype])

    def _count(self, ins, outs):
        ib = ir_builder.create()
        pos = ib.buffer_ptr(outs[0])
        rows = self.shape[0]
        with ib.for_range(0, rows, name="i", kind="parallel") as i:
            count = ib.pointer("int64", name="count")
            count[0] = 0

            def emit(j, v, how_many):
                count[0] = count[0] + how_many
            _Merge(ib, self.expr, i, emit, count_runs=True).run()
            pos[i + 1] = cast("int32", count[0])
        pos[0] = 0
        with ib.for_range(0, rows, name="i") as i:   # the counts, summed
            pos[i + 1] = pos[i + 1] + pos[i]
        return ib.get()

    def _fill(self, ins, outs):
        ib = ir_builder.create()
        pos = ib.buffer_ptr(ins[-1])
        crd, vals = ib.buffer_ptr(outs[0]), ib.buffer_ptr(outs[1])
        with ib.for_range(0, self.shape[0], name="i", kind="parallel") as i:
            at = ib.pointer("int64", name="out")
            at[0] = cast("int64", pos[i])

            def emit(j, v, _):
                crd[at[0]] = cast("int32", j)
                vals[at[0]] = v
                at[0] = at[0] + 1
            _Merge(ib, self.expr, i, emit, count_runs=False).run()
        return ib.get()

    def count_args(self) -> list:
        return self.inputs + [self.count]

    def fill_args(self) -> list:
        return self.inputs + [self.result.pos[1]] + list(self.fill)

    def build(self, check_indices: bool = True) -> "AssembledKernel":
        """Compile both kernels (CPU): a callable on ``td.nd`` sparse arrays (CSR)."""
        from ..build import build
        from ..schedule.schedule import create_schedule
        count = build(create_schedule(self.count.op), self.count_args(), target="llvm",
                      name=f"{self.name}_count", check_indices=check_indices)
        fill = build(create_schedule(self.fill[0].op), self.fill_args(), target="llvm",
                     name=f"{self.name}_fill", check_indices=check_indices)
        return AssembledKernel(self, count, fill)


class AssembledKernel:
    """The count and fill kernels of an ``Assembly`` and the allocation between them."""

    def __init__(self, assembly: Assembly, count, fill):
        self.assembly, self.count, self.fill = assembly, count, fill

    def __call__(self, *arrays):
        from .array import SparseArray
        a = self.assembly
        if len(arrays) != len(a.operands):
            raise TypeError(f"{a.name}: expected {len(a.operands)} sparse arrays "
                            f"({', '.join(t.name for t in a.operands)}), got {len(arrays)}")
        components = []
        for t, x in zip(a.operands, arrays):
            if not isinstance(x, SparseArray) or x.format.name != "csr":
                raise TypeError(f"{a.name}: operand {t.name!r} must be a CSR td.nd sparse "
                                f"array, got {x!r}")
            if x.shape != tuple(int(d) for d in a.shape) or x.dtype != a.dtype:
                raise ValueError(f"{a.name}: operand {t.name!r} must be {a.dtype}"
                                 f"{list(a.shape)}, got {x.dtype}{list(x.shape)}")
            components += [x.component(p.name.split(".", 1)[1]) for p in t.placeholders()]
        from .. import nd      # (looked up per call: tests poison its allocations)
        pos = nd.aligned_numpy((a.shape[0] + 1,), np.int32)
        self.count(*components, pos)
        nnz = int(pos[-1])
        crd, vals = nd.aligned_numpy((nnz,), np.int32), nd.aligned_numpy((nnz,), a.dtype)
        self.fill(*components, pos, crd, vals)
        return SparseArray(a.shape, "csr", {"pos1": pos, "crd1": crd, "vals": vals},
                           check=False)


def assemble(expr, name: str = "C") -> Assembly:
    """The count and fill kernels of a sparse result of ``expr`` (see the module
    docstring)."""
    return Assembly(as_expr(expr), name)
