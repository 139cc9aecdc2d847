"""GPU matmul (and batch_matmul, dense): shared-memory tiles, a register block per thread.

One block computes a ``(ty*vm) x (tx*vn)`` tile of C; each of its ``ty*tx`` threads owns
a ``vm x vn`` register block (a ``local`` cache of C). The reduction runs over tiles of
``kt``: each iteration the block stages the ``A`` and ``B`` tiles in shared memory,
every thread fetching its share with ``vec``-wide loads, then all threads multiply out
of shared memory. ``double_buffer`` alternates two copies of each tile so one barrier
per iteration suffices; ``stages`` >= 2 instead pipelines them (``s[T].pipeline``):
``stages`` copies of each tile, filled by ``cp.async`` ``stages - 1`` tiles ahead of the
multiply, so the loads of later tiles are in flight while this one is used.

``pad``: the A tile's rows are ``kt + pad`` elements apart. The threads of a warp that
differ in ``threadIdx.y`` read A rows ``vm`` apart, which with ``kt = 16`` floats start
in the same bank (a 2-way conflict on every A read); 4 more floats a row put them in
different banks, still on 16 bytes (the emulator's count, ``count_banks=True``: 2.0 ->
1.5 wavefronts per shared read).
"""
from __future__ import annotations

import tensordsl as td
from tensordsl.ir import nodes as n
from tensordsl.te.tensor import PlaceholderOp

DEFAULT = {"ty": 8, "tx": 16, "vm": 4, "vn": 4, "kt": 16, "vec": 4, "double_buffer": 1,
           "stages": 3, "pad": 4, "vthreads": 1}
# a large product's tiles: 128 x 128 a block of 16 x 16 threads, 8 x 8 a thread dealt
# out as 2 x 2 groups of 4 x 4 (``vthreads``: a warp's B reads stay neighbouring
# vectors): 90% of the loop's instructions are FFMA, not 79% (sm_80, sm_90a)
LARGE = {"ty": 16, "tx": 16, "vm": 8, "vn": 8, "kt": 16, "vthreads": 2}
LARGE_MIN = 1024     # rows and columns from which a product takes the LARGE tiles


def _reduction_stage(out):
    if out.op.reduce_axis:
        return out
    for t in out.op.input_tensors:
        if getattr(t.op, "reduce_axis", ()):
            return t
    raise ValueError(f"schedule_matmul: {out.name!r} is not a matmul-like computation")


def cooperative_fetch(s, cache, *threads, vec: int = 1):
    """All threads of the block copy the tile: its axes fused, ``vec``-wide vectors
    innermost, then split by the block's thread extents ``threads`` (x, then y, then z)."""
    stage = s[cache]
    fused = stage.fuse(*cache.op.axis)
    if vec > 1:
        fused, v = stage.split(fused, factor=vec)
        stage.vectorize(v)
    for axis, extent in zip("xyz", threads):
        fused, t = stage.split(fused, factor=extent)
        stage.bind(t, td.thread_axis(f"threadIdx.{axis}"))


def block_tile(stage, ty_n: int, tx_n: int, vm: int, vn: int, vthreads: int = 1):
    """Tile the stage's last two axes: a block per ``(ty_n*vm) x (tx_n*vn)`` tile
    (leading axes fused onto ``blockIdx.z``), ``ty_n x tx_n`` threads each owning an
    unrolled ``vm x vn`` block. ``vthreads`` > 1 deals each thread's rows and columns
    out in that many groups a block's width apart (TVM's virtual threads, CUTLASS's
    interleaved fragments): the lanes of a warp then read neighbouring 16-byte vectors
    of the B tile, not vectors ``vn`` floats apart. Returns the ``threadIdx.x`` axis
    (where a per-thread accumulator is computed)."""
    *batch, i, j = stage.op.axis
    by, yi = stage.split(i, factor=ty_n * vm)
    bx, xi = stage.split(j, factor=tx_n * vn)
    virtual = []
    if vthreads > 1:
        vy, yi = stage.split(yi, nparts=vthreads)
        vx, xi = stage.split(xi, nparts=vthreads)
        virtual = [vy, vx]
    ty, yi = stage.split(yi, nparts=ty_n)
    tx, xi = stage.split(xi, nparts=tx_n)
    stage.reorder(*batch, by, bx, *virtual, ty, tx, yi, xi)
    for ax, name in zip(virtual, ("vy", "vx")):
        stage.bind(ax, td.thread_axis((0, vthreads), "vthread", name=name))
    if batch:
        bz = stage.fuse(*batch) if len(batch) > 1 else batch[0]
        stage.bind(bz, td.thread_axis("blockIdx.z"))
    for ax, tag in ((by, "blockIdx.y"), (bx, "blockIdx.x"), (ty, "threadIdx.y"),
                    (tx, "threadIdx.x")):
        stage.bind(ax, td.thread_axis(tag))
    stage.unroll(yi)
    stage.unroll(xi)
    return tx


def _tensor_core_fits(out, cfg) -> bool:
    """float16/bfloat16 operands, float32 result, 2-d, whole tensor-core tiles."""
    if not out.op.reduce_axis or len(out.shape) != 2 or out.dtype != "float32":
        return False
    A, B = out.op.input_tensors[:2]
    if A.dtype not in ("float16", "bfloat16") or B.dtype != A.dtype:
        return False
    c = {**TENSOR_CORE_DEFAULT, **cfg}
    dims = [getattr(d, "value", None) for d in (*out.shape, out.op.reduce_axis[0].dom.extent)]
    tiles = (c["warps_m"] * c["wm"] * 16, c["warps_n"] * c["wn"] * 16, 16 * c["kk"])
    return all(isinstance(d, int) and d % t == 0 for d, t in zip(dims, tiles))


def _large_tiles(out, config: dict) -> dict:
    """``LARGE`` for a product of at least ``LARGE_MIN`` rows and columns whose config
    sets none of its knobs (enough blocks of 128 x 128 to fill a GPU), else nothing."""
    dims = [getattr(d, "value", None) for d in out.shape[-2:]]
    if any(k in config for k in LARGE) or not all(isinstance(d, int) and d >= LARGE_MIN
                                                   for d in dims):
        return {}
    return LARGE


def tensor_core_config(out, config=None) -> dict | None:
    """The tensor-core template's knobs for ``out``, or None where it does not apply
    (see ``_tensor_core_fits``): a block of one warpgroup (``WARPGROUP_TILES``) where
    the shapes are whole 64 x 64 x 64 tiles and ``config`` sets none of its tile knobs,
    else ``TENSOR_CORE_DEFAULT``'s tiles."""
    cfg = dict(config or {})
    if not any(k in cfg for k in WARPGROUP_TILES):
        warpgroup = {**TENSOR_CORE_DEFAULT, **WARPGROUP_TILES, **cfg}
        if _tensor_core_fits(out, warpgroup):
            return warpgroup
    cfg = {**TENSOR_CORE_DEFAULT, **cfg}
    return cfg if _tensor_core_fits(out, cfg) else None


def schedule_matmul(s, out, config=None):
    """The SIMT template below, or the tensor-core one where the operands are 16-bit
    floats accumulating in float32 and the shapes are whole tiles."""
    tensor_cores = tensor_core_config(out, config)
    if tensor_cores is not None:
        return schedule_matmul_tensorcore(s, out, tensor_cores)
    cfg = {**DEFAULT, **_large_tiles(out, config or {}), **(config or {})}
    ty_n, tx_n, vm, vn, kt = cfg["ty"], cfg["tx"], cfg["vm"], cfg["vn"], cfg["kt"]
    C = _reduction_stage(out)
    A, B = C.op.input_tensors[:2]
    AS = s.cache_read(A, "shared", [C])
    BS = s.cache_read(B, "shared", [C])
    if C is out:
        CL = s.cache_write(C, "local")
        final = C
    else:
        s[C].set_scope("local")
        CL, final = C, out
    tx = block_tile(s[final], ty_n, tx_n, vm, vn, cfg["vthreads"])
    s[CL].compute_at(s[final], tx)
    k = CL.op.reduce_axis[0]
    ko, ki = s[CL].split(k, factor=kt)
    caxes = list(CL.op.axis)
    s[CL].reorder(ko, ki, *caxes)
    for ax in caxes[-2:]:
        s[CL].unroll(ax)
    s[CL].unroll(ki)
    if cfg["pad"]:
        s[AS].storage_align(AS.op.axis[-2], kt, cfg["pad"])
    for cache in (AS, BS):
        s[cache].compute_at(s[CL], ko)
        cooperative_fetch(s, cache, tx_n, ty_n, vec=cfg["vec"])
        if cfg["stages"] >= 2:
            s[cache].pipeline(cfg["stages"])
        elif cfg["double_buffer"]:
            s[cache].double_buffer()
    return s


TENSOR_CORE_DEFAULT = {"warps_m": 2, "warps_n": 2, "wm": 2, "wn": 2, "kk": 2, "vec": 8,
                       "double_buffer": 1, "stages": 3, "pad": 0, "swizzle": 1, "tma": 1}
# a block of one warpgroup: 4 warps down a 64 x 64 tile, 16 x 64 each, 64-deep slices;
# its swizzled tiles of 128-byte rows are wgmma's layouts, so on sm_90a each 16-deep
# step is one wgmma of the 4 warps (``targets/cuda/wmma.py``), elsewhere mma.sync
WARPGROUP_TILES = {"warps_m": 4, "warps_n": 1, "wm": 1, "wn": 4, "kk": 4}


def schedule_matmul_tensorcore(s, out, config=None):
    """float16/bfloat16 matmul accumulating in float32 on tensor cores, 16x16x16 tiles
    (through ldmatrix and mma.sync, ``targets/cuda/wmma.py``; float16 in unswizzled
    tiles through WMMA).

    A block of ``warps_m x warps_n`` warps computes a ``(warps_m*wm*16) x
    (warps_n*wn*16)`` tile of C; each warp owns ``wm x wn`` accumulator fragments. Per
    ``16*kk``-deep slice of K, the block stages the A and B tiles in shared memory (all
    threads, ``vec``-wide loads) and each warp runs ``wm*wn*kk`` mma_sync. Needs M, N and
    K divisible by the tiles (the tensor-core tiles are whole).

    The tiles are read by ldmatrix, 8 rows of 16 bytes at a time, and rows of a
    multiple of 128 bytes (or 64) would start in the same banks, 8 (or 4) ways
    conflicting. ``swizzle`` (default) permutes each tile's 16-byte chunks within its
    128-byte lines (``s[T].swizzle()``), so the 8 rows fall in distinct banks (one
    wavefront per 8x8 matrix, ``emulate(..., count_banks=True)``) in a compact tile;
    float16 then goes through ldmatrix and mma.sync as bfloat16 does (WMMA takes
    row-major tiles only). A tile the permutation does not make conflict-free (rows
    of 96 bytes; under 1024 bytes in all) is padded instead. ``pad`` (0 or 8 elements,
    with ``swizzle`` 0) lengthens each row by 16 bytes, to an odd number of 16 bytes."""
    C = out
    A, B = C.op.input_tensors[:2]
    AS = s.cache_read(A, "shared", [C])
    BS = s.cache_read(B, "shared", [C])
    CF = s.cache_write(C, "wmma.accumulator")
    return tensor_core_tiles(s, C, CF, AS, BS, *C.op.axis, config)


def tensor_core_tiles(s, C, CF, AS, BS, i, j, config=None):
    """The tensor-core template's schedule of a product ``CF`` (scope
    "wmma.accumulator") of the shared tiles ``AS`` x ``BS``, stored by ``C`` over its
    axes ``i`` (rows) and ``j`` (columns) — a stage whose rows may be a fused axis of
    an n-d tensor laid out as the product's rows (the implicit GEMM's NHWC output),
    and which may convert the float32 accumulator to its own type."""
    cfg = {**TENSOR_CORE_DEFAULT, **(config or {})}
    wmm, wnn, wm, wn, kk = cfg["warps_m"], cfg["warps_n"], cfg["wm"], cfg["wn"], cfg["kk"]
    by, i = s[C].split(i, factor=wmm * wm * 16)
    bx, j = s[C].split(j, factor=wnn * wn * 16)
    ty, i = s[C].split(i, nparts=wmm)
    tz, j = s[C].split(j, nparts=wnn)
    it, i16 = s[C].split(i, factor=16)
    jt, j16 = s[C].split(j, factor=16)
    s[C].reorder(by, bx, ty, tz, it, jt, i16, j16)
    s[C].bind(by, td.thread_axis("blockIdx.y"))
    s[C].bind(bx, td.thread_axis("blockIdx.x"))
    s[C].bind(ty, td.thread_axis("threadIdx.y"))
    s[C].bind(tz, td.thread_axis("threadIdx.z"))
    s[C].tensorize(i16, td.tensor_intrin.wmma_store())

    s[CF].compute_at(s[C], tz)
    ci, cj = CF.op.axis
    (k,) = CF.op.reduce_axis
    ko, k = s[CF].split(k, factor=16 * kk)
    kt, k16 = s[CF].split(k, factor=16)
    s[CF].reorder(ko, kt, ci, cj, k16)
    # a warp's whole wm x wn block of tiles per 16-deep step: each A and B tile read
    # from shared memory once (wm + wn fragment loads, not 2 wm wn)
    s[CF].tensorize(ci, td.tensor_intrin.wmma_mma_sync(16 * wm, 16 * wn))

    if cfg["pad"] not in (0, 8):
        raise ValueError(f"pad: expected 0 or 8 elements (rows of an odd number of 16 "
                         f"bytes, as ldmatrix and cp.async need), got {cfg['pad']}")
    rows = {AS: 16 * kk, BS: wnn * wn * 16}     # each tile's row length
    heights = {AS: wmm * wm * 16, BS: 16 * kk}
    layouts = {}
    for cache in (AS, BS):
        s[cache].compute_at(s[CF], ko)
        pad, swizzled = cfg["pad"], False
        if cfg["swizzle"]:
            row_bytes, tile_bytes = 2 * rows[cache], 2 * rows[cache] * heights[cache]
            if (row_bytes == 64 or row_bytes % 128 == 0) and tile_bytes % 1024 == 0:
                s[cache].swizzle()
                pad, swizzled = 0, True
            else:
                pad = 8
        if pad:
            s[cache].storage_align(cache.op.axis[-2], rows[cache], pad)
        cooperative_fetch(s, cache, 32, wmm, wnn, vec=cfg["vec"])   # lanes, warps
        layouts[cache] = (2 * rows[cache], heights[cache], swizzled, pad)
    # on sm_90+ the TMA copies both tiles whole, where it can (``_tma_copies``); else
    # cp.async, 16 bytes (8 halves) a copy
    tma = cfg["tma"] and all(_tma_copies(c, *layouts[c]) for c in (AS, BS))
    for cache in (AS, BS):
        if cfg["stages"] >= 2:
            s[cache].pipeline(cfg["stages"], tma=bool(tma))
        elif cfg["double_buffer"]:
            s[cache].double_buffer()
    return s


def _tma_copies(cache, row_bytes: int, height: int, swizzled: bool, pad: int) -> bool:
    """Whether the TMA can copy tile ``cache`` (``Stage.pipeline``'s ``tma``): a plain
    copy of an input, unpadded, rows of 128 bytes if swizzled (its 128-byte swizzle),
    at most 256 elements a side."""
    read = cache.op.body[0]
    return (isinstance(read, n.TensorRead) and isinstance(read.tensor.op, PlaceholderOp)
            and not pad and (row_bytes == 128 if swizzled else row_bytes % 16 == 0)
            and max(row_bytes // 2, height) <= 256)
