"""``td.sparse_placeholder``: a sparse operand of a compute, as the arrays its format
stores — each one an ordinary placeholder, so every pass, schedule and backend handles
them as it handles any buffer.

For a level ``k`` of the format (``format.py``), storing dimension ``d = order[k]``:

* dense: no arrays; its positions are the parent's times ``shape[d]``;
* compressed: ``pos{k}`` (int32, one more than the parent's positions) and ``crd{k}``
  (int32, ``nnz{k}`` entries, a symbolic size): its positions are ``nnz{k}``;
* singleton: ``crd{k}`` (int32, one per parent position).

``vals`` holds one value per position of the last level (times the block for BSR).
The numbers of stored entries are ``td.var``s, so one kernel serves every sparsity
pattern of the shape. Every component placeholder is a ``ComponentOp``: it knows the
operand, the level and the role (pos, crd, rows, ...) it stands for, so a pass that meets
a read of ``pos`` (the bounds of a sparse loop) or of ``crd`` can ask for the level's
other arrays — reverse mode inverts ``crd[q] == j`` through the transpose this way
(``autodiff/segments.py``). A sparse loop is a reduction axis whose bounds are read from
``pos`` (``nonzeros``): the lowering engine turns it into ``for q in range(pos[i],
pos[i + 1])`` with the coordinate ``crd[q]``, TACO's iteration over a compressed level.

    A = td.sparse_placeholder((m, n), format="csr", name="A")
    q, j, a = A.nonzeros(i)            # inside a compute over rows i
    y = td.compute((m,), lambda i: td.sum(A.value_at(q) * x[A.crd[1][q]], axis=q))

Arrays the format does not store, derived from it by the runtime once per array
(``td.nd.SparseArray.component``) when a compute asks for them:

* ``rows{k}`` (``row_ids``): the parent of each position of level ``k``;
* ``tpos{k}``, ``perm{k}`` (``transpose_ids``): level ``k`` transposed, CSC of a CSR
  matrix: the positions of level ``k`` in the order of their coordinates (stable),
  ``perm[tpos[j]:tpos[j + 1]]`` those with coordinate ``j``;
* ``spos{k}``, ``scrd{k}``, ``svals{k}``, ``slen{k}``, ``slane{k}`` (``sliced``): a CSR
  matrix's rows as sliced ELLPACK (``sliced.py``), for SpMV.
"""
from __future__ import annotations

from ..ir import nodes as n
from ..te import api
from ..te.tensor import PlaceholderOp
from .format import Format, as_format
from .sliced import KINDS as SLICED_KINDS, LANES, slices

# the kinds of arrays, in the order a kernel takes them (after the stored levels' pos and
# crd, and vals): the derived ones last, so that a kernel's stored arguments come first
DERIVED = ("rows", "tpos", "perm", *SLICED_KINDS)


class ComponentOp(PlaceholderOp):
    """A placeholder that is one array of a sparse operand: ``role`` (pos, crd, vals,
    rows, tpos, perm) of ``level`` of ``sparse`` (level None for vals)."""

    def __init__(self, sparse: "SparseTensor", role: str, level, shape, dtype: str):
        name = f"{sparse.name}.{role}{'' if level is None else level}"
        t = api.placeholder(shape, dtype, name)    # shape and dtype checked as any
        super().__init__(t.op.name, t.op.shape, t.op.dtype)
        self.sparse, self.role, self.level = sparse, role, level


def component_of(tensor) -> ComponentOp | None:
    """The sparse array ``tensor`` is, or None for any other tensor."""
    op = getattr(tensor, "op", None)
    return op if isinstance(op, ComponentOp) else None


def strip_casts(e):
    """``e`` without the casts between 32- and 64-bit integers around it (an int32
    array's element read as an index)."""
    while isinstance(e, n.Cast) and e.dtype in _INDEX_TYPES and e.value.dtype in _INDEX_TYPES:
        e = e.value
    return e


_INDEX_TYPES = ("int32", "int64")


def run_array(lo) -> ComponentOp | None:
    """The prefix sums (``pos``, or the transpose's ``tpos``) whose element ``lo`` is: a
    loop from ``lo`` runs over a row's (a column's) entries. None for anything else."""
    read = strip_casts(lo)
    op = component_of(read.tensor) if isinstance(read, n.TensorRead) else None
    return op if op is not None and op.role in ("pos", "tpos") else None


class SparseTensor:
    """The component placeholders of a sparse operand (see the module docstring)."""

    def __init__(self, shape, format: Format, dtype: str, name: str):
        self.shape, self.format, self.dtype, self.name = tuple(shape), format, dtype, name
        if len(self.shape) != format.ndim:
            raise ValueError(f"sparse_placeholder {name!r}: format {format} has "
                             f"{format.ndim} dimensions, shape {self.shape} has "
                             f"{len(self.shape)}")
        for d, (extent, b) in enumerate(zip(self.shape, format.block or (1,) * len(shape))):
            if isinstance(extent, int) and b and extent % b:
                raise ValueError(f"sparse_placeholder {name!r}: dimension {d} ({extent}) "
                                 f"is not a multiple of the block {format.block}")
        self.pos: dict = {}
        self.crd: dict = {}
        self.nnz: dict = {}
        positions = 1
        outer = len(format.levels) - len(format.block)
        for k, level in enumerate(format.levels[:outer]):
            d = format.order[k]
            extent = self.shape[d] // (format.block[d] if format.block else 1)
            if level.kind == "dense":
                positions = positions * extent
            elif level.kind == "compressed":
                self.pos[k] = self._component("pos", k, (positions + 1,))
                self.nnz[k] = api.var(f"{name}.nnz{k}")
                self.crd[k] = self._component("crd", k, (self.nnz[k],))
                positions = self.nnz[k]
            else:   # singleton
                self.crd[k] = self._component("crd", k, (positions,))
        self.positions = positions
        self.vals = self._component("vals", None, (positions, *format.block), dtype)
        # (kind, level) -> a derived array (``DERIVED``), made when a compute asks
        self.derived: dict = {}

    def _component(self, role: str, level, shape, dtype: str = "int32"):
        return ComponentOp(self, role, level, shape, dtype).output(0)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def rows(self) -> dict:
        """level -> ``rows{level}``, for the levels a compute asked for (``row_ids``)."""
        return {k: t for (kind, k), t in self.derived.items() if kind == "rows"}

    def placeholders(self) -> list:
        """The arrays in the order a kernel takes them (``td.nd.SparseArray.arrays(
        like=self)`` gives them in the same order): each level's ``pos`` then ``crd``,
        then ``vals``, then the derived arrays computes asked for — every ``rows{k}``,
        then every ``tpos{k}``, then every ``perm{k}``, each by level. Ask for the
        placeholders after defining the computes (and their gradients): a derived array
        exists once something reads it."""
        return list(self.components().values())

    def components(self) -> dict:
        """The arrays of ``placeholders()`` by their names in ``td.nd.SparseArray``
        (``"pos1"``, ``"vals"``, ``"rows1"``, ...)."""
        out = {}
        for k in range(len(self.format.levels)):
            out.update({t.op.role + str(k): t for t in (self.pos.get(k), self.crd.get(k))
                        if t is not None})
        out["vals"] = self.vals
        for kind in DERIVED:
            for k in sorted(k for (d, k) in self.derived if d == kind):
                out[f"{kind}{k}"] = self.derived[kind, k]
        return out

    def _derived(self, kind: str, level: int, shape, dtype: str = "int32"):
        if (kind, level) not in self.derived:
            self.derived[kind, level] = self._component(kind, level, shape, dtype)
        return self.derived[kind, level]

    def _check_derivable(self, level: int, what: str):
        if not 0 < level < len(self.format.levels) - len(self.format.block) or \
                self.format.levels[level].kind != "compressed":
            raise ValueError(f"{self.name}: {what} are derived for a compressed level "
                             f"below another, not level {level}")

    def row_ids(self, level: int = 1):
        """``rows{level}``: the coordinate of the parent of each position of compressed
        ``level`` (CSR's row of each nonzero; TACO's coordinate recovery). It is not
        stored by the format: the runtime derives it from ``pos`` once per array. A
        compute over the stored positions (an output with this operand's pattern)
        reads it."""
        self._check_derivable(level, "row ids")
        rows = self._derived("rows", level, (self.nnz[level],))
        # a schedule's segment(p, pos) turns rows[p] into its runs loop
        rows.op.row_ids_of = self.pos[level]
        return rows

    def transpose_ids(self, level: int = 1):
        """``(tpos{level}, perm{level})``: compressed ``level`` transposed (a CSR
        matrix's CSC): ``perm`` lists the positions of the level in the order of their
        coordinates (stably: by parent within a coordinate), ``perm[tpos[j]:tpos[j+1]]``
        the positions of coordinate ``j``. Derived by the runtime once per array, in
        O(nnz + n). The gradient of ``A @ B`` with respect to ``B`` reads them (``A.T``'s
        product, a gather per column)."""
        self._check_derivable(level, "transposes")
        d = self.format.order[level]
        extent = self.shape[d] // (self.format.block[d] if self.format.block else 1)
        return (self._derived("tpos", level, (extent + 1,)),
                self._derived("perm", level, (self.nnz[level],)))

    def sliced(self, level: int = 1) -> dict:
        """The arrays of CSR's rows as sliced ELLPACK (``sliced.py``): ``{"spos",
        "scrd", "svals", "slen", "slane"}``, derived by the runtime once per array. The
        number of steps is a symbolic size, ``steps{level}``, like ``nnz``."""
        self._check_derivable(level, "sliced rows")
        if len(self.format.levels) != 2 or self.format.block:
            raise ValueError(f"{self.name}: sliced rows are derived for CSR, not "
                             f"{self.format}")
        count = slices(self.shape[0], LANES)
        steps = self.__dict__.setdefault("steps", {}).setdefault(
            level, api.var(f"{self.name}.steps{level}"))
        shapes = {"spos": (count + 1,), "scrd": (steps, LANES), "svals": (steps, LANES),
                  "slen": (count, LANES), "slane": (self.shape[0],)}
        return {kind: self._derived(kind, level, shape,
                                    self.dtype if kind == "svals" else "int32")
                for kind, shape in shapes.items()}

    def nonzeros(self, parent, level: int = 1):
        """The reduction axis over the stored coordinates of compressed ``level`` under
        the parent position ``parent`` (a row index for CSR), and the coordinate it
        stands for: ``(q, crd[q])``."""
        if self.format.levels[level].kind != "compressed":
            raise ValueError(f"{self.name}: level {level} is "
                             f"{self.format.levels[level].kind}, not compressed")
        pos = self.pos[level]
        q = api.reduce_axis((pos[parent].astype("int64"), pos[parent + 1].astype("int64")),
                            f"{self.name}.q{level}")
        return q, self.crd[level][q].astype("int64")

    # ``A + B``, ``A * B``, ``2 * A``: an expression for td.sparse.assemble (coiterate.py)
    def _expr(self):
        from .coiterate import as_expr
        return as_expr(self)

    def __add__(self, other):
        return self._expr() + other

    def __radd__(self, other):
        return other + self._expr()

    def __sub__(self, other):
        return self._expr() - other

    def __rsub__(self, other):
        return other - self._expr()

    def __mul__(self, other):
        return self._expr() * other

    def __rmul__(self, other):
        return self._expr() * other

    def __neg__(self):
        return -self._expr()

    def __repr__(self):
        dims = ", ".join(str(d) for d in self.shape)
        return f"SparseTensor({self.name}, ({dims}), {self.format}, {self.dtype})"


def sparse_placeholder(shape, format="csr", dtype: str = "float32",
                       name: str = "S") -> SparseTensor:
    """A sparse operand of ``shape`` stored in ``format`` (a name — csr, csc, coo,
    dcsr, bsr — or a ``td.Format``)."""
    return SparseTensor(shape, as_format(format), dtype, name)
