"""GPU conv2d (NCHW). The stride-1 dense form of ``kernels.dense`` (over the padded
width, ``_conv2d_nchw_flat``) is a matmul of the weights (F x C*KH*KW) by shifted runs of
the padded input, and is scheduled like one:

    kernel 1   the padded input (one thread per element)
    kernel 2   flat[b, f, p]: a block per (ty*vm output channels) x (tx*vn positions);
               per slice of ``kc`` input channels, the block stages that slice of the
               weights and the input rows its positions touch (plus the halo) in shared
               memory, then every thread accumulates a vm x vn register block
    kernel 3   the crop to the output width

Other convolutions (strided, grouped, depthwise, 1x1) get the generic template: one
thread per output element.
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import bind_flat, schedule_generic
from .matmul import block_tile, cooperative_fetch

DEFAULT = {"ty": 8, "tx": 16, "vm": 4, "vn": 4, "kc": 4, "threads": 256}


def schedule_conv2d_nchw(s, out, config=None):
    cfg = {**DEFAULT, **(config or {})}
    flat_stage = next((st for st in s.stages if isinstance(st.op, ComputeOp)
                       and st.op.name.endswith(".flat") and len(st.op.reduce_axis) == 3), None)
    if flat_stage is None:
        return schedule_generic(s, out, config)
    flat = flat_stage.op.output(0)
    padded, weights = flat.op.input_tensors[:2]
    if not padded.op.name.endswith(".pad"):
        padded, weights = weights, padded
    bind_flat(s[padded], cfg["threads"])
    bind_flat(s[out], cfg["threads"])

    ty_n, tx_n, vm, vn = cfg["ty"], cfg["tx"], cfg["vm"], cfg["vn"]
    XS = s.cache_read(padded, "shared", [flat])
    WS = s.cache_read(weights, "shared", [flat])
    FL = s.cache_write(flat, "local")
    tx = block_tile(s[flat], ty_n, tx_n, vm, vn)     # (b, f, p): channels x positions
    s[FL].compute_at(s[flat], tx)
    rc, ry, rx = FL.op.reduce_axis
    rco, rci = s[FL].split(rc, factor=cfg["kc"])
    fb, fl, fp = FL.op.axis
    s[FL].reorder(rco, rci, ry, rx, fb, fl, fp)
    s[FL].unroll(fl)
    s[FL].unroll(fp)
    for cache in (XS, WS):
        s[cache].compute_at(s[FL], rco)
        cooperative_fetch(s, cache, tx_n, ty_n)
    return s
