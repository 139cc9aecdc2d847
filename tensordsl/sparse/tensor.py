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
pattern of the shape. A sparse loop is a reduction axis whose bounds are read from
``pos`` (``nonzeros``): the lowering engine turns it into ``for q in range(pos[i],
pos[i + 1])`` with the coordinate ``crd[q]``, TACO's iteration over a compressed level.

    A = td.sparse_placeholder((m, n), format="csr", name="A")
    q, j, a = A.nonzeros(i)            # inside a compute over rows i
    y = td.compute((m,), lambda i: td.sum(A.value_at(q) * x[A.crd[1][q]], axis=q))
"""
from __future__ import annotations

from ..te import api
from .format import Format, as_format


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
                self.pos[k] = api.placeholder((positions + 1,), "int32", f"{name}.pos{k}")
                self.nnz[k] = api.var(f"{name}.nnz{k}")
                self.crd[k] = api.placeholder((self.nnz[k],), "int32", f"{name}.crd{k}")
                positions = self.nnz[k]
            else:   # singleton
                self.crd[k] = api.placeholder((positions,), "int32", f"{name}.crd{k}")
        self.positions = positions
        self.vals = api.placeholder((positions, *format.block), dtype, f"{name}.vals")
        self.rows: dict = {}     # level -> the parent coordinate of each position

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def placeholders(self) -> list:
        """The arrays in the order a kernel takes them (``td.nd.SparseArray.arrays()``
        gives them in the same order): each level's ``pos`` then ``crd``, then
        ``vals``, then the ``row_ids`` a compute asked for (derived by the runtime)."""
        out = []
        for k in range(len(self.format.levels)):
            out += [t for t in (self.pos.get(k), self.crd.get(k)) if t is not None]
        return out + [self.vals] + [self.rows[k] for k in sorted(self.rows)]

    def row_ids(self, level: int = 1):
        """``rows{level}``: the coordinate of the parent of each position of compressed
        ``level`` (CSR's row of each nonzero; TACO's coordinate recovery). It is not
        stored by the format: the runtime derives it from ``pos`` once per array. A
        compute over the stored positions (an output with this operand's pattern)
        reads it."""
        if self.format.levels[level].kind != "compressed" or level == 0:
            raise ValueError(f"{self.name}: row ids are derived for a compressed level "
                             f"below another, not level {level}")
        if level not in self.rows:
            self.rows[level] = api.placeholder((self.nnz[level],), "int32",
                                               f"{self.name}.rows{level}")
            # a schedule's segment(p, pos) turns rows[p] into its runs loop
            self.rows[level].op.row_ids_of = self.pos[level]
        return self.rows[level]

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
