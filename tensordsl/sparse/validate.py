"""The structure checks of a sparse array, run before any kernel sees it: O(nnz),
vectorized numpy, each failure a ``ValueError`` naming the component array and its
first bad position (``pos1[3] = 2 is less than pos1[2] = 5``).

Level by level (``format.py``), with P the number of positions of the parent level:

    compressed  pos{k}: integers fitting int32, P + 1 entries, pos[0] = 0, non-decreasing,
                pos[P] = len(crd{k}); crd{k}: integers in [0, extent); within each run
                pos[p]..pos[p+1]: ascending where the level is ordered, no repeats where
                it is unique (strictly ascending where it is both)
    singleton   crd{k}: P entries in [0, extent); where the level is ordered, ascending
                among the entries whose coordinates above are equal (COO's columns
                within a row)
    vals        a number type (or bool), one entry per position of the last level (one
                block per position for a blocked format: shape (P, *block))
"""
from __future__ import annotations

import numpy as np

from ..ir.dtype import SCALAR_DTYPES
from .assemble import INT32_MAX, check_shape, level_extents, outer_levels

# what a kernel can take as values: tensordsl's dtypes that numpy stores as themselves
VALUE_DTYPES = tuple(d for d in SCALAR_DTYPES if d != "bfloat16")


def _first(mask: np.ndarray):
    """The first index where ``mask`` holds, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _prefix_ids(parent_ids: np.ndarray, crd: np.ndarray, extent: int) -> np.ndarray:
    """An id per position of a level, equal where the coordinates at and above the level
    are equal, from the parent's ids and this level's coordinates (in range)."""
    key = parent_ids * extent + crd
    steps = np.diff(key)
    if (steps >= 0).all():      # levels sorted so far (every named format): no sort needed
        return np.concatenate([[0], np.cumsum(steps != 0)])
    return np.unique(key, return_inverse=True)[1].astype(np.int64)


def _requirement(level) -> str:
    if level.ordered and level.unique:
        return "ordered and unique (strictly ascending coordinates)"
    return "ordered (ascending coordinates)" if level.ordered else \
        "unique (no repeated coordinate)"


class _Checker:
    """Raises the errors of one array, prefixed with what the array is."""

    def __init__(self, array):
        self.array = array
        self.where = f"sparse array ({array.format}, shape {array.shape})"

    def fail(self, text: str):
        raise ValueError(f"{self.where}: {text}")

    def index_array(self, name: str) -> np.ndarray:
        """The component ``name`` (a pos or crd), checked to be 1-D integers that fit
        int32."""
        a = self.array.component(name)
        if a.ndim != 1:
            self.fail(f"{name}: expected a 1-D array, got shape {a.shape}")
        if a.dtype.kind not in "iu" and len(a):      # np.array([]) is float64: let it be
            self.fail(f"{name}: expected integers (int32), got {a.dtype}")
        if a.dtype != np.int32 and a.dtype.itemsize >= 4 and len(a):
            q = _first((a < -INT32_MAX - 1) | (a > INT32_MAX))
            if q is not None:
                self.fail(f"{name}[{q}] = {a[q]} does not fit int32 (the type of pos and "
                          f"crd arrays)")
        return a

    def pos(self, k: int, positions: int, crd_len: int) -> np.ndarray:
        name = f"pos{k}"
        pos = self.index_array(name)
        parent = "the root" if k == 0 else f"level {k - 1}"
        if len(pos) != positions + 1:
            self.fail(f"{name} has {len(pos)} entries, expected {positions + 1} (one more "
                      f"than the {positions} positions of {parent})")
        pos = pos.astype(np.int64)
        if pos[0] != 0:
            self.fail(f"{name}[0] = {pos[0]}, expected 0")
        q = _first(pos[1:] < pos[:-1])
        if q is not None:
            self.fail(f"{name}[{q + 1}] = {pos[q + 1]} is less than {name}[{q}] = {pos[q]} "
                      f"({name} must be non-decreasing)")
        if pos[-1] != crd_len:
            self.fail(f"{name}[{positions}] = {pos[-1]} but crd{k} has {crd_len} entries "
                      f"(the last pos must be the number of coordinates)")
        return pos

    def crd_range(self, k: int, crd: np.ndarray, extent: int):
        q = _first((crd < 0) | (crd >= extent))
        if q is not None:
            d = self.array.format.order[k]
            unit = ", counted in blocks" if self.array.format.block else ""
            self.fail(f"crd{k}[{q}] = {crd[q]} is out of range [0, {extent}) of level {k} "
                      f"(dimension {d}{unit})")

    def runs(self, k: int, level, pos: np.ndarray, crd: np.ndarray, positions: int):
        """Order and uniqueness within each run pos[p]..pos[p+1] of a compressed level."""
        n = len(crd)
        if n < 2 or not (level.ordered or level.unique):
            return
        same_run = np.ones(n - 1, bool)
        starts = pos[1:-1]
        same_run[starts[(starts > 0) & (starts < n)] - 1] = False
        name = f"crd{k}"
        if level.ordered:
            step = np.diff(crd.astype(np.int64))
            q = _first(same_run & ((step <= 0) if level.unique else (step < 0)))
            if q is None:
                return
            relation = "repeats" if step[q] == 0 else "is less than"
            later = q + 1
            earlier = q
        else:   # unique but unordered: sort each run to find repeats
            parent = np.repeat(np.arange(positions), np.diff(pos))
            order = np.lexsort((crd, parent))
            repeat = (parent[order[1:]] == parent[order[:-1]]) & \
                     (crd[order[1:]] == crd[order[:-1]])
            pairs = np.flatnonzero(repeat)
            if not len(pairs):
                return
            # the first position that repeats a coordinate seen before it in its run
            j = pairs[np.argmin(order[pairs + 1])]
            later, earlier, relation = int(order[j + 1]), int(order[j]), "repeats"
        run = int(np.searchsorted(pos, later, side="right")) - 1
        self.fail(f"{name}[{later}] = {crd[later]} {relation} {name}[{earlier}] = "
                  f"{crd[earlier]} in the run pos{k}[{run}]..pos{k}[{run + 1}]: level {k} "
                  f"is {_requirement(level)}")

    def vals(self, positions: int):
        vals = self.array.component("vals")
        if vals.dtype.name not in VALUE_DTYPES:
            self.fail(f"vals: expected one of {', '.join(VALUE_DTYPES)}, got {vals.dtype}")
        expected = (positions, *self.array.format.block)
        if vals.shape != expected:
            what = "block" if self.array.format.block else "value"
            self.fail(f"vals has shape {vals.shape}, expected {expected} (one {what} per "
                      f"position of the last level)")


def validate(array) -> None:
    """Check the structure of a ``SparseArray`` (see the module docstring); raise
    ``ValueError`` naming the component array and its first bad position.

    >>> validate(td.nd.sparse_array(scipy.sparse.eye(3, format="csr")))   # passes
    """
    check = _Checker(array)
    format = array.format
    try:
        check_shape(array.shape, format)
    except ValueError as e:
        check.fail(str(e))
    levels = outer_levels(format)
    # only an ordered singleton level (COO's columns) needs to know which positions have
    # equal coordinates above it: an id per position, equal where the coordinates are
    track = any(lv.kind == "singleton" and lv.ordered for lv in levels)
    ids = np.zeros(1, np.int64)
    positions = 1
    for k, (level, extent) in enumerate(zip(levels, level_extents(array.shape, format))):
        if level.kind == "dense":
            if track:
                ids = _prefix_ids(np.repeat(ids, extent),
                                  np.tile(np.arange(extent), positions), extent)
            positions *= extent
            continue
        crd = check.index_array(f"crd{k}")
        if level.kind == "compressed":
            pos = check.pos(k, positions, len(crd))
            check.crd_range(k, crd, extent)
            check.runs(k, level, pos, crd, positions)
            if track:
                ids = _prefix_ids(ids[np.repeat(np.arange(positions), np.diff(pos))], crd,
                                  extent)
        else:   # singleton
            if len(crd) != positions:
                check.fail(f"crd{k} has {len(crd)} entries, expected {positions} (one per "
                           f"position of level {k - 1})")
            check.crd_range(k, crd, extent)
            if level.ordered:
                q = _first((ids[1:] == ids[:-1]) & (crd[1:] < crd[:-1]))
                if q is not None:
                    check.fail(f"crd{k}[{q + 1}] = {crd[q + 1]} is less than crd{k}[{q}] = "
                               f"{crd[q]} under the same coordinates of the levels above: "
                               f"level {k} is ordered")
            if track:
                ids = _prefix_ids(ids, crd, extent)
        positions = len(crd)
    check.vals(positions)
