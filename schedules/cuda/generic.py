"""The GPU template for any operator without its own (elementwise ops, pooling,
reductions, direct convolution).

Elementwise producers are inlined. Every other stage becomes a kernel of its own: its
output elements are flattened and dealt out to ``threads`` threads per block, each
thread running its element's reduction loops.

A full reduction (one output element, e.g. ``reduce_sum(x)``) is spread over many
blocks in two kernels, by ``rfactor``:

    kernel 1   partial[b] for b < B: block b reduces the b-th of B contiguous chunks
               of the (fused) input, its ``threads`` threads striding through the chunk
               and combining their results with warp shuffles (a cross-thread
               reduction, ``AllReduce``)
    kernel 2   out = the partials combined by one block of B threads, the same way

B is one block per ``threads`` elements, at most ``blocks`` (``blocks`` when the size
is symbolic): small inputs launch few blocks, large ones give each thread a run.
"""
from __future__ import annotations

import tensordsl as td
from tensordsl.ir import nodes as n
from tensordsl.te.tensor import ComputeOp

DEFAULT = {"threads": 256, "blocks": 256}


def schedule_generic(s, out, config=None):
    cfg = {**DEFAULT, **(config or {})}
    for stage in list(s.stages):     # (rfactor inserts stages)
        if not isinstance(stage.op, ComputeOp) or stage.is_output:
            continue
        if stage.op.reduce_axis or stage.op.num_outputs > 1:
            _bind_stage(s, stage, cfg)
        else:
            stage.compute_inline()
    for op in list(s.outputs):
        _bind_stage(s, s[op], cfg)
    return s


def _bind_stage(s, stage, cfg):
    if stage.op.reduce_axis and _one_element(stage.op):
        bind_full_reduction(s, stage, cfg["threads"], cfg["blocks"])
    elif not stage.op.reduce_axis and _whole_vectors(stage.op, VECTOR_LANES):
        bind_flat_vectors(stage, cfg["threads"], VECTOR_LANES)
    else:
        bind_flat(stage, cfg["threads"])


# an elementwise thread's run of float32 outputs: one 16-byte access (LDG.128/STG.128)
VECTOR_LANES = 4


def _whole_vectors(op, lanes: int) -> bool:
    """Whether ``op`` is one float32 output whose row (and so every run of ``lanes``
    flat elements starting on a multiple of ``lanes``) splits into whole vectors."""
    extents = [iv.dom.extent for iv in op.axis]
    return (op.num_outputs == 1 and op.output(0).dtype == "float32" and bool(extents)
            and all(isinstance(e, n.IntImm) for e in extents)
            and extents[-1].value % lanes == 0)


def _one_element(op) -> bool:
    return all(isinstance(iv.dom.extent, n.IntImm) and iv.dom.extent.value == 1
               for iv in op.axis)


def bind_flat(stage, threads: int):
    """One thread per output element: the axes fused, split into blocks of ``threads``.
    Returns the ``threadIdx.x`` axis (where a per-thread accumulator is computed)."""
    fused = stage.fuse(*stage.op.axis) if len(stage.op.axis) > 1 else stage.op.axis[0]
    bx, tx = stage.split(fused, factor=threads)
    stage.bind(bx, td.thread_axis("blockIdx.x"))
    stage.bind(tx, td.thread_axis("threadIdx.x"))
    return tx


def bind_flat_vectors(stage, threads: int, lanes: int):
    """``lanes`` consecutive output elements per thread, vectorized: the code generator
    moves a thread's aligned float32 run of 4 as one 16-byte access."""
    fused = stage.fuse(*stage.op.axis) if len(stage.op.axis) > 1 else stage.op.axis[0]
    run, lane = stage.split(fused, factor=lanes)
    bx, tx = stage.split(run, factor=threads)
    stage.bind(bx, td.thread_axis("blockIdx.x"))
    stage.bind(tx, td.thread_axis("threadIdx.x"))
    stage.vectorize(lane)
    return tx


def bind_full_reduction(s, stage, threads: int, blocks: int):
    """A reduction to one element: per-block partial results, then one block combining
    them (see the module docstring). ``stage`` keeps its name; ``stage.rf`` is added."""
    op = stage.op
    red = stage.fuse(*op.reduce_axis) if len(op.reduce_axis) > 1 else op.reduce_axis[0]
    size = red.dom.extent
    if isinstance(size, n.IntImm):
        blocks = max(1, min(blocks, -(-size.value // threads)))
    chunk, _ = stage.split(red, nparts=blocks)
    partials = s.rfactor(op.output(0), chunk)
    partials = partials[0] if isinstance(partials, list) else partials
    _block_reduction(s[partials], threads)
    _block_reduction(stage, blocks)


def _block_reduction(stage, threads: int):
    """The data-parallel axes (the block index; none for a 0-d result) on
    ``blockIdx.x``; the reduction axes fused and split so ``threads`` threads stride
    through them and combine their partial results across the block."""
    op = stage.op
    if op.axis:
        block = stage.fuse(*op.axis) if len(op.axis) > 1 else op.axis[0]
        stage.bind(block, td.thread_axis("blockIdx.x"))
    red = stage.fuse(*op.reduce_axis) if len(op.reduce_axis) > 1 else op.reduce_axis[0]
    _, tx = stage.split(red, factor=threads)
    stage.bind(tx, td.thread_axis("threadIdx.x"))
