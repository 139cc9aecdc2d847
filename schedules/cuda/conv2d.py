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

NHWC in the implicit-GEMM form (``kernels.dense.conv2d_nhwc(form="implicit_gemm")``) is
the matmul template's, applied to its product of windows by taps
(``schedule_conv2d_nhwc``): tensor cores for float16/bfloat16 in whole tiles.
"""
from __future__ import annotations

from kernels.dense import IMPLICIT_GEMM_TAG
from tensordsl.te.tensor import ComputeOp

from .generic import bind_flat, schedule_generic
from .matmul import (_tensor_core_fits, block_tile, cooperative_fetch, schedule_matmul,
                     tensor_core_config, tensor_core_tiles)

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
        # each thread's 9 gathers of a slice one after another: unrolled, their
        # addresses all live at once spilled registers on sm_90a (80 registers)
        s[cache].pragma(s[cache].leaf_iter_vars[0], "no_unroll")
    return s


def schedule_conv2d_nhwc(s, out, config=None):
    """The implicit-GEMM form: the windows (and the padding) and the taps inlined into
    the matmul template's shared tiles of its product, so each tile gathers its block
    of windows straight from the input, a run of channels per copy (16 bytes of
    float16: a ``cp.async`` that zero-fills where the window leaves the image). On
    tensor cores the output's (image, row, column) are fused into the product's rows,
    which they are in memory, and the accumulators are stored straight into it in its
    type (``tensor_core_tiles``); otherwise one thread per element of the output
    copies the product out.
    ``config``: the matmul template's knobs (``TENSOR_CORE_DEFAULT`` or ``DEFAULT``)
    and ``threads`` for the copy; K slices 64 deep where the windows are a multiple of
    64 long (``kk`` 4: a slice's window offsets are worked out once per 32 HMMA, not
    16, which halves their share of the loop: 3.7-4.7 instructions a HMMA, not 4.1-7.1).
    The direct form gets the generic template."""
    product = next((t for t in out.op.input_tensors
                    if getattr(t.op, "tag", "") == IMPLICIT_GEMM_TAG), None)
    if product is None:
        return schedule_generic(s, out, config)
    windows, taps = product.op.input_tensors[:2]
    for t in (windows, taps, *windows.op.input_tensors):
        if isinstance(t.op, ComputeOp):
            s[t].compute_inline()
    tensor_cores = tensor_core_config(product, config)
    if tensor_cores is not None:
        deeper = {**tensor_cores, "kk": 4}
        if "kk" not in (config or {}) and _tensor_core_fits(product, deeper):
            tensor_cores = deeper
        AS = s.cache_read(windows, "shared", [product])
        BS = s.cache_read(taps, "shared", [product])
        s[product].set_scope("wmma.accumulator")
        *position, channel = out.op.axis
        return tensor_core_tiles(s, out, product, AS, BS, s[out].fuse(*position), channel,
                                 tensor_cores)
    config = dict(config or {})
    schedule_matmul(s, product, config)
    bind_flat(s[out], {**DEFAULT, **config}["threads"])
    return s
