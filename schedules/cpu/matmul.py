"""Matrix multiplication on the CPU: packed B micro-panels and a register-blocked kernel.

For ``C[m, n] = sum_k A[m, k] * B[k, n]`` B is packed into column panels
``Bp[n // nr, k, n % nr]`` (``s.pack``, once per call, in parallel, into reused
workspace), then (GotoBLAS's blocking)

    for mco:                      # mc rows of A: the block stays in L2
      for ko:                     # kc of the reduction
        parallel for no:          # a column panel: Bp[no, ko*kc : +kc, :] is contiguous
          for mo:                 # mr rows of C
            for ki:               # the micro-kernel: mr x nr accumulators in registers
              for mi (unrolled):
                C[mo*mr+mi, no*nr : +nr] += A[mo*mr+mi, ko*kc+ki] * Bp[no, ko*kc+ki, 0:nr]

Packing A as well (row panels) measured slower here: A's rows stream well from L2.

Knobs: ``mc``, ``mr``, ``nr`` (a multiple of the vector width), ``kc``. Ragged edges are
handled by the guard-unswitching pass and predicated vectors, so any shape works.
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import schedule_generic, schedule_stage
from .target import vector_lanes


def default_config() -> dict:
    lanes = vector_lanes(32)
    return {"mc": 256, "mr": 8, "nr": 2 * lanes, "kc": 256}


def _reduction_stage(s):
    for stage in s.stages:
        if isinstance(stage.op, ComputeOp) and stage.op.reduce_axis:
            return stage
    return None


def schedule_matmul(s, out, config=None):
    cfg = dict(default_config(), **(config or {}))
    C = _reduction_stage(s)
    column_axis = _column_axis(C)
    if column_axis is None:
        # batched products and unusual bodies: the generic template
        schedule_generic(s, out, config)
        return
    m, nn = C.op.axis
    (k,) = C.op.reduce_axis
    mco, m_rest = C.split(m, factor=cfg["mc"])
    mo, mi = C.split(m_rest, factor=cfg["mr"])
    no, ni = C.split(nn, factor=cfg["nr"])
    ko, ki = C.split(k, factor=cfg["kc"])
    C.reorder(mco, ko, no, mo, ki, mi, ni)
    second = C.op.body[0].source[0].b.tensor
    panels = s[s.pack(second, column_axis, cfg["nr"], [C.op.output(0)])]
    panels.parallel(panels.op.axis[0])
    panels.vectorize(panels.op.axis[2])
    C.unroll(mi)
    C.vectorize(ni)
    C.parallel(no)
    for stage in s.stages:
        if stage is not C and isinstance(stage.op, ComputeOp) and stage.is_output:
            schedule_stage(stage)


def _column_axis(C):
    """Which dimension of the second operand runs along C's columns (1 for B[k, n],
    0 for dense's W[n, k]); None if the body is not ``A[.] * B[.]`` over one k."""
    from tensordsl.ir import nodes as n
    if C is None or len(C.op.axis) != 2 or len(C.op.reduce_axis) != 1:
        return None
    body = C.op.body[0].source[0]
    if not isinstance(body, n.Mul) or not isinstance(body.b, n.TensorRead) \
            or len(body.b.indices) != 2:
        return None
    j, k = C.op.axis[1].var, C.op.reduce_axis[0].var
    idx = body.b.indices
    if idx[0] is k and idx[1] is j:
        return 1
    if idx[0] is j and idx[1] is k:
        return 0
    return None
