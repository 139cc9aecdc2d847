"""Sparse loops in index equations: what the solver (``solve.py``) knows about a sparse
operand's positions, so that a gradient through a sparse kernel keeps its pattern.

A compressed level ``k`` of a ``td.sparse_placeholder`` stores its positions in runs:
the children of parent ``e`` are the positions ``[pos[e], pos[e + 1])``, in order, and
``pos`` is monotone, so each position ``q`` has exactly one parent, ``rows[q]``
(``SparseTensor.row_ids``). Its coordinates ``crd[q]`` are inverted by the level's
transpose (``SparseTensor.transpose_ids``): the positions of coordinate ``j`` are
``perm[t]`` for ``t`` in ``[tpos[j], tpos[j + 1])``. Both are derived by the runtime.

Three facts follow, each replacing a loop over every parent (or every position) by a
direct index or a loop over exactly the matching positions:

* **segment axis.** An unknown ``q`` whose range is ``[pos[e], pos[e + 1])`` (a reduce
  axis of ``SparseTensor.nonzeros``), ``e`` another unknown. Solving ``q = p`` gives
  ``e = rows[p]`` (for ``0 <= p < nnz``): no loop over ``e``, no range test.
* **coordinate.** ``crd[q] == j`` for an unknown position ``q`` (a segment axis whose
  parent is unknown, or an axis over all the positions): ``q = perm[t]`` for a new axis
  ``t`` in ``[tpos[j], tpos[j + 1])`` (and ``e = rows[perm[t]]``).
* **parent.** ``rows[q] == a`` for an unknown over all the positions: ``q`` runs over
  ``[pos[a], pos[a + 1])``.

Anything else about a sparse array (a position whose range is narrower, say) stays a
condition, as any data-dependent index does.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import nodes as n
from ..ir.op import cast
from ..sparse.tensor import ComponentOp, component_of, run_array, strip_casts


def index(e) -> n.Expr:
    """An int32 array's element as an index (int64)."""
    return cast("int64", e)


@dataclass
class Segment:
    """An unknown's range ``[pos[parent], pos[parent + 1])`` of compressed ``level``."""
    pos: ComponentOp
    parent: n.Expr

    @property
    def sparse(self):
        return self.pos.sparse

    @property
    def k(self) -> int:
        return self.pos.level


def segment_of(lo) -> Segment | None:
    """The segment whose start is ``lo`` (``pos[e]``, maybe cast), or None."""
    op = run_array(lo)
    if op is None or op.role != "pos" or op.level == 0:
        return None
    return Segment(op, strip_casts(lo).indices[0])


@dataclass
class LevelRead:
    """``crd[q]`` or ``rows[q]`` of a compressed level, ``q`` a plain variable."""
    array: ComponentOp
    position: n.Var

    @property
    def role(self) -> str:
        return self.array.role


def level_read(e, unknowns) -> LevelRead | None:
    """``e`` as ``crd[q]`` / ``rows[q]`` of a compressed level below another with ``q``
    one of ``unknowns``, or None."""
    read = strip_casts(e)
    if not isinstance(read, n.TensorRead):
        return None
    op = component_of(read.tensor)
    if op is None or op.role not in ("crd", "rows") or not op.level or \
            op.sparse.format.levels[op.level].kind != "compressed":
        return None
    q = strip_casts(read.indices[0])
    if not isinstance(q, n.Var) or q not in unknowns:
        return None
    return LevelRead(op, q)


def parent_of(sparse, level: int, position) -> n.Expr:
    """``rows[position]``: the parent of a position of ``level``."""
    return index(sparse.row_ids(level)[position])


def run_of(pos, parent) -> tuple[n.Expr, n.Expr]:
    """(start, length) of the positions under ``parent``: ``pos[parent]`` on."""
    start = index(pos[parent])
    return start, index(pos[parent + 1]) - start


def permuted(sparse, level: int, t) -> n.Expr:
    """``perm[t]``: the position of the ``t``-th entry of ``level`` in coordinate order."""
    _, perm = sparse.transpose_ids(level)
    return index(perm[t])


def all_positions(lo, extent, sparse, level: int, same) -> bool:
    """Whether ``[lo, lo + extent)`` is every position of ``level`` (``[0, nnz)``)."""
    return isinstance(lo, n.IntImm) and lo.value == 0 and same(extent, sparse.nnz[level])
