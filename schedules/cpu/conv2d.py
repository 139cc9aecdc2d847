"""2-d convolution (NCHW) on the CPU, register-blocked like a matmul micro-kernel.

Stride-1 dense convolutions (1x1 included: a matrix product over the flattened image)
come in the padded-width form (``schedule_conv2d_flat``); the rest (strided, grouped,
depthwise) directly:

    parallel for (n, y.outer, f.outer):
      for x.outer:
        for rc:                                 # the reduction over input channels
          for ry, rx, y.inner, f.inner (unrolled):   # taps, yb rows x fb channels ...
            out[n, f, y, x.outer*xb : +xb] += w[f, rc, ry, rx] * padded[n, rc, y*s + ry, ...]
                                                # ... times xb output columns (a vector)

The padded input is materialized once, so the hot loop has no boundary checks; a
strided one split by column phases (``kernels.dense._column_phases``), so a vector of
outputs reads consecutive inputs. A ragged last column block is shifted inwards (it
overlaps the previous block); a row narrower than a vector is one masked block. Knobs:
``fb``, ``yb``, ``xb``.
"""
from __future__ import annotations

from tensordsl.ir import nodes as n
from tensordsl.te.tensor import ComputeOp

from .generic import schedule_generic
from .target import num_threads, vector_lanes


# a window of at most this many taps is unrolled (a 7x7 stem's 49 included)
MAX_UNROLLED_TAPS = 49
# the flat form packs each task's input when there are this many tasks per thread (with
# fewer, the channel blocks are split over the threads instead, unpacked)
PACK_TASKS_PER_THREAD = 8


def _extent(iv) -> int:
    e = iv.dom.extent
    return e.value if isinstance(e, n.IntImm) else 0


def _column_block(width: int, lanes: int) -> int:
    """One full vector, or the power of two covering a narrower row (odd widths make
    LLVM split vectors badly; a ragged tail is predicated instead: with the taps
    unrolled its sums stay in registers, and one masked 8-lane block for a 7-wide row
    measured 1.6x two overlapping 4-lane blocks)."""
    block = lanes
    while block // 2 >= width and block > 4:
        block //= 2
    return block


def fit_positions(nr: int, positions: int, lanes: int) -> int:
    """``nr`` cut to the positions rounded up to whole vectors: a wider tile would only
    add masked lanes (a 4x4 image's 20 flat positions fill 32 lanes, not 64)."""
    if positions <= 0:
        return nr
    return max(lanes, min(int(nr), -(-positions // lanes) * lanes))


def flat_default_config() -> dict:
    lanes = vector_lanes(32)
    return {"mr": 6, "nr": 4 * lanes} if lanes == 16 else {"mr": 6, "nr": 2 * lanes}


def schedule_conv2d_flat(s, out, flat, config=None):
    """The padded-width form (kernels.dense._conv2d_nchw_flat): a matmul-like micro-kernel
    of ``mr`` output channels (broadcast weights) by ``nr`` positions (vectors of the
    input run), every tap unrolled, accumulating over input channels in registers.

        parallel for (b, p.outer, f.outer):
            for rc:                                  # local accumulators over rc
              for ry, rx, f.inner (unrolled):
                flat[b, f, p.outer*nr : +nr] += kernel[f, rc, ry, rx] * padded[run + tap : +nr]

    The padded input and the cropped output are row-parallel vectorized copies."""
    cfg = dict(flat_default_config(), **(config or {}))
    lanes = vector_lanes(32)
    b, f, p = flat.op.axis
    rc, ry, rx = flat.op.reduce_axis
    po, pi = flat.split(p, factor=fit_positions(cfg["nr"], _extent(p), lanes))
    fo, fi = flat.split(f, factor=cfg["mr"])
    flat.reorder(b, po, fo, rc, ry, rx, fi, pi)
    for iv in (ry, rx, fi):
        flat.unroll(iv)
    flat.vectorize(pi)
    tasks = _extent(b) * _extent(po)
    pack = cfg.get("pack")
    if pack is None:
        pack = tasks >= PACK_TASKS_PER_THREAD * num_threads()
    if pack:
        # each task's input run (all channels, its positions and taps) copied into one
        # contiguous panel that all its channel blocks read: the channels' runs lie an
        # image apart in the input (b8, 1x1 256->128 @56: 9.7 -> 7.7 ms)
        panel = s[s.cache_read(flat.op.body[0].source[0].a.tensor, "global",
                               [flat.op.output(0)])]
        task = flat.fuse(b, po)
        panel.compute_at(flat, task)
        panel.vectorize(panel.split(panel.op.axis[-1], factor=lanes)[1])
        flat.parallel(task)
    else:
        # the channel blocks in parallel too: a small image (7 x 7: one block of positions)
        # left one thread working; a thread's consecutive blocks share their input, from L2
        flat.parallel(flat.fuse(b, po, fo))
    for st in s.stages:
        if isinstance(st.op, ComputeOp) and st is not flat and st.attach_type == "root":
            *rows, last = st.op.axis
            st.parallel(st.fuse(*rows[:2]))
            st.vectorize(st.split(last, factor=lanes)[1])


def schedule_conv2d_nchw(s, out, config=None):
    cfg = config or {}
    flat = next((st for st in s.stages if st.op.name.endswith(".flat")
                 and isinstance(st.op, ComputeOp) and len(st.op.reduce_axis) == 3), None)
    if flat is not None:
        schedule_conv2d_flat(s, out, flat, config)
        return
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
    # the output-channel blocks inside the row blocks: a thread's consecutive tasks read
    # the same input rows (all channels: 115 KB for 2 rows of 56 x 256), from L2, where
    # channel blocks outermost swept the whole input (3.2 MB at 56 x 56 x 256) once per
    # block
    conv.reorder(b, yo, fo, xo, rc, ry, rx, yi, fi, xi)
    if _extent(ry) * _extent(rx) <= MAX_UNROLLED_TAPS:
        # the window's taps unrolled: the loop over input channels is then the one
        # accumulating, its body only updates, so the sums stay in registers even in a
        # masked block (a row narrower than a vector)
        conv.unroll(ry)
        conv.unroll(rx)
    conv.unroll(yi)
    conv.unroll(fi)
    conv.vectorize(xi)
    conv.parallel(conv.fuse(b, yo, fo))
    for st in s.stages:
        if isinstance(st.op, ComputeOp) and st is not conv and not st.op.reduce_axis:
            if st.is_output:
                continue
            # the padded input: computed once, rows in parallel, vectorized
            *outer, last = st.op.axis
            st.parallel(st.fuse(*outer) if len(outer) > 1 else outer[0])
            st.vectorize(st.split(last, factor=lanes)[1])
