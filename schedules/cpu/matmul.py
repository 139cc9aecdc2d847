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
    B_reads = C.op.input_tensors if C is not None else []
    transposed_b = C is None or len(C.op.axis) != 2 or _reads_b_transposed(C)
    if transposed_b:
        # dense (x @ W.T) and batched products: the generic template until layouts can
        # be packed (a copy in a transposed layout); see the issue notes.
        schedule_generic(s, out, config)
        return
    m, nn = C.op.axis
    (k,) = C.op.reduce_axis
    mco, m_rest = C.split(m, factor=cfg["mc"])
    mo, mi = C.split(m_rest, factor=cfg["mr"])
    no, ni = C.split(nn, factor=cfg["nr"])
    ko, ki = C.split(k, factor=cfg["kc"])
    C.reorder(mco, ko, no, mo, ki, mi, ni)
    panels = s[s.pack(B_reads[1], 1, cfg["nr"], [C.op.output(0)])]
    panels.parallel(panels.op.axis[0])
    panels.vectorize(panels.op.axis[2])
    C.unroll(mi)
    C.vectorize(ni)
    C.parallel(no)
    for stage in s.stages:
        if stage is not C and isinstance(stage.op, ComputeOp) and stage.is_output:
            schedule_stage(stage)


def _reads_b_transposed(C) -> bool:
    """True unless the body reads its second operand as B[k, n]."""
    from tensordsl.ir import nodes as n
    body = C.op.body[0].source[0]
    if not isinstance(body, n.Mul) or not isinstance(body.b, n.TensorRead):
        return True
    k = C.op.reduce_axis[0].var
    return body.b.indices[0] is not k
