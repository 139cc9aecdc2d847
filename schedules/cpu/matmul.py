"""Matrix multiplication on the CPU: packed B micro-panels and a register-blocked kernel.

For ``C[m, n] = sum_k A[m, k] * B[k, n]`` the loops are

    parallel for no:            # a column panel of nr columns
      for ko:                   # a block of kc rows of B ...
        pack B[ko*kc : +kc, no*nr : +nr] contiguously (cache_read computed here)
        for mo:                 # mr rows of C
          for ki:               # the micro-kernel: mr x nr accumulators stay in registers
            for mi (unrolled):
              C[mo*mr+mi, no*nr : +nr] += A[mo*mr+mi, ko*kc+ki] * packedB[ki, 0:nr]  (vector)

Knobs: ``mr``, ``nr`` (a multiple of the vector width), ``kc``.
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import schedule_generic, schedule_stage
from .target import vector_lanes


def default_config() -> dict:
    lanes = vector_lanes(32)
    return {"mr": 6, "nr": 2 * lanes, "kc": 256}


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
    mo, mi = C.split(m, factor=cfg["mr"])
    no, ni = C.split(nn, factor=cfg["nr"])
    ko, ki = C.split(k, factor=cfg["kc"])
    C.reorder(no, ko, mo, ki, mi, ni)
    B = B_reads[1]
    packed = s.cache_read(B, "global", [C.op.output(0)])
    s[packed].compute_at(C, ko)
    s[packed].vectorize(s[packed].op.axis[1])
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
