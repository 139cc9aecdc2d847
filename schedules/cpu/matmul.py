"""Matrix multiplication on the CPU: packed B panels, a register-blocked micro-kernel and
one parallel region.

For ``C[m, n] = sum_k A[m, k] * B[k, n]`` (GotoBLAS's blocking, with the team split over
column blocks so that each thread packs and reads only its own part of B):

    parallel for no.outer:            # one column block per thread
      for ko:                         # kc of the reduction
        pack Bp[no.inner, ki, 0:nr] = B[ko*kc + ki, panel columns]   # per-thread workspace
        for mco:                      # mc rows: A's mc x kc block stays in L2
          for no.inner:               # a kc x nr panel of Bp: stays in L1 across mo
            for mo:                   # mr rows of C
              for ki, ku (unrolled):  # the micro-kernel: mr x nr accumulators in registers
                for mi (unrolled):
                  C[mo*mr+mi, 0:nr] += A[mo*mr+mi, ko*kc+ki] * Bp[no.inner, ki, 0:nr]

The accumulators start from zero and are added to C after the ki loop, with C's lines
prefetched before it (the ``local_accumulators`` pass), so C's loads never stall the FMAs.
Packing A as well (row panels) measured no faster here: A's rows stream well from L2;
a transposed A (``A[k, m]``, the gradient of B) is packed once, its rows a page apart.

Knobs: ``mc`` (a multiple of ``mr``), ``mr``, ``nr`` (a multiple of the vector width),
``kc``, ``ku`` (unrolling of ki), ``parts`` (column blocks run in parallel; default: one per thread). Ragged edges
are handled by guard unswitching and predicated vectors, so any shape works.
"""
from __future__ import annotations

from tensordsl.arith.simplify import const_int
from tensordsl.te.tensor import ComputeOp

from .generic import _extent, schedule_generic, schedule_stage
from .target import num_threads, vector_lanes


def default_config() -> dict:
    lanes = vector_lanes(32)
    if lanes == 16:
        # 6 x 4 zmm accumulators: 10 loads per 24 FMAs (12 x 2 needs 14), measured ~4% faster
        mr, nr = 6, 4 * lanes
    else:
        mr, nr = 6, 2 * lanes  # 12 of 16 ymm registers
    return {"mc": 6 * mr, "mr": mr, "nr": nr, "kc": 256, "ku": 2, "parts": num_threads()}


def _reduction_stage(s):
    for stage in s.stages:
        if isinstance(stage.op, ComputeOp) and stage.op.reduce_axis:
            return stage
    return None


def schedule_matmul(s, out, config=None):
    C = _reduction_stage(s)
    if _column_axis(C) is None:
        # batched products and unusual bodies: the generic template
        schedule_generic(s, out, config)
        return
    transposed = computes_transposed(C, config or {})
    if transposed:
        # C's transpose computed (W x^T: W's rows are the product's rows, x packed), C
        # read from it transposed by the stage that writes the result
        C = s[s.cache_write(C.op.output(0), "global", layout=(1, 0))]
    epilogue = [st for st in s.stages if isinstance(st.op, ComputeOp) and st is not C]
    # (transposed: the threads split W's rows, so that each reads its part of W once)
    schedule_product(s, C, config, split_rows=transposed)   # (adds its packing stages)
    for stage in epilogue:
        if stage.is_output:
            schedule_stage(stage)
        elif not stage.op.reduce_axis:
            stage.compute_inline()   # elementwise stages between C and the output


# A product of few rows by a transposed second operand (a linear layer's x W^T at batch
# or sequence 128 and below): C^T = W x^T packs x (small) where C packs W's columns into
# panels by gathers (one element a load, which the few rows of C cannot amortize). C^T's
# columns are C's rows: whole panels of them (``nr``) or one part-filled panel. Measured
# here, 2 threads, default configurations (C, then C^T): 128x768x3072 2.80 -> 2.00 ms,
# 128x3072x768 2.56 -> 2.30, 128x768x768 0.578 -> 0.499, 64x1024x1024 0.80 -> 0.47,
# 32x2048x2048 2.53 -> 1.01, 1x768x768 0.103 -> 0.081; but 96x768x768 0.466 -> 0.51,
# 160 and 192 rows 8-11% slower, 256x512x2048 1.83 -> 2.66, 128x256x1024 0.247 -> 0.294
TRANSPOSE_MIN_ELEMENTS = {1: 1 << 16, 2: 1 << 19}    # of W, by C^T's column panels


def computes_transposed(C, config: dict) -> bool:
    """Whether the template computes C's transpose (knob ``transpose``; by default for
    a non-batched product whose second operand is read transposed, as dense's weight,
    with at most one panel of rows, or two full ones, and a weight of
    ``TRANSPOSE_MIN_ELEMENTS`` at least)."""
    if len(C.op.axis) != 2:
        return False
    if "transpose" in config:
        return bool(config["transpose"])
    m, nn = (_extent(iv) for iv in C.op.axis)
    k = _extent(C.op.reduce_axis[0])
    if m is None or nn is None or k is None or _column_axis(C) != 0:
        return False
    nr = dict(default_config(), **config)["nr"]
    panels = -(-m // nr)
    if panels == 2 and m % nr:
        return False
    return nn * k >= TRANSPOSE_MIN_ELEMENTS.get(panels, float("inf"))


def is_product(stage) -> bool:
    """Whether a stage is ``C[m, n] = sum_k A[.] * B[.]`` with ``B`` read along ``n``: what
    ``schedule_product`` schedules (also a product inside a larger graph)."""
    return _column_axis(stage) is not None


def schedule_product(s, C, config=None, split_rows: bool = False):
    """The micro-kernel nest above for the product stage ``C`` (``is_product``);
    ``split_rows``: the threads take C's rows, not its column panels."""
    cfg = dict(default_config(), **(config or {}))
    column_axis = _column_axis(C)
    *batch, m, nn = C.op.axis
    (k,) = C.op.reduce_axis
    row_parts = None
    if not batch and (split_rows and cfg["parts"] > 1 or _few_columns(C, cfg, config or {})):
        # fewer column panels than threads (a classifier's 10 outputs): one narrow
        # panel, the threads split the rows instead
        lanes = vector_lanes(32)
        cfg["nr"] = min(cfg["nr"], -(-_extent(nn) // lanes) * lanes)
        row_parts, m = C.split(m, nparts=cfg["parts"])
        cfg["parts"] = 1
    mco, m_rest = C.split(m, factor=cfg["mc"])
    mo, mi = C.split(m_rest, factor=cfg["mr"])
    no, ni = C.split(nn, factor=cfg["nr"])
    block, no_inner = C.split(no, nparts=max(1, cfg["parts"]))
    ko, ki = C.split(k, factor=cfg["kc"])
    ki, ku = C.split(ki, factor=max(1, cfg["ku"]))
    C.reorder(*([row_parts] if row_parts is not None else []), *batch, block, ko, mco,
              no_inner, mo, ki, ku, mi, ni)
    # a batched product: the products (and their column blocks) in parallel
    parallel = C.fuse(*batch, block) if batch else block
    first, second = _operands(C)
    panels = s[s.pack(second.tensor, column_axis, cfg["nr"], [C.op.output(0)])]
    panels.compute_at(C, ko)
    lanes = vector_lanes(32)
    rows_of_k = column_axis < len(panels.op.axis) - 2   # B[n, k]: a panel gathers a column
    if rows_of_k and (const_int(second.tensor.shape[-1]) or 1) % lanes == 0:
        # a vector of each of the panel's rows (consecutive k) read and stored across
        # the panel's k rows, where a vector of the panel (one k, nr rows of B a row
        # apart) was a gather: BERT's 3072 -> 768 linear layer 1.3x faster, 768 -> 768
        # 1.1x; rows of a length off the vector (1000) split their loads across cache
        # lines and pack faster by the gather (1.1x)
        *lead, pk, pn = panels.op.axis
        pko, pki = panels.split(pk, factor=lanes)
        panels.reorder(*lead, pko, pn, pki)
        panels.vectorize(pki)
    else:
        panels.vectorize(panels.op.axis[-1])
    if _row_axis(C) == 1:
        # A read transposed (A[k, m]: the gradient of B): mr rows of C would read mr
        # elements of a different row of A for every k, a page apart; packed once into
        # row panels they are consecutive, as GotoBLAS packs A
        rows = s[s.pack(first.tensor, len(batch) + 1, cfg["mr"], [C.op.output(0)])]
        rows.parallel(rows.op.axis[0])
    C.unroll(ku)
    C.unroll(mi)
    C.vectorize(ni)
    C.parallel(row_parts if row_parts is not None else parallel)


def _few_columns(C, cfg, given) -> bool:
    """Whether the threads split C's rows in one narrow panel (knob ``row_split``; by
    default when the columns make fewer panels of ``nr`` than there are threads while
    the rows are many). The rule reads ``nr`` and ``parts`` whether given or defaulted,
    so the defaults spelled out (a tuning's first trial) build the kernel that runs
    without a record."""
    if "row_split" in given:
        return bool(given["row_split"]) and cfg["parts"] > 1
    if cfg["parts"] <= 1:
        return False
    n_extent, m_extent = _extent(C.op.axis[1]), _extent(C.op.axis[0])
    if n_extent is None or m_extent is None:
        return False
    return -(-n_extent // cfg["nr"]) < cfg["parts"] and m_extent >= cfg["parts"] * cfg["mr"]


def _row_axis(C):
    """Which of the last two dimensions of the first operand runs along C's rows (0 for
    A[m, k] or A[b, m, k], 1 for a transposed A[k, m] or A[b, k, m]), or None."""
    from tensordsl.ir import nodes as n
    operands = _operands(C)
    a = operands[0] if operands else None
    if not isinstance(a, n.TensorRead) or len(a.indices) != len(C.op.axis):
        return None
    *batch, m, _ = (iv.var for iv in C.op.axis)
    k = C.op.reduce_axis[0].var
    *lead, first, second = a.indices
    if any(i is not b for i, b in zip(lead, batch)):
        return None
    if first is m and second is k:
        return 0
    if first is k and second is m:
        return 1
    return None


def _column_axis(C):
    """Which dimension of the second operand runs along C's columns (1 for B[k, n],
    0 for dense's W[n, k]; 2 and 1 for a batched product's B[b, k, n] and B[b, n, k]);
    None if the body is not ``A[.] * B[.]`` over one k, with a batch's operands indexed
    by C's leading axes first."""
    operands = _operands(C)
    return None if operands is None else _axis_along_columns(C, operands[1])


def _operands(C):
    """``(A, B)``: the reads of C's body ``A[.] * B[.]`` (in either order of the
    product), ``B`` the one whose dimensions run along C's columns and the reduction
    (``_column_axis``); None for any other body."""
    from tensordsl.ir import nodes as n
    if C is None or len(C.op.axis) not in (2, 3) or len(C.op.reduce_axis) != 1:
        return None
    body = C.op.body[0].source[0]
    if not isinstance(body, n.Mul):
        return None
    for a, b in ((body.a, body.b), (body.b, body.a)):
        if _axis_along_columns(C, b) is not None:
            return a, b
    return None


def _axis_along_columns(C, b):
    """Which dimension of the read ``b`` runs along C's columns, its other one along
    the reduction and any leading ones along C's batch axes; None if not so."""
    from tensordsl.ir import nodes as n
    if not isinstance(b, n.TensorRead) or len(b.indices) != len(C.op.axis):
        return None
    *batch, _, j = (iv.var for iv in C.op.axis)
    k = C.op.reduce_axis[0].var
    *lead, first, second = b.indices
    if any(i is not v for i, v in zip(lead, batch)):
        return None
    if first is k and second is j:
        return len(batch) + 1
    if first is j and second is k:
        return len(batch)
    return None
