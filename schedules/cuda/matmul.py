"""GPU matmul (and batch_matmul, dense): shared-memory tiles, a register block per thread.

One block computes a ``(ty*vm) x (tx*vn)`` tile of C; each of its ``ty*tx`` threads owns
a ``vm x vn`` register block (a ``local`` cache of C). The reduction runs over tiles of
``kt``: each iteration the block stages the ``A`` and ``B`` tiles in shared memory,
every thread fetching its share with ``vec``-wide loads, then all threads multiply out
of shared memory. ``double_buffer`` alternates two copies of each tile so one barrier
per iteration suffices.
"""
from __future__ import annotations

import tensordsl as td

DEFAULT = {"ty": 8, "tx": 16, "vm": 4, "vn": 4, "kt": 16, "vec": 4, "double_buffer": 1}


def _reduction_stage(out):
    if out.op.reduce_axis:
        return out
    for t in out.op.input_tensors:
        if getattr(t.op, "reduce_axis", ()):
            return t
    raise ValueError(f"schedule_matmul: {out.name!r} is not a matmul-like computation")


def _cooperative_fetch(s, cache, threads_y, threads_x, vec):
    """All threads of the block copy the tile: fused, split by the block's threads."""
    stage = s[cache]
    fused = stage.fuse(*cache.op.axis)
    if vec > 1:
        fused, v = stage.split(fused, factor=vec)
        stage.vectorize(v)
    fused, tx = stage.split(fused, factor=threads_x)
    fused, ty = stage.split(fused, factor=threads_y)
    stage.bind(ty, td.thread_axis("threadIdx.y"))
    stage.bind(tx, td.thread_axis("threadIdx.x"))


def schedule_matmul(s, out, config=None):
    cfg = {**DEFAULT, **(config or {})}
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
    axes = list(final.op.axis)
    batch, (i, j) = axes[:-2], axes[-2:]
    by, yi = s[final].split(i, factor=ty_n * vm)
    bx, xi = s[final].split(j, factor=tx_n * vn)
    ty, yi = s[final].split(yi, nparts=ty_n)
    tx, xi = s[final].split(xi, nparts=tx_n)
    s[final].reorder(*batch, by, bx, ty, tx, yi, xi)
    if batch:
        bz = s[final].fuse(*batch) if len(batch) > 1 else batch[0]
        s[final].bind(bz, td.thread_axis("blockIdx.z"))
    s[final].bind(by, td.thread_axis("blockIdx.y"))
    s[final].bind(bx, td.thread_axis("blockIdx.x"))
    s[final].bind(ty, td.thread_axis("threadIdx.y"))
    s[final].bind(tx, td.thread_axis("threadIdx.x"))
    s[final].unroll(yi)
    s[final].unroll(xi)

    s[CL].compute_at(s[final], tx)
    k = CL.op.reduce_axis[0]
    ko, ki = s[CL].split(k, factor=kt)
    caxes = list(CL.op.axis)
    s[CL].reorder(ko, ki, *caxes)
    for ax in caxes[-2:]:
        s[CL].unroll(ax)
    s[CL].unroll(ki)
    for cache in (AS, BS):
        s[cache].compute_at(s[CL], ko)
        _cooperative_fetch(s, cache, ty_n, tx_n, cfg["vec"])
        if cfg["double_buffer"]:
            s[cache].double_buffer()
    return s
