"""CPU templates of the sparse operators (``kernels/sparse.py``).

* Row-split (``schedule="rows"``, the default but for SpMV): the rows in parallel, in blocks of
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
* Sliced rows (``schedule="sliced"``, SpMV's default; ``spmv_sliced`` over the rows as
  sliced ELLPACK, ``tensordsl/sparse/sliced.py``): the slices in parallel by equal shares
  of their steps; a slice's 16 rows in the lanes of a vector, two vectors of partial
  sums across its steps. No horizontal sum and no branch per row: on this machine
  1.2x the row split on the uniform matrix, 1.9-2x on the Barabasi-Albert graph and the
  grid, equal to the nonzero split on R-MAT.
* BSR (SpMV, SpMM): the rows of blocks split as above; a block row's ``r`` rows of the
  result stay in registers across its blocks.
* Position space (the results with the operand's pattern: SDDMM, ``sparse_mul``,
  ``sparse_softmax``): the stored positions by rows (``segment``: each position's row
  is the rows loop's, TACO's coordinate recovery), the rows split as above; SDDMM's dot
  product over ``f`` in vector lanes.

``space(op)`` gives each operator's knobs and the values a tuner tries (``tensordsl tune
spmm --random 4096,4096,0.01 --shape 64``); ``DEFAULTS`` the configuration without
records. Every combination is legal; a knob that does not apply to a configuration
(``rows`` under ``schedule="nonzeros"``, ``cols`` at least the width) is a no-op.

The gradients of these operators (``td.grad``, ``tensordsl/autodiff/segments.py``) have
the same forms and take the same templates (``tensordsl/autodiff/operators.py`` names
them): an adjoint over the stored positions is SDDMM's, an adjoint gathered over a row's
or a column's entries SpMM's or SpMV's (``A.T @ dC`` loops over ``[tpos[j], tpos[j +
1])``; ``schedule="nonzeros"`` balances by whichever prefix sum bounds the loop).
"""
from __future__ import annotations

from tensordsl.sparse.tensor import run_array, strip_casts
from tensordsl.te.tensor import ComputeOp

from .generic import _extent
from .target import vector_lanes

ROW_BLOCK = 16
# SpMV's independent partial sums per row, in the lanes of a vector (``gather``: each
# entry's x by a vector gather, a row's ragged end by a masked one): 8 lanes measured
# 1.1x 4 scalar chains on the uniform matrix (rows of ~41 entries) and 1.2-1.5x on the
# power-law ones and the grid; 16 lanes 0.8x 8 (more of a short row's lanes idle)
PARTIALS = 8
GATHER = 1
# entries ahead whose row of B SpMM fetches (knob ``prefetch``; 0: none). Measured on
# this machine with B in L3 (4096 x 64): 2-8 ahead were 15-20% slower than none
PREFETCH = 0
# SDDMM's dot products computed by blocks of this many stored entries, their lanes summed
# together (``lower/batch_vector_sums.py``): 16 dots of 64 floats take about half the
# vector instructions of 16 trees, but on this machine SDDMM waits on reading Y's rows
# (4096 x 64 at 1%: 0.37-0.38 ms a dot each, 0.40-0.41 by blocks of 16), so a knob
DOT_BLOCK = 1


# sliced SpMV reads its rows from their lanes on one thread up to this many rows: a
# second parallel region costs more than the gathers (4096 rows: 0.5 us alone, 1.2 us
# for the region)
SERIAL_ROWS = 16384
# sliced SpMV's vectors of partial sums per slice: one waits on its adder every step
# (in C on this machine: 18.0 us with one, 16.2 with two)
SLICED_CHAINS = 2
SCHEDULES = ("rows", "nonzeros", "sliced")
# the schedules whose compute is another definition of the operator's (``definition``)
DEFINITIONS = {("spmv", "sliced"): "spmv_sliced"}
ROW_BLOCKS = [4, 8, 16, 32, 64, 128]

DEFAULTS = {
    "spmv": {"schedule": "sliced", "rows": ROW_BLOCK, "partials": PARTIALS, "gather": GATHER},
    "spmm": {"schedule": "rows", "rows": ROW_BLOCK, "prefetch": PREFETCH, "cols": 0},
    # (the positions by rows: the rows split as SpMV's)
    "sddmm": {"schedule": "rows", "rows": ROW_BLOCK, "block": DOT_BLOCK},
    "sparse_mul": {"schedule": "rows", "rows": ROW_BLOCK},
    "sparse_softmax": {"schedule": "rows", "rows": ROW_BLOCK},
}


# the defaults where a derived layout would be made again on every call (``td.ops`` on
# a scipy matrix, converted per call): the row split
DERIVED_LAYOUT_FALLBACK = {"spmv": {"schedule": "rows"}}


def _spaces() -> dict:
    lanes = vector_lanes(32)
    rows = {"schedule": ["rows", "nonzeros"], "rows": ROW_BLOCKS}
    return {
        "spmv": {"schedule": list(SCHEDULES), "rows": ROW_BLOCKS,
                 "partials": [1, 2, 4, 8, 16], "gather": [0, 1]},
        "spmm": {"schedule": ["rows", "nonzeros"], "rows": ROW_BLOCKS,
                 "prefetch": [0, 2, 4, 8],
                 "cols": [0, 2 * lanes, 4 * lanes, 8 * lanes]},
        "sddmm": {**rows, "block": [1, 4, 8, 16]},
        "sparse_mul": dict(rows),
        "sparse_softmax": dict(rows),
    }


def space(op: str) -> dict:
    """{knob: [values]} of operator ``op``'s template."""
    return _spaces()[op]


def default_config(op: str) -> dict:
    return dict(DEFAULTS[op])


def row_form_knobs(op: str) -> tuple[dict, dict]:
    """``(space, defaults)`` of ``op``'s template on its operator's own compute (a
    derived gradient kernel): no schedule that needs another definition."""
    others = {split for (name, split) in DEFINITIONS if name == op}
    space_, defaults = space(op), default_config(op)
    space_["schedule"] = [v for v in space_["schedule"] if v not in others]
    if defaults["schedule"] in others:
        defaults["schedule"] = "rows"
    return space_, defaults


def definition(op: str, config: dict | None) -> str:
    """The name of the compute (``kernels/sparse.py``) ``op``'s template schedules
    under ``config``: the operator's own, or another form of it (SpMV over sliced rows)."""
    split = dict(DEFAULTS[op], **(config or {}))["schedule"]
    return DEFINITIONS.get((op, split), op)


def _rows_parallel(stage, axis, block: int):
    outer, inner = stage.split(axis, factor=block)
    stage.parallel(outer)
    return inner


def _split_rows(stage, axis, A, cfg, starts=None):
    """The row loop, parallel: by row blocks, or by equal shares of the nonzeros (by the
    prefix sum ``starts`` of the loop's runs of entries; ``A.pos[1]``, a row's)."""
    if cfg["schedule"] == "nonzeros":
        stage.parallel(axis, balance=A.pos[1] if starts is None else starts)
        return axis
    if cfg["schedule"] != "rows":
        raise ValueError(f"schedule: expected rows or nonzeros here (sliced is SpMV's "
                         f"alone), got {cfg['schedule']!r}")
    return _rows_parallel(stage, axis, int(cfg["rows"]))


def _run_starts(op, A):
    """The prefix sum whose reads bound ``op``'s loop over entries: ``A.pos[1]`` for a
    row's, the transpose's ``tpos`` for a column's (a gradient's ``A.T @ y``)."""
    lo = op.reduce_axis[0].dom.min if op.reduce_axis else None
    starts = run_array(lo) if lo is not None else None
    if starts is not None and strip_casts(lo).indices[0] is op.axis[0].var:
        return starts.output(0)
    return A.pos[1]


def schedule_spmv(s, out, A, config=None):
    """Each row's entries summed in ``partials`` independent chains (knob; 1: one
    chain): one chain waits on its adder's latency every entry. With ``gather`` (knob)
    the chains are a vector's lanes, x read by gathers, the row's ragged end masked
    (its partial sums stay in registers: ``local_accumulators``), the lanes summed
    once per row; else unrolled scalar chains. BSR: a block row's ``r`` sums side by
    side, each block's ``r x c`` products unrolled."""
    cfg = dict(DEFAULTS["spmv"], **(config or {}))
    Y = s[out]
    if cfg["schedule"] == "sliced":
        if _sliced_lanes(out) is not None:
            _schedule_sliced(s, out, A)
            return
        # a sum over a row's entries in its own form (a gradient's A.T @ y): split rows
        cfg["schedule"] = "rows"
    if A.format.block:
        ib, ii = out.op.axis
        q, jj = out.op.reduce_axis
        rows = _split_rows(Y, ib, A, cfg)
        Y.reorder(rows, q, ii, jj)
        r, c = A.format.block
        if r * c <= 64:
            Y.unroll(ii)
            Y.unroll(jj)
        return
    starts = _run_starts(out.op, A)
    partials = int(cfg["partials"])
    P = None
    if partials > 1:
        # (the reduction is factored before the rows are split, as rfactor asks)
        (q,) = out.op.reduce_axis
        _, qi = Y.split(q, factor=partials)
        P = s[s.rfactor(out, qi, factor_axis=1)]
        row, lane = P.op.axis
        P.reorder(row, *P.op.reduce_axis, lane)
        if int(cfg["gather"]) and partials >= 4:
            P.vectorize(lane)      # the chains in vector lanes: x gathered
            Y.vectorize(Y.op.reduce_axis[0])
        else:
            P.unroll(lane)
    rows = _split_rows(Y, out.op.axis[0], A, cfg, starts)
    if P is not None:
        P.compute_at(Y, rows)


def _sliced_lanes(out):
    """The stage of ``spmv_sliced``'s sums by lane that ``out`` reads, or None (another
    form of SpMV)."""
    return next((t for t in out.op.input_tensors if isinstance(t.op, ComputeOp)
                 and t.op.name.endswith(".lanes")), None)


def _schedule_sliced(s, out, A):
    """``spmv_sliced``: the slices in parallel, an equal share of the steps each; a
    slice's lanes one vector across its steps (in a register: ``local_accumulators``),
    x gathered; then the rows read from their lanes, by vectors."""
    L = s[_sliced_lanes(out)]
    (step,) = L.op.reduce_axis
    _, chain = L.split(step, factor=SLICED_CHAINS)
    P = s[s.rfactor(L.op.output(0), chain, factor_axis=1)]
    slices, chain, lane = P.op.axis
    P.reorder(slices, *P.op.reduce_axis, chain, lane)
    P.unroll(chain)
    P.vectorize(lane)
    slices, lane = L.op.axis
    L.parallel(slices, balance=A.sliced()["spos"])
    L.reorder(slices, *L.op.reduce_axis, lane)
    L.vectorize(lane)
    P.compute_at(L, slices)
    Y = s[out]
    rows, row = Y.split(out.op.axis[0], factor=vector_lanes(32))
    if _extent(out.op.axis[0]) > SERIAL_ROWS:
        Y.parallel(rows)
    Y.vectorize(row)


def schedule_spmm(s, out, A, config=None):
    """The result row (or a block of ``cols`` of its columns) accumulated over the row's
    entries; ``prefetch``: B's row that many entries ahead."""
    cfg = dict(DEFAULTS["spmm"], **(config or {}))
    C = s[out]
    *i, c = out.op.axis
    q, *jj = out.op.reduce_axis
    lanes = vector_lanes(32)
    width = _extent(c) or lanes
    block = int(cfg["cols"])
    outer = []
    if 0 < block < width:
        cb, c = C.split(c, factor=block)
        outer, width = [cb], block
    co, ci = C.split(c, factor=min(lanes, width) if width >= 4 else width)
    rows = _split_rows(C, i[0], A, cfg, _run_starts(out.op, A))
    # BSR: a block row's r rows of the result across the block's c rows of B
    C.reorder(rows, *outer, q, *jj, *i[1:], co, ci)
    if A.format.block and A.format.block[0] <= 8:
        C.unroll(i[1])
    # B's rows are picked by the column indices: fetch the row a few entries ahead
    ahead = int(cfg["prefetch"])
    if ahead > 0:
        B = next(t for t in out.op.input_tensors if t.ndim == 2)
        C.prefetch(B, q, ahead)
    if width >= 4:
        C.vectorize(ci)
    if width <= 8 * lanes:
        C.unroll(co)


def schedule_positions(s, out, A, config=None):
    """An output over the stored positions (and the row reductions it reads): the
    positions by rows (``segment``: a position's row is the loop's, its dense row read
    once per row, not per entry), the rows split like SpMV's. SDDMM's dot products over
    all of ``f`` in vector lanes, by blocks of ``block`` (knob) stored entries of a row:
    the block's dots summed together (``batch_vector_sums``) and the block's results
    scaled and stored as one vector; ``block`` 1: a dot per entry, summed as a tree."""
    cfg = dict(DEFAULTS["sparse_mul"], **(config or {}))     # (the same for each of them)
    O = s[out]
    rows, position = O.segment(out.op.axis[0], A.pos[1])
    _split_rows(O, rows, A, cfg)
    # other results over the positions (SDDMM's dot products), computed where used
    at_positions = [stage for stage in s.stages if isinstance(stage.op, ComputeOp)
                    and stage.op is not out.op and repr(stage.op.axis[0].dom.extent)
                    == repr(out.op.axis[0].dom.extent)]
    block = int(cfg.get("block", DOT_BLOCK)) if at_positions else 1
    at = position
    if block > 1:
        at, entries = O.split(position, factor=block)
        O.vectorize(entries)
    for stage in s.stages:
        if stage in at_positions:
            stage.compute_at(O, at)
            _dot_in_lanes(stage)
            if block > 1:
                stage.unroll(stage.op.axis[0])
        elif isinstance(stage.op, ComputeOp) and stage.op is not out.op:
            _split_rows(stage, stage.op.axis[0], A, cfg)
    _dot_in_lanes(O)


def _dot_in_lanes(stage):
    """A sum over ``f`` (one reduction axis) in vector lanes: all of it at once where it
    fits (a power of two up to 64: one tree of adds per position), else by vectors."""
    if len(stage.op.reduce_axis) != 1 or stage.op.body[0].combiner.name != "sum":
        return
    (k,) = stage.op.reduce_axis
    width = _extent(k) or 0
    if width >= 4 and width & (width - 1) == 0 and width <= 64:
        stage.vectorize(k)
    elif width >= 2 * vector_lanes(32):
        _, ki = stage.split(k, factor=vector_lanes(32))
        stage.vectorize(ki)


TEMPLATES = {"spmv": schedule_spmv, "spmm": schedule_spmm, "sddmm": schedule_positions,
             "sparse_mul": schedule_positions, "sparse_softmax": schedule_positions}
