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
    epilogue = [st for st in s.stages if isinstance(st.op, ComputeOp) and st is not C]
    schedule_product(s, C, config)   # (adds its packing stages)
    for stage in epilogue:
        if stage.is_output:
            schedule_stage(stage)
        elif not stage.op.reduce_axis:
            stage.compute_inline()   # elementwise stages between C and the output


def is_product(stage) -> bool:
    """Whether a stage is ``C[m, n] = sum_k A[.] * B[.]`` with ``B`` read along ``n``: what
    ``schedule_product`` schedules (also a product inside a larger graph)."""
    return _column_axis(stage) is not None


def schedule_product(s, C, config=None):
    """The micro-kernel nest above for the product stage ``C`` (``is_product``)."""
    cfg = dict(default_config(), **(config or {}))
    column_axis = _column_axis(C)
    *batch, m, nn = C.op.axis
    (k,) = C.op.reduce_axis
    row_parts = None
    if not batch and _few_columns(C, cfg, config or {}):
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
    second = C.op.body[0].source[0].b.tensor
    panels = s[s.pack(second, column_axis, cfg["nr"], [C.op.output(0)])]
    panels.compute_at(C, ko)
    panels.vectorize(panels.op.axis[-1])
    if _row_axis(C) == 1:
        # A read transposed (A[k, m]: the gradient of B): mr rows of C would read mr
        # elements of a different row of A for every k, a page apart; packed once into
        # row panels they are consecutive, as GotoBLAS packs A
        rows = s[s.pack(C.op.body[0].source[0].a.tensor, len(batch) + 1, cfg["mr"],
                        [C.op.output(0)])]
        rows.parallel(rows.op.axis[0])
    C.unroll(ku)
    C.unroll(mi)
    C.vectorize(ni)
    C.parallel(row_parts if row_parts is not None else parallel)


def _few_columns(C, cfg, given) -> bool:
    """Whether the columns make fewer panels than there are threads while the rows are
    many (and the configuration leaves ``nr`` and ``parts`` to the defaults)."""
    if "nr" in given or "parts" in given or cfg["parts"] <= 1:
        return False
    n_extent, m_extent = _extent(C.op.axis[1]), _extent(C.op.axis[0])
    if n_extent is None or m_extent is None:
        return False
    return -(-n_extent // cfg["nr"]) < cfg["parts"] and m_extent >= cfg["parts"] * cfg["mr"]


def _row_axis(C):
    """Which of the last two dimensions of the first operand runs along C's rows (0 for
    A[m, k] or A[b, m, k], 1 for a transposed A[k, m] or A[b, k, m]), or None."""
    from tensordsl.ir import nodes as n
    a = C.op.body[0].source[0].a
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
    from tensordsl.ir import nodes as n
    if C is None or len(C.op.axis) not in (2, 3) or len(C.op.reduce_axis) != 1:
        return None
    body = C.op.body[0].source[0]
    if not isinstance(body, n.Mul) or not isinstance(body.b, n.TensorRead) \
            or len(body.b.indices) != len(C.op.axis):
        return None
    *batch, _, j = (iv.var for iv in C.op.axis)
    k = C.op.reduce_axis[0].var
    *lead, first, second = body.b.indices
    if any(i is not b for i, b in zip(lead, batch)):
        return None
    if first is k and second is j:
        return len(batch) + 1
    if first is j and second is k:
        return len(batch)
    return None
