"""GPU templates of the sparse operators (``kernels/sparse.py``), CSR operand ``A``.

Row split (``schedule="rows"``, the default) — CSR-vector SpMV, row-per-warp SpMM::

    blockIdx.x   a block of rows (the last block shifted inwards, see below)
      serial       its ``chunks`` chunks of ``R`` rows, one after another
        threadIdx.y  a chunk's rows, one each
          threadIdx.x  SpMV: ``lanes`` threads (a warp or a sub-warp: ``lanes_for``
                       sizes it from the average row length) stride through the row's
                       entries, then combine their sums with warp shuffles
                       (``AllReduce``); SpMM: ``columns`` dense columns (a block of them
                       at a time), so a row of ``B`` is read coalesced, each thread
                       summing the row's entries for its column in a register

Nonzero split (``schedule="nonzeros"``, TACO's position split): the same threads, but
the groups of rows a block takes under the row split (as many blocks as groups) are
shared by equal parts of the stored entries — ``bind(group, blockIdx.x,
balance=A.pos[1])``: block ``b`` binary-searches ``pos`` for the first group whose
first entry is at least ``b / blocks`` of the way through the entries, and runs the
groups up to the next block's as a loop (``targets/cuda/codegen.py:
balanced_blocks``); a block after a heavy group may get none, a run of light groups
goes to one block. Why this
and not an equal share of *positions* per block with the partial sums of a row split
between blocks added by atomics: a row then belongs to one block, which writes it once,
so the result is the same under any order of the blocks and threads (bit for bit: each
row's sum is taken in the same order whatever the schedule of the threads), needs no
zeroed output and no atomic floating-point adds (whose order, and so whose rounding,
varies from run to run). The price: a row longer than a block's share is still one
block's work (a power-law graph's hub row); the share bounds the work of every other.

The results with ``A``'s pattern (SDDMM, ``sparse_mul``, ``sparse_softmax``'s values)
are computed over the stored positions, which are balanced by construction: ``R``
positions per block on ``threadIdx.y``, SDDMM's dot product over ``f`` on ``lanes``
threads (``threadIdx.x``) combined by shuffles; ``sparse_mul`` one position a thread.
``sparse_softmax``'s row maxima and sums are row reductions scheduled as SpMV's (either
split), each a kernel of its own.

Rows per block: a split of the rows into blocks whose last would run past the end
would read ``pos[i + 1]`` of a row that does not exist to bound its loop over the
entries (the guard ``i < m`` sits inside that loop): the split shifts the last block
inwards instead (``tail="shift_inwards"``: its rows overlap the previous block's and are
computed twice, the same values written twice), which needs ``m`` at least a block's
rows, so ``R`` is at most ``m`` and a block's chunks at most ``m / R``; with a symbolic
``m`` each block takes one row.

Knobs: ``threads`` per block (a multiple of 32), ``lanes`` (SpMV, SDDMM, the softmax
reductions: a power of two up to 32; ``R = threads / lanes``), ``columns`` (SpMM: the
threads over the dense columns; ``R = threads / columns``), ``chunks`` (the row
operators: a block takes ``chunks`` chunks of ``R`` rows one after another, the
nonzero split's shares are then ``chunks`` times longer and its blocks, each searching
``pos`` twice, fewer).
"""
from __future__ import annotations

from tensordsl.ir import nodes as n
from tensordsl.te.api import thread_axis
from tensordsl.te.tensor import ComputeOp

SCHEDULES = ("rows", "nonzeros")
DEFAULT = {"schedule": "rows", "threads": 128, "lanes": 32, "columns": 32, "chunks": 1}


def lanes_for(average_row_length: float) -> int:
    """The threads that share a row's entries: the power of two that covers the
    average row (at least 2, at most a warp), so few lanes idle on short rows."""
    lanes = 2
    while lanes < 32 and lanes < average_row_length:
        lanes *= 2
    return lanes


def _config(config) -> dict:
    cfg = {**DEFAULT, **(config or {})}
    if cfg["schedule"] not in SCHEDULES:
        raise ValueError(f"sparse CUDA template: schedule must be one of {SCHEDULES}, got "
                         f"{cfg['schedule']!r}")
    for knob in ("lanes", "columns"):
        value = cfg[knob]
        if not isinstance(value, int) or value < 1 or value > 32 or value & (value - 1):
            raise ValueError(f"sparse CUDA template: {knob} must be a power of two up to "
                             f"32, got {value!r}")
    if not isinstance(cfg["chunks"], int) or cfg["chunks"] < 1:
        raise ValueError(f"sparse CUDA template: chunks must be a positive int, got "
                         f"{cfg['chunks']!r}")
    threads = cfg["threads"]
    if not isinstance(threads, int) or threads % 32 or not 32 <= threads <= 1024:
        raise ValueError(f"sparse CUDA template: threads must be a multiple of 32 up to "
                         f"1024, got {threads!r}")
    return cfg


def _static(e) -> int | None:
    return e.value if isinstance(e, n.IntImm) else None


def _bind_rows(stage, axis, A, cfg, rows: int):
    """``axis`` (the rows) over blocks of ``chunks`` chunks of ``rows`` rows, a chunk's
    rows on ``threadIdx.y``, the blocks sharing the rows evenly or, for
    ``schedule="nonzeros"``, by the entries in ``A.pos``."""
    balance = A.pos[1] if cfg["schedule"] == "nonzeros" else None
    extent = _static(axis.dom.extent)
    if extent is None:
        rows = span = 1
    else:
        rows = min(rows, extent)
        span = min(rows * cfg["chunks"], extent // max(rows, 1) * rows)
    if span <= 1:      # (also no rows at all: an empty grid)
        stage.bind(axis, thread_axis("blockIdx.x"), balance=balance)
        return
    block, inner = stage.split(axis, factor=span, tail="shift_inwards")
    stage.bind(block, thread_axis("blockIdx.x"), balance=balance)
    if rows > 1:
        row = stage.split(inner, factor=rows)[1] if span > rows else inner
        stage.bind(row, thread_axis("threadIdx.y"))


def _bind_lanes(stage, axis, lanes: int):
    """A reduction over ``lanes`` threads on ``threadIdx.x``, combined by shuffles."""
    if lanes > 1:
        _, lane = stage.split(axis, factor=lanes)
        stage.bind(lane, thread_axis("threadIdx.x"))


def _row_reduction(stage, A, cfg):
    """A stage reducing each row's stored entries (SpMV, the softmax's max and sum)."""
    (q,) = stage.op.reduce_axis
    _bind_rows(stage, stage.op.axis[0], A, cfg, cfg["threads"] // cfg["lanes"])
    _bind_lanes(stage, q, cfg["lanes"])


def schedule_spmv(s, out, A, config=None):
    _row_reduction(s[out], A, _config(config))
    return s


def schedule_spmm(s, out, A, config=None):
    cfg = _config(config)
    # each element's sum in a register (a local stage), stored once
    local = s.cache_write(out, "local")
    C = s[out]
    i, c = out.op.axis
    columns = min(cfg["columns"], _lanes_cover(_static(c.dom.extent)))
    column_block, column = C.split(c, factor=columns)
    _bind_rows(C, i, A, cfg, cfg["threads"] // columns)
    C.bind(column, thread_axis("threadIdx.x"))
    # each thread: its columns one after another, the row's entries for each
    C.reorder(column, column_block)
    s[local].compute_at(C, column_block)
    return s


def schedule_positions(s, out, A, config=None):
    """An output over the stored positions, the row reductions it reads, and the dot
    products per position it reads (SDDMM's)."""
    cfg = _config(config)
    positions = repr(out.op.axis[0].dom.extent)
    for stage in list(s.stages):
        if not isinstance(stage.op, ComputeOp) or stage.op is out.op:
            continue
        if stage.op.reduce_axis and repr(stage.op.axis[0].dom.extent) == positions:
            _over_positions(stage, cfg)     # SDDMM's dot products: a kernel of their own
        elif stage.op.reduce_axis:    # sparse_softmax's row maxima and sums
            _row_reduction(stage, A, cfg)
        else:
            stage.compute_inline()
    _over_positions(s[out], cfg)
    return s


def _over_positions(O, cfg):
    """Positions over the threads of blocks; a dot product per position (one reduction
    axis) over ``lanes`` threads."""
    (p,) = O.op.axis
    if O.op.reduce_axis:
        (k,) = O.op.reduce_axis
        lanes = min(cfg["lanes"], _lanes_cover(_static(k.dom.extent)))
        per_block = cfg["threads"] // lanes
        _bind_lanes(O, k, lanes)
    else:
        per_block = cfg["threads"]
    block, position = O.split(p, factor=per_block)
    O.bind(block, thread_axis("blockIdx.x"))
    O.bind(position, thread_axis("threadIdx.y" if O.op.reduce_axis else "threadIdx.x"))


def _lanes_cover(extent: int | None) -> int:
    """The fewest lanes (a power of two) that cover a constant ``extent``."""
    if extent is None:
        return 32
    lanes = 1
    while lanes < min(extent, 32):
        lanes *= 2
    return lanes


TEMPLATES = {"spmv": schedule_spmv, "spmm": schedule_spmm, "sddmm": schedule_positions,
             "sparse_mul": schedule_positions, "sparse_softmax": schedule_positions}
