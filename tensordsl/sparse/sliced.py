"""Sliced ELLPACK (SELL-C-σ; Kreutzer, Hager, Wellein, Fehske and Bishop, SIAM J. Sci.
Comput. 2014): a CSR matrix's rows laid out so that one vector's lanes are ``lanes``
rows side by side, for SpMV without a horizontal sum or a data-dependent branch per row.

The rows are sorted by decreasing length within windows of ``window`` rows (σ: rows of
similar length end up in one slice, so little padding, while a thread's rows stay near
each other) and cut into slices of ``lanes`` rows (C). Slice ``s`` stores ``width[s]`` =
its longest row's length steps; step ``k`` holds the ``k``-th entry of each of its rows
side by side, a shorter row padded:

    spos  (slices + 1,)       the steps before each slice (a prefix sum of the widths)
    scrd  (steps, lanes)      column of each lane's entry at a step (0 for padding)
    svals (steps, lanes)      its value (0 for padding)
    slen  (slices, lanes)     each lane's row length: a step is padding from there on
    slane (rows,)             where row i went: lane ``slane[i] % lanes`` of slice
                              ``slane[i] // lanes``

A sum over the steps of a slice keeps one vector of ``lanes`` partial results — one a
row — in a register: a step is a vector load of values, one of columns, one gather of
``x``, one fused multiply-add. The kernel reads padding as a select (``slen``), never as
``0 * x[0]``, so an infinite or NaN ``x[0]`` reaches only the rows that store column 0.

The layout is derived from the CSR arrays once per ``td.nd`` sparse array
(``SparseArray.component``), like the transpose: O(nnz) numpy work.
"""
from __future__ import annotations

import numpy as np

# one slice's rows fill a 512-bit vector of float32 (two of 256 bits elsewhere)
LANES = 16
# rows sorted by length within this many (σ): on the 4096^2 1% uniform matrix, windows of
# 256 rows padded 2.6% and kept the two threads' shares even; sorting all 4096 padded 0.2%
# but gave one thread every long row
WINDOW = 256
KINDS = ("spos", "scrd", "svals", "slen", "slane")


def slices(rows: int, lanes: int = LANES) -> int:
    return -(-rows // lanes)


def sliced_ell(pos: np.ndarray, crd: np.ndarray, vals: np.ndarray, lanes: int = LANES,
               window: int = WINDOW) -> dict:
    """The arrays of the module docstring from CSR's ``pos``, ``crd`` and ``vals``."""
    from ..nd import aligned_numpy      # (td.nd imports the sparse arrays, which use this)
    m = pos.size - 1
    lengths = np.diff(pos).astype(np.int64)
    n_slices = slices(m, lanes)
    # primary key the window, secondary the length (decreasing), ties by row (stable)
    order = np.lexsort((-lengths, np.arange(m) // window))
    slane = np.empty(m, np.int32)
    slane[order] = np.arange(m, dtype=np.int32)
    slen = np.zeros(n_slices * lanes, np.int64)
    slen[:m] = lengths[order]
    slen = slen.reshape(n_slices, lanes)
    spos = np.zeros(n_slices + 1, np.int64)
    np.cumsum(slen.max(axis=1, initial=0), out=spos[1:])
    steps = int(spos[-1])
    # a step's lanes are one vector: on a 64-byte line each (a load across two lines
    # measured 1.1x slower)
    scrd, svals = aligned_numpy((steps, lanes), np.int32), aligned_numpy((steps, lanes),
                                                                        vals.dtype)
    scrd.fill(0)
    svals.fill(0)
    rows = np.repeat(np.arange(m), lengths)
    lane = slane[rows].astype(np.int64)
    step = spos[lane // lanes] + np.arange(rows.size) - pos[rows]
    flat = step * lanes + lane % lanes
    scrd.reshape(-1)[flat] = crd
    svals.reshape(-1)[flat] = vals
    return {"spos": spos.astype(np.int32), "scrd": scrd, "svals": svals,
            "slen": slen.astype(np.int32), "slane": slane}
