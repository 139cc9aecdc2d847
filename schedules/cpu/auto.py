"""The auto-scheduler: a schedule space derived from a compute's own structure, for
operators without a template (and for templates' operators, to compare).

The anchor is the stage the tiling is about: the output if it reduces, else the one
reducing stage it is computed from. For the anchor with spatial axes S1..Sn and
reduction axes R1..Rm (Ansor's multi-level tiling, "SSRRS"):

    parallel for S.outer...           # fused, over the cores
      for S.mid...                    # a block of register tiles that share data in cache
        for R.outer...                # a block of the reduction
          for R.inner...
            for S.inner... (unrolled) # the register tile
              for Sn.inner (vector)   # the innermost spatial axis, whole vectors

An output that is an elementwise function of the anchor at the same point (a bias add
and ReLU after a matmul, through any chain of elementwise stages, which are inlined) is
fused with it, as Ansor fuses a consumer: the output takes the spatial tiling and the
anchor is computed inside it, with ``attach`` 1 per parallel block (the nest above, the
block's results in a small buffer the epilogue then reads while it is in cache), with
``attach`` 0 per register tile (the whole reduction for one tile, then its epilogue):

    parallel for S.outer...                     parallel for S.outer...
      Y = the nest above, for this block          for S.mid...
      for S.mid...                                  Y = for R...: the register tile
        for S.inner...: R = f(Y, ...)               for S.inner...: R = f(Y, ...)

Any other output (a crop of a convolution over the padded width) is scheduled on its own
after the anchor. With several reductions (softmax's max and sum) the output itself is
the anchor. Elementwise producers are inlined; producers the anchor reads directly, and
other reductions, are computed whole first with the generic schedule. Optionally the
input read along Sn and a reduction axis is packed into panels as wide as the vector
tile (``pack``), so the innermost loop reads it contiguously. The local accumulators
pass keeps the register tile in registers across R.inner.

Knobs: ``t{d}`` / ``m{d}`` (inner / mid tile of spatial axis d), ``r{d}`` (inner tile of
reduction axis d), ``unroll`` (1: the register tile; 2: also short reduction tiles),
``pack``, ``attach`` (only with a fused output; a block of more than
``MAX_BLOCK_ELEMENTS`` is computed per register tile whatever it says). Extents are
read as constants when they simplify to one (``H - 2`` of a known ``H``).

A spatial axis that a reduction's range reads (a sparse row ``i`` of ``for q in
[pos[i], pos[i + 1])``, and the gradients through one) has no register tile: its loop
stays outside the reduction, whose bounds it gives.
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import (PARALLEL_MIN_ELEMENTS, _extent, bounding_axes, schedule_generic,
                      schedule_stage)
from .matmul import is_product, schedule_product
from .target import vector_lanes


MAX_BLOCK_ELEMENTS = 1 << 16  # a larger block of the anchor is computed per register tile


def _fits(values, extent):
    return [v for v in values if extent is None or v <= max(1, extent)] or [1]


def _anchor(out):
    """The stage the tiling is about: the output if it reduces, else the one reducing
    stage it is computed from (a convolution cropped afterwards)."""
    if out.op.reduce_axis if isinstance(out.op, ComputeOp) else False:
        return out.op
    seen, todo, reducing = set(), [out.op], []
    while todo:
        op = todo.pop()
        for t in getattr(op, "input_tensors", []):
            if id(t.op) in seen or not isinstance(t.op, ComputeOp):
                continue
            seen.add(id(t.op))
            if t.op.reduce_axis:
                reducing.append(t.op)
            todo.append(t.op)
    return reducing[0] if len(reducing) == 1 else out.op


def auto_space(out) -> dict:
    op = _anchor(out)
    lanes = vector_lanes(32)
    if not isinstance(op, ComputeOp) or not op.axis:
        return {}
    space = {}
    n = len(op.axis)
    bounding = bounding_axes(op)
    for d, iv in enumerate(op.axis):  # noqa: B007
        e = _extent(iv)
        if d in bounding:
            space[f"t{d}"] = [1]
        elif d == n - 1:
            space[f"t{d}"] = _fits([lanes, 2 * lanes, 4 * lanes], e) if (e or 0) >= lanes \
                else _fits([1, 2, 4, 8], e)
        else:
            space[f"t{d}"] = _fits([1, 2, 4, 6, 8, 12], e)
        space[f"m{d}"] = [1, 2, 4, 8, 16]
    for d, iv in enumerate(op.reduce_axis):
        e = _extent(iv)
        space[f"r{d}"] = sorted(set(_fits([1, 4, 16, 64, 128, 256, 512], e))
                                | ({e} if e and e <= 512 else set()))
    space["unroll"] = [0, 1, 2]
    if op.reduce_axis:
        space["pack"] = [0, 1]
    if _epilogue(out, op):
        space["attach"] = [0, 1]
    return space


BIG_BODY = 48   # IR nodes: a body this large is not unrolled by default


def auto_default(out) -> dict:
    """The middle value of every knob, except that the register tile stays small: it
    spans the last two spatial axes only (a tile over every axis of a 4-d gradient
    multiplies into hundreds of unrolled copies), and a large body is not unrolled.
    A kernel whose anchor has no reduction (an activation, an optimizer's update, the
    output after two reductions such as softmax's) reuses no value a tile could keep in
    registers: it streams, one vector at a time along its rows, the rows shared out
    among the threads (as ``schedule_generic`` runs it)."""
    space = auto_space(out)
    cfg = {k: v[len(v) // 2] for k, v in space.items()}
    op = _anchor(out)
    if isinstance(op, ComputeOp) and not op.reduce_axis and op.axis:
        last = len(op.axis) - 1
        for d in range(len(op.axis)):
            cfg[f"t{d}"], cfg[f"m{d}"] = 1, 1
        cfg[f"t{last}"] = space[f"t{last}"][0]
        cfg["unroll"] = 0
        _stream_blocks(cfg, space, op, last)
        return cfg
    if isinstance(op, ComputeOp):
        for d in range(len(op.axis) - 2):
            cfg[f"t{d}"] = 1
        from tensordsl.ir.visitor import post_order
        if sum(len(post_order(b)) for b in op.body) > BIG_BODY:
            cfg["unroll"] = 0
    return cfg


STREAM_VECTORS = 16   # a streaming kernel's parallel iteration: at least this many vectors


def _stream_blocks(cfg: dict, space: dict, op, last: int):
    """A streaming kernel's parallel iteration: a block of at least ``STREAM_VECTORS``
    vectors, grown from the last axis inward through the mid tiles, so that the loops
    inside it keep their own indices (as ``schedule_generic`` runs it). A row shorter
    than a vector is one vector, the widest that divides it (one and a guarded tail if
    none does). (One vector per iteration of one loop over everything, every index
    divided out of it, made a CNN's activations, paddings and their gradients 2-10x
    slower.)"""
    lanes = vector_lanes(32)
    row = _extent(op.axis[last])
    if row is not None and row < lanes:
        widths = [t for t in space[f"t{last}"] if t >= 4]
        dividing = [t for t in widths if row % t == 0]
        cfg[f"t{last}"] = max(dividing or widths or space[f"t{last}"])
    block, target = 1, STREAM_VECTORS * lanes
    for d in range(last, -1, -1):
        extent, tile = _extent(op.axis[d]), int(cfg[f"t{d}"])
        if extent is None:
            return
        mids = space.get(f"m{d}", [1])
        enough = [m for m in mids if tile * m <= extent and block * tile * m >= target]
        covering = [m for m in mids if tile * m >= extent]
        if enough:                   # the block is big enough inside this axis
            cfg[f"m{d}"] = min(enough)
            return
        if covering:                 # the whole axis (a guarded tail): grow outward
            cfg[f"m{d}"] = min(covering)
            block *= extent
            continue
        cfg[f"m{d}"] = max(m for m in mids if tile * m <= extent) if tile <= extent else 1
        return


def _reads(op) -> list:
    """The ``TensorRead`` nodes of an operation's bodies."""
    from tensordsl.ir.visitor import Visitor
    found = []

    class Reads(Visitor):
        def visit_TensorRead(self, node):
            found.append(node)
            self.generic_visit(node)

    for b in op.body:
        Reads().visit(b)
    return found


def _epilogue(out, anchor) -> bool:
    """Whether ``out`` is an elementwise function of the anchor at the same point, through
    elementwise stages (inlined) that read their producers at their own index too
    (``R[i, j] = max(Y[i, j] + b[j], 0)``): then the output takes the tiling and the
    anchor is computed inside its tiles."""
    if out.op is anchor or not isinstance(out.op, ComputeOp) or out.op.reduce_axis or \
            out.op.num_outputs > 1 or len(out.op.axis) != len(anchor.axis):
        return False
    if any(a.dom.extent is not b.dom.extent and (_extent(a) is None or _extent(a) != _extent(b))
           for a, b in zip(out.op.axis, anchor.axis)):
        return False   # the same extents: the same constant, or the same size variable
    depends = {}

    def reads_anchor(op) -> bool:
        if op is anchor:
            return True
        if id(op) not in depends:
            depends[id(op)] = False
            depends[id(op)] = any(reads_anchor(t.op) for t in getattr(op, "input_tensors", []))
        return depends[id(op)]

    def elementwise_path(op) -> bool:
        own = [iv.var for iv in op.axis]
        for read in _reads(op):
            producer = read.tensor.op
            if not reads_anchor(producer):
                continue
            if len(read.indices) != len(own) or \
                    any(i is not v for i, v in zip(read.indices, own)):
                return False
            if producer is not anchor and not (
                    isinstance(producer, ComputeOp) and not producer.reduce_axis and
                    producer.num_outputs == 1 and elementwise_path(producer)):
                return False
        return True

    return elementwise_path(out.op)


def _panel_input(op, last_var):
    """(tensor, dimension) of an input read with the last spatial axis alone in one
    dimension and a reduction axis in another (matmul's B), or None."""
    from tensordsl.ir.visitor import free_vars
    reduce_vars = {iv.var for iv in op.reduce_axis}
    for read in _reads(op):
        dims = [d for d, i in enumerate(read.indices) if i is last_var]
        others = {v for i in read.indices for v in free_vars(i)}
        if len(dims) == 1 and others & reduce_vars:
            return read.tensor, dims[0]
    return None


def schedule_auto(s, out, config=None):
    cfg = dict(auto_default(out), **(config or {}))
    op = _anchor(out)
    if not isinstance(op, ComputeOp) or not op.axis:
        schedule_generic(s, out, config)
        return
    stage = s[op.output(0)]
    fused_epilogue = _epilogue(out, op)
    for st in list(s.stages):   # (a product packs its operands: new stages)
        if not isinstance(st.op, ComputeOp) or st is stage or \
                (fused_epilogue and st.op is out.op):
            continue
        if st.op.reduce_axis and not st.is_output and is_product(st):
            # a matrix product inside the graph (a layer of a network and its
            # gradient): the matmul template's micro-kernel, not a vector per output
            schedule_product(s, st)
        elif st.is_output or st.op.reduce_axis or st.op.num_outputs > 1 or \
                st.op in _inputs_of(op):
            schedule_stage(st)   # the output after the anchor; producers it reads
        else:
            st.compute_inline()
    n_axes = len(op.axis)
    lanes_ok = (_extent(op.axis[-1]) or 0) >= int(cfg.get(f"t{n_axes - 1}", 1)) > 1
    if fused_epilogue:
        _tile_with_epilogue(s[out], stage, cfg, lanes_ok)
    else:
        outers, mids, inners = _tile_spatial(stage, op.axis, cfg)
        _tile_reduction(stage, op, cfg, outers, mids, inners, lanes_ok)
        fused = stage.fuse(*outers) if len(outers) > 1 else outers[0]
        if _worth_parallel(op):
            stage.parallel(fused)
    if cfg.get("pack") and op.reduce_axis and lanes_ok:
        found = _panel_input(op, op.axis[-1].var)
        if found is not None:
            tensor, dim = found
            panels = s[s.pack(tensor, dim, int(cfg[f"t{n_axes - 1}"]), [op.output(0)])]
            if _worth_parallel(op):
                panels.parallel(panels.op.axis[0])
            panels.vectorize(panels.op.axis[-1])


def _worth_parallel(op) -> bool:
    """Whether the anchor has work enough to wake the thread team (a 5x7 gradient has
    not: waking and joining it costs more than the loop, and far more on a busy
    machine)."""
    work = 1
    for iv in (*op.axis, *op.reduce_axis):
        work *= _extent(iv) or PARALLEL_MIN_ELEMENTS
    return work >= PARALLEL_MIN_ELEMENTS


def _tile_spatial(stage, axes, cfg):
    """Split each spatial axis d into (outer, mid, inner) by the knobs m{d}, t{d}."""
    outers, mids, inners = [], [], []
    for d, iv in enumerate(axes):
        rest, inner = stage.split(iv, factor=max(1, int(cfg.get(f"t{d}", 1))))
        outer, mid = stage.split(rest, factor=max(1, int(cfg.get(f"m{d}", 1))))
        outers.append(outer)
        mids.append(mid)
        inners.append(inner)
    return outers, mids, inners


def _tile_reduction(stage, op, cfg, outers, mids, inners, lanes_ok):
    """Order ``outers, mids, R.outer, R.inner, inners``,
    vectorize the innermost spatial tile and unroll as the ``unroll`` knob says."""
    r_outer, r_inner = [], []
    for d, iv in enumerate(op.reduce_axis):
        ro, ri = stage.split(iv, factor=max(1, int(cfg.get(f"r{d}", 1))))
        r_outer.append(ro)
        r_inner.append(ri)
    bounding = bounding_axes(op)
    # (a tile of an axis the reduction's range reads runs outside the reduction)
    stage.reorder(*outers, *mids, *[iv for d, iv in enumerate(inners) if d in bounding],
                  *r_outer, *r_inner, *[iv for d, iv in enumerate(inners) if d not in bounding])
    _vectorize_unroll(stage, inners, lanes_ok, cfg)
    if cfg.get("unroll") == 2:  # also short reduction tiles (a 3x3 window)
        for d, iv in enumerate(r_inner):
            if int(cfg.get(f"r{d}", 1)) <= 8:
                stage.unroll(iv)


def _vectorize_unroll(stage, inners, lanes_ok, cfg):
    if lanes_ok:
        stage.vectorize(inners[-1])
    if cfg.get("unroll"):
        for iv in inners[:-1]:
            stage.unroll(iv)


def _tile_with_epilogue(out_stage, stage, cfg, lanes_ok):
    """The output (an elementwise function of the anchor, producers inlined) takes the
    spatial tiling; the anchor is computed inside it, per parallel block (``attach``
    1: the mid and register tiles, with the reduction loops between them, as unfused)
    or per register tile (``attach`` 0: the whole reduction for one register tile), so
    the epilogue reads the anchor's values while they are in cache."""
    outers, mids, inners = _tile_spatial(out_stage, out_stage.op.axis, cfg)
    out_stage.reorder(*outers, *mids, *inners)
    _vectorize_unroll(out_stage, inners, lanes_ok, cfg)
    block = out_stage.fuse(*outers) if len(outers) > 1 else outers[0]
    if _worth_parallel(stage.op):
        out_stage.parallel(block)
    op = stage.op
    block_elements = 1
    for d in range(len(op.axis)):
        block_elements *= max(1, int(cfg.get(f"t{d}", 1))) * max(1, int(cfg.get(f"m{d}", 1)))
    if cfg.get("attach", 1) and block_elements <= MAX_BLOCK_ELEMENTS:
        stage.compute_at(out_stage, block)
        # the anchor's axes span one block: split them into mid and register tiles
        mids, inners = zip(*(stage.split(iv, factor=max(1, int(cfg.get(f"t{d}", 1))))
                             for d, iv in enumerate(op.axis)))
        _tile_reduction(stage, op, cfg, [], list(mids), list(inners), lanes_ok)
    else:
        stage.compute_at(out_stage, mids[-1])
        _tile_reduction(stage, op, cfg, [], [], list(op.axis), lanes_ok)


def _inputs_of(op) -> set:
    """Computed stages the anchor reads directly: materialized (a padded input is read
    many times; inlining it would recompute the padding test per multiply-add)."""
    return {t.op for t in getattr(op, "input_tensors", []) if isinstance(t.op, ComputeOp)}
