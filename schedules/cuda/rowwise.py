"""GPU softmax, log_softmax and layer_norm: one block per row, one kernel in all.

The output's leading axes (the rows) go to ``blockIdx.x`` and its normalized axes to
``threads`` threads. Each row reduction (max, sum, mean, variance) is computed inside
the row's block into shared memory: the threads split the row, accumulate their parts
and combine them with warp shuffles (``AllReduce``); barriers separate the reductions
from their readers. Elementwise stages are inlined.
"""
from __future__ import annotations

import tensordsl as td
from tensordsl.te.tensor import ComputeOp

DEFAULT = {"threads": 128}


def schedule_rowwise(s, out, config=None):
    cfg = {**DEFAULT, **(config or {})}
    threads = cfg["threads"]
    reductions = [st for st in s.stages if isinstance(st.op, ComputeOp) and not st.is_output
                  and st.op.reduce_axis]
    for st in s.stages:
        if isinstance(st.op, ComputeOp) and not st.is_output and not st.op.reduce_axis:
            st.compute_inline()
    red_dims = len(reductions[0].op.reduce_axis) if reductions else 1
    axes = list(out.op.axis)
    rows, cols = axes[:-red_dims], axes[-red_dims:]
    stage = s[out]
    row = stage.fuse(*rows) if len(rows) > 1 else rows[0]
    col = stage.fuse(*cols) if len(cols) > 1 else cols[0]
    _, tx = stage.split(col, factor=threads)
    stage.bind(row, td.thread_axis("blockIdx.x"))
    stage.bind(tx, td.thread_axis("threadIdx.x"))
    for st in reductions:
        st.set_scope("shared")
        st.compute_at(stage, row)
        raxes = st.op.reduce_axis
        red = st.fuse(*raxes) if len(raxes) > 1 else raxes[0]
        _, rtx = st.split(red, factor=threads)
        st.bind(rtx, td.thread_axis("threadIdx.x"))
    return s
