"""Direct 2-d convolution (NCHW) on the CPU, register-blocked like a matmul micro-kernel.

    parallel for (n, f.outer, y.outer):
      for x.outer:
        for rc, ry, rx:                         # the reduction
          for y.inner, f.inner (unrolled):      # yb rows x fb output channels ...
            out[n, f, y, x.outer*xb : +xb] += w[f, rc, ry, rx] * padded[n, rc, y*s + ry, ...]
                                                # ... times xb output columns (a vector)

The padded input is materialized once, so the hot loop has no boundary checks; a
ragged last column block is shifted inwards (it overlaps the previous block). Knobs: ``fb``, ``yb``, ``xb``.
"""
from __future__ import annotations

from tensordsl.ir import nodes as n
from tensordsl.te.tensor import ComputeOp

from .generic import schedule_generic
from .target import vector_lanes


def _extent(iv) -> int:
    e = iv.dom.extent
    return e.value if isinstance(e, n.IntImm) else 0


def _column_block(width: int, lanes: int) -> int:
    """One full vector, or the power of two covering a narrower row (odd widths make
    LLVM split vectors badly; a ragged tail is predicated instead)."""
    block = lanes
    while block // 2 >= width and block > 4:
        block //= 2
    return block


def schedule_conv2d_nchw(s, out, config=None):
    cfg = config or {}
    conv = next((st for st in s.stages if isinstance(st.op, ComputeOp) and st.op.reduce_axis),
                None)
    if conv is None or len(conv.op.axis) != 4 or len(conv.op.reduce_axis) != 3:
        schedule_generic(s, out, config)
        return
    lanes = vector_lanes(32)
    b, f, y, x = conv.op.axis
    rc, ry, rx = conv.op.reduce_axis
    F, OW = _extent(f), _extent(x)
    fb = cfg.get("fb") or next((c for c in (8, 6, 4, 2, 1) if F % c == 0), 1)
    yb = cfg.get("yb") or (2 if _extent(y) % 2 == 0 else 1)
    xb = cfg.get("xb") or _column_block(OW, lanes)
    fo, fi = conv.split(f, factor=fb)
    yo, yi = conv.split(y, factor=yb)
    # a ragged last block overlaps the previous one instead of running masked
    tail = "shift_inwards" if OW >= xb and OW % xb else "guard"
    xo, xi = conv.split(x, factor=xb, tail=tail)
    conv.reorder(b, fo, yo, xo, rc, ry, rx, yi, fi, xi)
    conv.unroll(yi)
    conv.unroll(fi)
    conv.vectorize(xi)
    conv.parallel(conv.fuse(b, fo, yo))
    for st in s.stages:
        if isinstance(st.op, ComputeOp) and st is not conv and not st.op.reduce_axis:
            if st.is_output:
                continue
            # the padded input: computed once, rows in parallel, vectorized
            *outer, last = st.op.axis
            st.parallel(st.fuse(*outer) if len(outer) > 1 else outer[0])
            st.vectorize(st.split(last, factor=lanes)[1])
