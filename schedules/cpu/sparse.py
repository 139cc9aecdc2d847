"""CPU templates of the sparse operators (``kernels/sparse.py``).

* Row-split (``schedule="rows"``, the default): the rows in parallel, in blocks of
  ``rows`` (knob), an equal number of rows per thread; each row's stored entries in
  order.
* Nonzero-balanced (``schedule="nonzeros"``, TACO's position split): the rows in
  parallel, each thread taking a run of rows that holds an equal share of the stored
  entries (``parallel(balance=A.pos)``), for skewed rows (a power-law graph). SpMM keeps a row of the result
  in vector registers across the row's entries (the dense columns, ``f``, vectorized
  and unrolled), so each entry costs one broadcast and ``f / lanes`` fused
  multiply-adds on a row of ``B``. With ``cols`` (knob; 0: all of them) the dense
  columns are taken ``cols`` at a time, each block over the row's entries again, so a
  wide ``B`` (f = 256) keeps its block of the result row in registers instead of
  spilling it:

      for i in rows (parallel):             for i in rows (parallel):
        for q in entries of i                 for cb in f / cols
          for co in f / lanes (unrolled)        for q in entries of i
            for ci in lanes (vector)              for co in cols / lanes (unrolled)
              C[i, c] += A[q] * B[j(q), c]          for ci in lanes (vector) ...
* Position space (the results with the operand's pattern: SDDMM, ``sparse_mul``,
  ``sparse_softmax``): the stored positions in parallel, in blocks; SDDMM's dot
  product over ``f`` in vector lanes.

``space(op)`` gives each operator's knobs and the values a tuner tries (``tensordsl tune
spmm --random 4096,4096,0.01 --shape 64``); ``DEFAULTS`` the configuration without
records. Every combination is legal; a knob that does not apply to a configuration
(``rows`` under ``schedule="nonzeros"``, ``cols`` at least the width) is a no-op.
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import _extent
from .target import vector_lanes

ROW_BLOCK = 16
# SpMV's independent partial sums per row: 4 measured 1.5x one chain here (8 no better;
# 8 vector lanes with gathers slower, rows of ~41 entries)
PARTIALS = 4
# entries ahead whose row of B SpMM fetches (knob ``prefetch``; 0: none). Measured on
# this machine with B in L3 (4096 x 64): 2-8 ahead were 15-20% slower than none
PREFETCH = 0


SCHEDULES = ("rows", "nonzeros")
ROW_BLOCKS = [4, 8, 16, 32, 64, 128]
POSITION_BLOCK = 256

DEFAULTS = {
    "spmv": {"schedule": "rows", "rows": ROW_BLOCK, "partials": PARTIALS},
    "spmm": {"schedule": "rows", "rows": ROW_BLOCK, "prefetch": PREFETCH, "cols": 0},
    "sddmm": {"positions": POSITION_BLOCK},
    "sparse_mul": {"positions": POSITION_BLOCK},
    # (its row maxima and sums are split by rows)
    "sparse_softmax": {"positions": POSITION_BLOCK, "rows": ROW_BLOCK},
}


def _spaces() -> dict:
    lanes = vector_lanes(32)
    positions = [64, 128, 256, 512, 1024, 2048]
    return {
        "spmv": {"schedule": list(SCHEDULES), "rows": ROW_BLOCKS, "partials": [1, 2, 4, 8]},
        "spmm": {"schedule": list(SCHEDULES), "rows": ROW_BLOCKS, "prefetch": [0, 2, 4, 8],
                 "cols": [0, 2 * lanes, 4 * lanes, 8 * lanes]},
        "sddmm": {"positions": positions},
        "sparse_mul": {"positions": positions},
        "sparse_softmax": {"positions": positions, "rows": ROW_BLOCKS},
    }


def space(op: str) -> dict:
    """{knob: [values]} of operator ``op``'s template."""
    return _spaces()[op]


def default_config(op: str) -> dict:
    return dict(DEFAULTS[op])


def _rows_parallel(stage, axis, block: int):
    outer, inner = stage.split(axis, factor=block)
    stage.parallel(outer)
    return inner


def _split_rows(stage, axis, A, cfg):
    """The row loop, parallel: by row blocks, or by equal shares of the nonzeros."""
    if cfg["schedule"] == "nonzeros":
        stage.parallel(axis, balance=A.pos[1])
        return axis
    return _rows_parallel(stage, axis, int(cfg["rows"]))


def schedule_spmv(s, out, A, config=None):
    """Each row's entries summed in ``partials`` independent chains (knob; 1: one
    chain): one chain waits on its adder's latency every entry."""
    cfg = dict(DEFAULTS["spmv"], **(config or {}))
    Y = s[out]
    partials = int(cfg["partials"])
    P = None
    if partials > 1:
        # (the reduction is factored before the rows are split, as rfactor asks)
        (q,) = out.op.reduce_axis
        _, qi = Y.split(q, factor=partials)
        P = s[s.rfactor(out, qi, factor_axis=1)]
        row, lane = P.op.axis
        P.reorder(row, *P.op.reduce_axis, lane)
        P.unroll(lane)
    rows = _split_rows(Y, out.op.axis[0], A, cfg)
    if P is not None:
        P.compute_at(Y, rows)


def schedule_spmm(s, out, A, config=None):
    """The result row (or a block of ``cols`` of its columns) accumulated over the row's
    entries; ``prefetch``: B's row that many entries ahead."""
    cfg = dict(DEFAULTS["spmm"], **(config or {}))
    C = s[out]
    B = next(t for t in out.op.input_tensors if t.ndim == 2)
    i, c = out.op.axis
    (q,) = out.op.reduce_axis
    lanes = vector_lanes(32)
    width = _extent(c) or lanes
    block = int(cfg["cols"])
    outer = []
    if 0 < block < width:
        cb, c = C.split(c, factor=block)
        outer, width = [cb], block
    co, ci = C.split(c, factor=min(lanes, width) if width >= 4 else width)
    rows = _split_rows(C, i, A, cfg)
    C.reorder(rows, *outer, q, co, ci)
    # B's rows are picked by the column indices: fetch the row a few entries ahead
    ahead = int(cfg["prefetch"])
    if ahead > 0:
        C.prefetch(B, q, ahead)
    if width >= 4:
        C.vectorize(ci)
    if width <= 8 * lanes:
        C.unroll(co)


def schedule_positions(s, out, A, config=None):
    """An output over the stored positions (and the row reductions it reads); a dot
    product per position (SDDMM) in vector lanes, folded once at the end."""
    # (softmax's defaults: the knobs of every position-space result, and its rows)
    cfg = dict(DEFAULTS["sparse_softmax"], **(config or {}))
    block = int(cfg["positions"])
    for stage in s.stages:
        if not isinstance(stage.op, ComputeOp) or stage.op is out.op:
            continue
        _rows_parallel(stage, stage.op.axis[0], int(cfg["rows"]))
    O = s[out]
    lanes = vector_lanes(32)
    partials = None
    if len(out.op.reduce_axis) == 1 and (_extent(out.op.reduce_axis[0]) or 0) >= lanes:
        # (the reduction is factored before the positions are split, as rfactor asks)
        _, ki = O.split(out.op.reduce_axis[0], factor=lanes)
        partials = s[s.rfactor(out, ki, factor_axis=1)]
        p, lane = partials.op.axis
        (ko,) = partials.op.reduce_axis
        partials.reorder(p, ko, lane)
        partials.vectorize(lane)
    position = _rows_parallel(O, out.op.axis[0], block)
    if partials is not None:
        partials.compute_at(O, position)


TEMPLATES = {"spmv": schedule_spmv, "spmm": schedule_spmm, "sddmm": schedule_positions,
             "sparse_mul": schedule_positions, "sparse_softmax": schedule_positions}
