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

A dense window convolution over enough positions (``kernels.dense.CHANNELS_MIN_POSITIONS``),
or a batch's 1x1 over many channels (``CHANNELS_MIN_POINTWISE_REDUCTION``), comes in the
channels form instead (``schedule_conv2d_channels``): output channels in vector lanes,
no column computed past the output's width, strided or not. Knobs: ``pb``, ``nv``.
"""
from __future__ import annotations

from tensordsl.ir import nodes as n
from kernels.dense import FLAT_IN_PLACE_TAG, WINOGRAD_TAG
from tensordsl.te.tensor import ComputeOp

from .generic import schedule_generic
from .target import l2_cache_bytes, num_threads, vector_lanes


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
    """``nr`` cut to the positions rounded up to a power of two of whole vectors: a
    wider tile would only add masked lanes (a 4x4 image's 20 flat positions fill 32
    lanes, not 64), and a tile of 3 vectors (a 6x6 image's 36 positions in 48 lanes)
    made LLVM split each 48-lane operation badly: 20x slower than 64."""
    if positions <= 0:
        return nr
    vectors = 1
    while vectors * lanes < positions:
        vectors *= 2
    return max(lanes, min(int(nr), vectors * lanes))


def panels_per_task(flat, nr: int, panels: int) -> int:
    """How many ``nr``-position panels a task of the flat form packs at once: 4 (or 2)
    where the input's channel planes lie more than a page apart, so long as the packed
    input (channels x taps x positions) fills at most half of L2. A panel packs one
    ``nr``-float run from each channel: b8 1x1 256 -> 64 @56, one run a page, the copy
    stalled on every page (TLB, no prefetch stream); 4 panels: 1.26x faster, 64 -> 64
    1.28x; at @28 (a quarter page a plane) no faster."""
    padded = flat.op.body[0].source[0].a.tensor
    *_, h, w = (_extent_of(d) for d in padded.shape)
    if h * w * 4 <= 4096 or panels < 2:
        return 1
    reduction = 1
    for iv in flat.op.reduce_axis:
        reduction *= _extent(iv)
    return next((t for t in (4, 2) if reduction * nr * t * 4 <= l2_cache_bytes() // 2
                 and panels >= t), 1)


def _extent_of(d) -> int:
    return d.value if isinstance(d, n.IntImm) else 0


def flat_default_config() -> dict:
    lanes = vector_lanes(32)
    return {"mr": 6, "nr": 4 * lanes} if lanes == 16 else {"mr": 6, "nr": 2 * lanes}


# the narrower register tile of the flat form (AVX-512): half the positions, more
# output channels
NARROW_FLAT_TILE = {"mr": 8, "nr": 32}
# ... taken by default where it computes at most this share of the positions the wide
# tile computes (14 x 14 = 196 positions: 224 in tiles of 32, 256 in tiles of 64;
# 1x1 @14 1.05-1.15x faster at batch 1 and 8; 28 x 28, 800 against 832: no faster)
NARROW_FLAT_SHARE = 0.9


def flat_tile(config: dict, positions: int) -> tuple[int, int]:
    """``(mr, nr)``: the knobs where given, else ``flat_default_config``'s, or
    ``NARROW_FLAT_TILE`` where the positions fill its tiles markedly better."""
    wide = flat_default_config()
    mr, nr = config.get("mr"), config.get("nr")
    if mr is None and nr is None and positions > 0 and \
            NARROW_FLAT_TILE["nr"] < wide["nr"] and NARROW_FLAT_TILE["nr"] % vector_lanes(32) == 0:
        def computed(width):
            return -(-positions // width) * width
        if computed(NARROW_FLAT_TILE["nr"]) <= NARROW_FLAT_SHARE * computed(wide["nr"]):
            return NARROW_FLAT_TILE["mr"], NARROW_FLAT_TILE["nr"]
    return int(mr or wide["mr"]), int(nr or wide["nr"])


def schedule_conv2d_flat(s, out, flat, config=None):
    """The padded-width form (kernels.dense._conv2d_nchw_flat): a matmul-like micro-kernel
    of ``mr`` output channels (broadcast weights) by ``nr`` positions (vectors of the
    input run), every tap unrolled, accumulating over input channels in registers.

        parallel for (b, p.outer, f.outer):
            for rc:                                  # local accumulators over rc
              for ry, rx, f.inner (unrolled):
                flat[b, f, p.outer*nr : +nr] += kernel[f, rc, ry, rx] * padded[run + tap : +nr]

    With enough tasks each packs its input run (``pack``), ``tb`` panels of ``nr``
    positions at once (``panels_per_task``). The padded input and the cropped output
    are row-parallel vectorized copies; a 1x1 computed in the output's place (``form=
    "auto"``) has neither. Knobs: ``mr``, ``nr``, ``pack``, ``tb``."""
    cfg = dict(config or {})
    lanes = vector_lanes(32)
    b, f, *rows = flat.op.axis
    # (the form computed in the output's place: its (y, x) flattened again)
    p = flat.fuse(*rows) if len(rows) > 1 else rows[0]
    rc, ry, rx = flat.op.reduce_axis
    mr, nr = flat_tile(cfg, _extent(p))
    po, pi = flat.split(p, factor=fit_positions(nr, _extent(p), lanes))
    fo, fi = flat.split(f, factor=mr)
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
        tb = cfg.get("tb") or panels_per_task(flat, _extent(pi), _extent(po))
        if tb > 1:
            pt, pin = flat.split(po, factor=tb)
            flat.reorder(b, pt, pin, fo)
            po = pt
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


# the register tile of the channels form: positions x vectors of channels, 24 of 32 zmm
# registers (7 x 4 left too few for the weights and a broadcast: LLVM spilled
# accumulators, 1.3x slower), 12 of 16 ymm
CHANNEL_ACCUMULATORS = {16: 24, 8: 12}
# below this many multiply-adds an accumulator, a tile's write-back (its positions x
# channels stored transposed, element by element) costs as much as its reduction: the
# tile is 4 positions (a 4-float run per channel) by one vector (the 7x7 stem, 3 x 49:
# 1.21x at batch 1, 1.26x at batch 8 over 6 x 4)
SMALL_REDUCTION = 256
SMALL_REDUCTION_TILE = (4, 1)
# fewer (batch, channel block) tasks than this many per thread: the positions are split
# among the threads as well (b1 64 -> 64 @56 is one block of 64 channels)
CHANNEL_TASKS_PER_THREAD = 4


def channel_tile(config: dict, reduction: int, channels: int,
                 positions: int = 0, images: int = 1, taps: int = 9) -> tuple[int, int]:
    """``(pb, nv)``: the knobs where given, else ``nv`` 4 vectors where their panel of
    packed weights (``reduction`` x 4 vectors) fits in L2, 2 where not (b8 512 -> 512
    @7: a 1.2 MB panel came from L3 for every tile, 1.1x slower; one vector is slower
    still: a broadcast per multiply-add), and ``pb`` the positions that fill
    ``CHANNEL_ACCUMULATORS`` with it, or fewer (down to half) where that divides an
    image's ``positions`` into tiles with less left over (by more than 2%): a 7 x 7
    image's 49 positions are 5 tiles of 12 (60 computed) or 7 tiles of 7. A reduction
    under ``SMALL_REDUCTION`` takes ``SMALL_REDUCTION_TILE`` unless either knob is given.
    Where 4 vectors leave too few (image, channel block) tasks to share among the
    threads and 2 still make two blocks, 2: more channel blocks rather than an image's
    positions split among the threads (b1 256 -> 256 @14: 1.19x), and a tile of twice
    the positions reads each packed weight for twice the work. A 1x1 (``taps`` 1)
    takes 2 too: each step of its reduction reads a new vector of weights from L2 and
    new inputs for the tile's positions, which twice the positions use for twice the
    work (b8 1024->256 @14: 1.1x)."""
    lanes = vector_lanes(32)
    if reduction < SMALL_REDUCTION and not config.get("nv") and not config.get("pb"):
        return SMALL_REDUCTION_TILE
    nv = config.get("nv")
    if nv is None:
        nv = 4 if reduction * 4 * lanes * 4 <= l2_cache_bytes() and taps > 1 else 2
        if nv == 4 and channels >= 8 * lanes and \
                images * -(-channels // (4 * lanes)) < CHANNEL_TASKS_PER_THREAD * num_threads():
            nv = 2
    nv = max(1, min(int(nv), -(-channels // lanes)))   # no wider than the channels
    pb = config.get("pb")
    if not pb:
        widest = max(1, CHANNEL_ACCUMULATORS.get(lanes, 12) // nv)
        tiles = range(widest, (widest - 1) // 2, -1)
        least = min(-(-positions // t) * t for t in tiles) if positions > 0 else 0
        # (the widest within 2% of the least computed: a narrower tile loads more per FMA)
        pb = next(t for t in tiles if -(-positions // t) * t <= least * 1.02)
    return int(pb), nv


def schedule_conv2d_channels(s, out, vec, config=None):
    """The channels form (``kernels.dense._conv2d_nchw_channels``): output channels in
    vector lanes, a register tile of ``pb`` positions by ``nv`` vectors of channels,
    the weights packed so that a tap's ``nv`` vectors are contiguous:

        pack wp[f.outer, c, ry, rx, 0:nv*lanes] = kernel[f.outer block, c, ry, rx]
        parallel for (f.outer, b, [q.part]):
          for q.outer:                                # pb positions
            acc[pb, nv*lanes] = 0                     # registers
            for rc, ry, rx (taps unrolled):
              for q.inner, v (unrolled):
                acc[q.inner, v] += padded[b, rc, row(q), col(q)] * wp[f.outer, rc, ry, rx, v]
            vec[b, f.outer block, q.outer block] = acc   # transposed: channels are rows

    A thread's consecutive tasks share their panel of packed weights (C x taps x
    nv*lanes), from L2 (``channel_tile``). Knobs: ``pb``, ``nv``."""
    lanes = vector_lanes(32)
    b, f, q = vec.op.axis
    rc, ry, rx = vec.op.reduce_axis
    F, positions = _extent(f), _extent(q)
    pb, nv = channel_tile(config or {}, _extent(rc) * _extent(ry) * _extent(rx), F,
                          positions, _extent(b) or 1, _extent(ry) * _extent(rx))
    block = nv * lanes
    pb = min(pb, positions or pb)
    weights = vec.op.body[0].source[0].b.tensor
    packed = s[s.pack(weights, 0, block, [vec.op.output(0)])]
    acc = s[s.cache_write(vec.op.output(0), "local", layout=(0, 2, 1))]
    fo, fi = vec.split(f, factor=block)
    qo, qi = vec.split(q, factor=pb)
    tasks = (_extent(b) or 1) * -(-F // block)
    parts = -(-CHANNEL_TASKS_PER_THREAD * num_threads() // tasks)
    if parts > 1 and positions and positions >= 2 * pb:
        qpart, qo = vec.split(qo, nparts=min(parts, positions // pb))
        vec.reorder(fo, b, qpart, qo, fi, qi)
        task = vec.fuse(fo, b, qpart)
    else:
        vec.reorder(fo, b, qo, fi, qi)
        task = vec.fuse(fo, b)
    vec.parallel(task)
    acc.compute_at(vec, qo)
    _, aq, af = acc.op.axis
    arc, ary, arx = acc.op.reduce_axis
    au, al = acc.split(af, factor=lanes)
    acc.reorder(arc, ary, arx, aq, au, al)
    if _extent(ry) * _extent(rx) <= MAX_UNROLLED_TAPS:
        acc.unroll(ary)
        acc.unroll(arx)
    acc.unroll(aq)
    acc.unroll(au)
    acc.vectorize(al)
    # the pack reads a filter's taps of one channel as a run (they are contiguous in the
    # kernel) and writes them within one channel's block of the panel; its natural
    # order read one element of each of the block's filters a kernel row apart (b8
    # 512 -> 512 @7: a 9.4 MB kernel packed in 1.1 ms, then 0.5)
    po, pc, py, px, pv = packed.op.axis
    packed.reorder(po, pc, pv, py, px)
    if _extent(py) * _extent(px) <= MAX_UNROLLED_TAPS:
        packed.unroll(py)
        packed.unroll(px)
    packed.parallel(po)
    for st in s.stages:
        if isinstance(st.op, ComputeOp) and st.attach_type == "root" and \
                st not in (vec, packed, acc) and not st.op.reduce_axis:
            # the padded input and the copy out: rows in parallel, vectorized
            *rows, last = st.op.axis
            st.parallel(st.fuse(*rows[:2]) if len(rows) > 1 else rows[0])
            st.vectorize(st.split(last, factor=lanes)[1])


def schedule_conv2d_winograd(s, out, config=None):
    """Winograd's form (``kernels.dense._conv2d_nchw_winograd``): the 16 products by the
    matmul template (``schedule_product``: knobs ``mr``, ``nr``, ``mc``, ``kc``), the
    transforms vectorized along channels (the kernel's) and tiles (the input's), the
    16 entries of a tile unrolled so that each reads the elements it needs."""
    from .matmul import schedule_product
    lanes = vector_lanes(32)
    stages = {st.op.name.rsplit(".", 1)[-1]: st for st in s.stages
              if isinstance(st.op, ComputeOp)}
    U, V, M = (stages[k] for k in ("winograd_kernel", "winograd_input", "winograd_product"))
    for transform in (U, V):
        # (t, rows in parallel, a vector of the last axis): the 16 entries unrolled
        entry, rows, last = transform.op.axis
        lo, li = transform.split(last, factor=lanes)
        transform.reorder(rows, lo, entry, li)
        transform.unroll(entry)
        transform.vectorize(li)
        transform.parallel(rows)
    schedule_product(s, M, {k: v for k, v in (config or {}).items()
                            if k in ("mr", "nr", "mc", "kc", "ku")})
    # the output a vector of tiles along a row at a time (consecutive in the products),
    # the tile's 2 x 2 outputs unrolled: each a vector stored every other column
    O = s[out]
    b, f, y, x = O.op.axis
    yo, yi = O.split(y, factor=2)
    tx, xi = O.split(x, factor=2)
    txo, txi = O.split(tx, factor=lanes)
    O.reorder(b, f, yo, txo, yi, xi, txi)
    O.unroll(yi)
    O.unroll(xi)
    O.vectorize(txi)
    O.parallel(O.fuse(b, f))
    for st in s.stages:
        if st.op.name.endswith(".pad") and st.attach_type == "root":
            *rows, last = st.op.axis
            st.parallel(st.fuse(*rows[:2]))
            st.vectorize(st.split(last, factor=lanes)[1])


def schedule_conv2d_nchw(s, out, config=None):
    cfg = config or {}
    if out.op.tag == WINOGRAD_TAG:
        schedule_conv2d_winograd(s, out, config)
        return
    vec = next((st for st in s.stages if st.op.name.endswith(".channels")
                and isinstance(st.op, ComputeOp) and len(st.op.reduce_axis) == 3), None)
    if vec is not None:
        schedule_conv2d_channels(s, out, vec, config)
        return
    flat = next((st for st in s.stages if isinstance(st.op, ComputeOp)
                 and (st.op.name.endswith(".flat") or st.op.tag == FLAT_IN_PLACE_TAG)
                 and len(st.op.reduce_axis) == 3), None)
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
