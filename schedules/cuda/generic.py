"""The GPU template for any operator without its own (elementwise ops, pooling,
reductions, direct convolution).

Elementwise producers are inlined. Every other stage becomes a kernel of its own: its
output elements are flattened and dealt out to ``threads`` threads per block, each
thread running its element's reduction loops. An output with no data-parallel axis (a
full reduction) is reduced by one block, the reduction split across its threads and
combined with warp shuffles.
"""
from __future__ import annotations

import tensordsl as td
from tensordsl.te.tensor import ComputeOp

DEFAULT = {"threads": 256}


def schedule_generic(s, out, config=None):
    cfg = {**DEFAULT, **(config or {})}
    for stage in s.stages:
        if not isinstance(stage.op, ComputeOp) or stage.is_output:
            continue
        if stage.op.reduce_axis or stage.op.num_outputs > 1:
            bind_flat(stage, cfg["threads"])
        else:
            stage.compute_inline()
    for op in s.outputs:
        bind_flat(s[op], cfg["threads"])
    return s


def bind_flat(stage, threads: int):
    op = stage.op
    if not op.axis:
        red = stage.fuse(*op.reduce_axis) if len(op.reduce_axis) > 1 else op.reduce_axis[0]
        _, tx = stage.split(red, factor=min(threads, 1024))
        stage.bind(tx, td.thread_axis("threadIdx.x"))
        return
    fused = stage.fuse(*op.axis) if len(op.axis) > 1 else op.axis[0]
    bx, tx = stage.split(fused, factor=threads)
    stage.bind(bx, td.thread_axis("blockIdx.x"))
    stage.bind(tx, td.thread_axis("threadIdx.x"))
