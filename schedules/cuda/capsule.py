"""The GPU template of capsule routing (``kernels/capsule.py``): the unrolled routing
fused into as few kernels as shared memory allows — where a sample's state fits, its
whole routing in one thread block.

Under the generic template every stage of the unrolled routing is a kernel of its own
(14 for 3 iterations), each a pass over global memory and a launch; the stages are
tiny (a sample's ``s`` is 10 x 16 floats), so launches and memory round trips are all
the time there is. Here (the first two plans below) the output's samples go to
``blockIdx.x`` (``samples`` of them
per block) and every stage of the routing — the predictions, each iteration's softmax
over the output capsules, weighted sum, squash and agreement update — is computed at
that loop (``compute_at``) into the block's shared memory, so the routing is one kernel
and ``u_hat`` is made once and read from shared memory by every iteration:

    blockIdx.x          a block of ``samples`` samples
      threadIdx.y         the block's samples, one each (when more than one)
        for each stage, in order (a barrier between two):
          serial            the sample's elements of the stage (all axes but the
                            sample fused), ``threads`` at a time
            threadIdx.x       one element each
              local             a reduction (over k, j, d, or the input capsules i)
                                accumulates in a register, stored to shared memory once
        the output v: the same, stored to global memory

Each element of a stage belongs to one thread, so a sum over the input capsules (``s``,
``out_caps x out_dim`` outputs per sample) is a loop of one thread, not a cross-thread
reduction: the block sums all of a sample's ``s`` at once (160 sums at the paper's
capsule sizes), each thread reading ``u_hat`` in its own order (consecutive threads,
consecutive words: no bank conflicts). The agreement's threads (an input and an output
capsule each) sum along rows of ``u_hat``, ``out_dim`` words apart — 16: a warp's reads
would fall in two banks — so a stage read that way gets rows of odd length
(``storage_align``: 17 words, one wasted), and a warp's reads fall in 32 banks.
Elementwise stages read once by a stage of their own shape are inlined.

What fits decides what is fused: shared memory holds 48 KiB per block (the code
generator's static ``__shared__`` arrays, ``tensordsl/lower/gpu.py``), and a sample's
stages each take their size in it:

* everything fits (e.g. 32 input capsules x 10 x 16: ``u_hat`` 21 KiB, the logits,
  coefficients, softmax rows and the rest ~14 KiB): one kernel, nothing but ``u`` and ``W`` read
  from global memory, ``v`` written to it;
* the routing fits without the predictions (``u_hat`` larger than the rest allows, up
  to ~130 input capsules x 10 output capsules): ``u_hat`` is computed apart by a kernel
  of one thread per element (every SM busy) and the routing reads it from global
  memory (from L2: one sample's is read by one block, five times for 3 iterations) —
  two kernels;
* neither (the paper's 1152 x 10: every logits-shaped stage is 45 KiB, ``u_hat`` 720
  KiB): the input capsules are split over blocks. Each iteration's sum over them
  becomes partial sums per tile of ``tile`` inputs (``rfactor``: ``s.rf[b, tile, j,
  d]``), and a block per (tile, sample) computes its tile's partial sums with
  everything they need that no other kernel reads — the tile's logits, softmax and
  coefficients, and (summing the previous iteration's partial sums over the tiles,
  160 floats) that iteration's ``s`` and ``v`` — a tile's in shared memory (~7 KiB at
  32 inputs); a stage read in two kernels (``u_hat``; the first agreement, read by
  the second and third iterations) is a kernel of its own, over (tile, sample) blocks
  too, and an elementwise one is recomputed in each. Six kernels for 3 iterations
  (the generic template's: 14), each over ``in_caps / tile x batch`` blocks (1152 at
  the paper's sizes: every SM busy, where one block per sample would leave 100 of
  132 idle); with one iteration the predictions are computed in the partial sums'
  blocks — two kernels. Tiles are whole (``tile``: the largest divisor of
  ``in_caps`` not above the knob), so no block reads past the inputs. Chosen where
  it makes fewer kernels than the generic template (not for the routing's
  gradients, whose graphs put many stages in several kernels).

Why not one block per sample at every size: the per-sample state (three logits-shaped
stages at least, 135 KiB) exceeds static shared memory; the dynamic shared memory a
block may opt into (227 KiB on sm_90) is not something the code generator has, and
one block per sample would use 32 of the GPU's SMs. Why not recompute ``u_hat`` in
each kernel from ``W`` (5.9 MB, read from L2) instead of reading it (23 MB written
once, read five times from L2): a stage is computed in one place in a schedule, so a
recomputation would need a second copy of the stage in the compute definition.

The same plans fuse any chain whose stages are all indexed by the output's first
axis (the sample): EM routing's steps (``em_routing``'s pose or activations) and the
routing's gradient with respect to ``u`` (``schedules/cuda/__init__.py``'s
``OWN_TEMPLATES``); stages that are not per sample (or are read by one that is
not) become kernels of their own, before the fused one. The gradient with respect to
``W`` sums over the batch a per-sample tensor (the gradient of ``u_hat``): that tensor's
chain is fused the same way, the sum over the batch is a kernel after it (one thread
per weight, its sum in a register).

Knobs (``DEFAULT``): ``threads`` per sample (a multiple of 32), ``samples`` per block
(the largest divisor of the batch not above the knob, so every block has whole samples;
``threads x samples`` at most 1024). More samples per block: fewer, fuller blocks for
small routings, but ``samples`` times the shared memory. ``tile``: input capsules per
block when they are split (on ``threadIdx.y``, the other axes on ``threads / tile``
lanes of ``threadIdx.x``). ``plan``: one of ``PLANS`` to force it where the
computation allows (tests, tuning), None for the first that fits.
"""
from __future__ import annotations

from dataclasses import dataclass

from tensordsl.ir import dtype as dt
from tensordsl.ir import nodes as n
from tensordsl.lower.gpu import MAX_SHARED_BYTES, SHARED_ALIGNMENT
from tensordsl.te.api import thread_axis
from tensordsl.te.tensor import ComputeOp, PlaceholderOp

from .generic import bind_flat, schedule_generic

DEFAULT = {"threads": 128, "samples": 1, "tile": 32, "plan": None}

# the plans, in the order they are tried
ONE_KERNEL, PREDICTIONS_APART = "one kernel", "predictions apart"
SPLIT_INPUTS, GENERIC = "inputs split over blocks", "generic"
PLANS = (ONE_KERNEL, PREDICTIONS_APART, SPLIT_INPUTS, GENERIC)


def schedule_capsule_routing(s, out, config=None):
    """Schedule ``out`` by the plan ``plan`` chooses for it — or, for a sum over the
    batch of a per-sample tensor (the routing's gradient with respect to ``W``), for
    that tensor, the sum a kernel after it; returns ``s``."""
    cfg = _config(config)
    anchor = _summed_over_batch(out)
    if anchor is None or _per_sample_stages(s, out):
        if _fuse_per_sample(s, out, cfg):
            return s
    elif _fuse_per_sample(s, anchor, cfg):
        local = _register_sum(s, out)
        thread = bind_flat(s[out], cfg["threads"])
        if local is not None:
            s[local].compute_at(s[out], thread)
        return s
    return schedule_generic(s, out, {"threads": cfg["threads"]})


def plan(s, out, cfg) -> tuple[str, set, set]:
    """``(plan, fused, apart)``: the first plan of the module docstring that fits shared
    memory (or ``cfg["plan"]``, where the computation allows it), the stages computed
    in the block of ``out``'s samples (``fused``) and, of those, the predictions computed
    by a kernel of their own (``apart``; both empty but for the first two plans)."""
    forced = cfg["plan"]
    fused = _per_sample_stages(s, out)
    if not fused:
        return _refuse_forced(forced, "its stages are not per sample")
    samples = _samples_per_block(out, cfg["samples"])
    kept = {op for op in fused if not _inlinable(s, s[op])}
    if forced in (None, ONE_KERNEL) and (forced or _shared_bytes(s, kept, samples) <=
                                         MAX_SHARED_BYTES):
        return ONE_KERNEL, kept, set()
    apart = {op for op in kept if _reads_only_inputs(op)}
    if forced in (None, PREDICTIONS_APART) and apart and (
            forced or _shared_bytes(s, kept - apart, samples) <= MAX_SHARED_BYTES):
        return PREDICTIONS_APART, kept, apart
    if forced in (None, SPLIT_INPUTS):
        # (tried on a copy: splitting the sums rewrites the schedule)
        from tensordsl.schedule.schedule import create_schedule
        groups = _split_groups(create_schedule(out.op), out, cfg)
        if groups is not None and (forced or (
                groups.largest_block_bytes() <= MAX_SHARED_BYTES
                and len(groups.anchors) < _generic_kernels(s, out))):
            return SPLIT_INPUTS, set(), set()
    if forced in (None, GENERIC):
        return GENERIC, set(), set()
    return _refuse_forced(forced, "it has no predictions computed from the inputs alone"
                          if forced == PREDICTIONS_APART else
                          "it has no per-sample sum over the input capsules")


def _generic_kernels(s, out) -> int:
    """The kernels the generic template makes of ``out`` and the stages it reads: one
    per stage that is not inlined."""
    return 1 + sum(1 for op in _upstream(s, out) if op.reduce_axis or op.num_outputs > 1)


def _refuse_forced(forced, why: str):
    """The generic plan, unless another was asked for: then an error saying ``why`` not."""
    if forced not in (None, GENERIC):
        raise ValueError(f"capsule CUDA template: plan {forced!r} cannot schedule this "
                         f"computation: {why}")
    return GENERIC, set(), set()


def _fuse_per_sample(s, out, cfg) -> bool:
    """Schedule ``out`` (a per-sample tensor) and the stages it reads by ``plan``;
    False, and ``s`` untouched, when the plan is the generic one."""
    chosen, fused, apart = plan(s, out, cfg)
    if chosen == GENERIC:
        return False
    if chosen == SPLIT_INPUTS:
        _schedule_split(s, _split_groups(s, out, cfg), cfg)
        return True
    threads = cfg["threads"]
    # (decided before scheduling: cache_write adds stages and rewires their readers)
    roles = {}
    for op in _compute_stages(s, out):
        if s[op].is_output:
            continue
        if op in fused and op not in apart:
            roles[op] = "padded block" if _pad_rows(s, op) else "block"
        elif _inlinable(s, s[op]):
            roles[op] = "inline"
        else:
            roles[op] = "kernel"
    samples = _samples_per_block(out, cfg["samples"])
    local = _register_sum(s, out)
    O = s[out]
    block, inner = O.split(out.op.axis[0], factor=samples)
    O.bind(block, thread_axis("blockIdx.x"))
    _over_threads(s, O, (inner, samples), out.op.axis[1:], threads, local)
    for op, role in roles.items():
        if role in ("block", "padded block"):
            s[op].set_scope("shared")
            if role == "padded block":
                s[op].storage_align(op.axis[-2], 2, 1)
            local = _register_sum(s, op.output(0))
            s[op].compute_at(O, block)
            _over_threads(s, s[op], (op.axis[0], samples), op.axis[1:], threads, local)
        elif role == "inline":
            s[op].compute_inline()
        else:
            bind_flat(s[op], threads)
    return True


def _summed_over_batch(out):
    """The per-sample tensor whose sum over the batch ``out`` is (its one reduction, over
    the first axis of one computed input), or None."""
    op = out.op
    if not isinstance(op, ComputeOp) or len(op.reduce_axis) != 1:
        return None
    batch = _extent(op.reduce_axis[0])
    summed = [t for t in op.input_tensors if isinstance(t.op, ComputeOp) and t.op.axis
              and _extent(t.op.axis[0]) == batch]
    return summed[0] if len(summed) == 1 else None


def _config(config) -> dict:
    cfg = {**DEFAULT, **(config or {})}
    threads, samples = cfg["threads"], cfg["samples"]
    if not isinstance(threads, int) or threads % 32 or not 32 <= threads <= 1024:
        raise ValueError(f"capsule CUDA template: threads must be a multiple of 32 up to "
                         f"1024, got {threads!r}")
    if not isinstance(samples, int) or samples < 1 or threads * samples > 1024:
        raise ValueError(f"capsule CUDA template: samples must be a positive int with "
                         f"threads x samples at most 1024, got {samples!r} ({threads} "
                         f"threads)")
    if cfg["plan"] not in (None, *PLANS):
        raise ValueError(f"capsule CUDA template: plan must be one of {PLANS} or None (the "
                         f"first that fits), got {cfg['plan']!r}")
    tile = cfg["tile"]
    if not isinstance(tile, int) or not 1 <= tile <= threads:
        raise ValueError(f"capsule CUDA template: tile must be a positive int up to threads "
                         f"({threads}), got {tile!r}")
    return cfg


def _extent(iv) -> int | None:
    e = iv.dom.extent
    return e.value if isinstance(e, n.IntImm) else None


def _samples_per_block(out, knob: int) -> int:
    """The largest divisor of the batch not above ``knob``: every block has whole
    samples, so no stage of the last block reads past the batch."""
    batch = _extent(out.op.axis[0]) or 1
    return max(d for d in range(1, min(knob, batch) + 1) if batch % d == 0)


def _compute_stages(s, out) -> list:
    """The compute stages' ops but ``out``'s (None: all), producers first."""
    return [st.op for st in s.stages if isinstance(st.op, ComputeOp)
            and (out is None or st.op is not out.op)]


def _upstream(s, out) -> list:
    """The compute stages' ops ``out`` reads, directly or not, producers first."""
    seen, todo = set(), [s[out]]
    while todo:
        for t in todo.pop().op.input_tensors:
            stage = s.stage_map.get(t.op)
            if stage is not None and stage not in seen:
                seen.add(stage)
                todo.append(stage)
    return [st.op for st in s.stages if st in seen and isinstance(st.op, ComputeOp)]


def _readers(s, op) -> list:
    """The compute stages' ops that read ``op``'s stage (by stage: a reader made before
    ``rfactor`` or ``cache_write`` replaced the stage's op reads the old one)."""
    stage = s[op]
    return [st.op for st in s.stages if isinstance(st.op, ComputeOp)
            and any(s.stage_map.get(t.op) is stage for t in st.op.input_tensors)]


def _per_sample_stages(s, out) -> set:
    """The stages to compute in the output's block: those whose first axis has the
    batch's extent and whose readers are all such stages (or the output); none when the
    output is not per sample (a constant batch, and an axis more)."""
    if len(out.op.axis) < 2 or out.op.num_outputs != 1 or _extent(out.op.axis[0]) is None:
        return set()
    batch = _extent(out.op.axis[0])
    # (a stage of one element per sample would have no axis for the threads)
    fused = {op for op in _compute_stages(s, out)
             if len(op.axis) >= 2 and _extent(op.axis[0]) == batch}
    changed = True
    while changed:     # (a stage read outside the block cannot be computed in it)
        changed = False
        for op in list(fused):
            if any(r is not out.op and r not in fused for r in _readers(s, op)):
                fused.discard(op)
                changed = True
    return fused


def _inlinable(s, stage) -> bool:
    """Elementwise, and read by one stage of its own shape: inlining computes each of
    its elements once (squash's scale inlined into the agreement, read for every input
    capsule, would take a square root per element of ``u_hat``)."""
    op = stage.op
    if op.reduce_axis or op.num_outputs != 1 or stage.is_output:
        return False
    readers = _readers(s, op)
    return len(readers) == 1 and \
        repr(readers[0].output(0).shape) == repr(op.output(0).shape)


def _reads_only_inputs(op) -> bool:
    return all(isinstance(t.op, PlaceholderOp) for t in op.input_tensors)


def _shared_bytes(s, ops, samples: int) -> int:
    """Shared memory of ``ops`` computed for ``samples`` samples at a time (their rows
    padded by ``_pad_rows``)."""
    total = 0
    for op in ops:
        size = samples
        for iv in op.axis[1:-1]:
            size *= _extent(iv) or 1 << 30     # (symbolic: never fits)
        row = _extent(op.axis[-1]) or 1 << 30
        size *= row + 1 if _pad_rows(s, op) else row
        total += _aligned(size * _element_bytes(op))
    return total


def _aligned(nbytes: int) -> int:
    """Shared memory an array of ``nbytes`` takes: each starts on ``SHARED_ALIGNMENT``."""
    return -(-nbytes // SHARED_ALIGNMENT) * SHARED_ALIGNMENT


def _pad_rows(s, op) -> bool:
    """Whether ``op``'s rows (its last axis) should start an odd number of words apart
    (``storage_align``): a reader sums along them, each thread its own row, so the
    threads of a warp read words a row apart — an even row length (the agreement's 16
    capsule dimensions) puts them in a few banks (16-way conflicts), an odd one in
    different banks."""
    from tensordsl.ir.visitor import post_order
    row = _extent(op.axis[-1]) if len(op.axis) >= 3 else None
    if not row or row % 2:
        return False
    stage = s[op]
    for reader in _readers(s, op):
        summed = {iv.var for iv in reader.reduce_axis}
        for e in post_order(reader.body[0]):
            if isinstance(e, n.TensorRead) and s.stage_map.get(e.tensor.op) is stage and \
                    e.indices[-1] in summed:
                return True
    return False


def _element_bytes(op) -> int:
    """Bytes of one element of each of ``op``'s outputs."""
    return max(1, dt.bits(op.output(0).dtype) // 8) * op.num_outputs


def _register_sum(s, tensor):
    """A reduction's sum in a register: a ``local`` stage (returned; None for an
    elementwise stage) computed at the thread of each element and stored once — in
    shared memory every step of the sum would be a load and a store, and the zeroing a
    barrier before the first."""
    op = tensor.op
    if not op.reduce_axis or op.num_outputs != 1:
        return None
    return s.cache_write(tensor, "local")


def _over_threads(s, stage, sample, axes, threads: int, local):
    """The block's samples (``sample``: the axis and how many) on ``threadIdx.y``;
    ``axes`` (a sample's elements of the stage) fused and dealt out to
    ``threads`` threads on ``threadIdx.x``; the ``local`` sum (if any) at each thread's
    element. (Fused with the elements, the samples would bound a tile through the
    division of the last, partly guarded, pass of the threads: one sample more than the
    block has.)"""
    axes = list(axes)
    fused = stage.fuse(*axes) if len(axes) > 1 else axes[0]
    _, thread = stage.split(fused, factor=threads)
    stage.bind(thread, thread_axis("threadIdx.x"))
    axis, samples = sample
    if samples > 1:
        stage.bind(axis, thread_axis("threadIdx.y"))
    if local is not None:
        s[local].compute_at(stage, thread)


# ---------------------------------------------------------------- inputs split over blocks


@dataclass
class _Groups:
    """The split plan of a schedule: ``anchors`` (op -> how its blocks are laid out:
    "tiles" for a sum's partial sums, "inputs" for a stage over the input capsules,
    "samples" otherwise), each stage's anchor (``group``; the others are computed at
    their anchor's block) unless it is ``inline``, the input capsules ``inputs`` and the
    ``tile`` a block takes."""
    anchors: dict
    group: dict
    inline: set
    inputs: int
    tile: int

    def largest_block_bytes(self) -> int:
        """The most shared memory one anchor's block takes (each stage's per-sample size,
        its input capsules a tile's where the anchor's blocks take tiles)."""
        used = {}
        for op, anchor in self.group.items():
            if op is anchor:
                continue
            tiled = self.anchors[anchor] != "samples"
            size = 1
            for iv in op.axis[1:]:
                extent = _extent(iv) or 1 << 30
                size *= self.tile if tiled and extent == self.inputs else extent
            used[anchor] = used.get(anchor, 0) + _aligned(size * _element_bytes(op))
        return max(used.values(), default=0)


def _input_sums(s, out) -> tuple[list, int] | None:
    """The per-sample sums over the input capsules (``s`` of each iteration: one
    reduction axis, reading ``T[b, i, ...]`` with ``i`` running over all of ``T``'s
    second dimension) and how many inputs there are; None without any, or when the
    chain is not all per sample."""
    from tensordsl.ir.visitor import post_order
    fused = _per_sample_stages(s, out)
    if not fused or any(op not in fused for op in _upstream(s, out)):
        return None
    sums, inputs = [], set()
    for op in _upstream(s, out):     # (in order: the schedule's trace replays it)
        if len(op.reduce_axis) != 1 or op.num_outputs != 1:
            continue
        r = op.reduce_axis[0]
        for e in post_order(op.body[0]):
            if isinstance(e, n.TensorRead) and len(e.indices) >= 2 and \
                    e.indices[0] is op.axis[0].var and e.indices[1] is r.var and \
                    _extent(r) is not None and \
                    repr(e.tensor.shape[1]) == repr(r.dom.extent):
                sums.append(op)
                inputs.add(_extent(r))
                break
    if not sums or len(inputs) != 1:
        return None
    return sums, inputs.pop()


def _split_groups(s, out, cfg) -> _Groups | None:
    """Split each sum over the input capsules into partial sums per tile (``rfactor``:
    ``P[b, tile, ...]``, the sum then over the tiles), and group the stages: the output
    and the partial sums are anchors (kernels); a stage whose readers are all in one
    anchor's group joins it, an elementwise one read in several is inlined into them,
    any other is an anchor of its own."""
    found = _input_sums(s, out)
    if found is None:
        return None
    sums, inputs = found
    tile = max(d for d in range(1, min(cfg["tile"], inputs) + 1) if inputs % d == 0)
    anchors = {out.op: "samples"}
    for op in sums:
        T = op.output(0)
        outer, _ = s[T].split(op.reduce_axis[0], factor=tile)
        anchors[s.rfactor(T, outer, factor_axis=1).op] = "tiles"
    # the anchors each stage's values are read in (an inlined stage: its readers')
    owners = {out.op: {out.op}}
    group, inline = {out.op: out.op}, set()
    for op in reversed(_upstream(s, out)):
        if op in anchors:
            owners[op], group[op] = {op}, op
            continue
        mine = set().union(*(owners[r] for r in _readers(s, op)))
        # (read in several kernels, an elementwise stage is recomputed in each, as the
        # generic template does)
        if _inlinable(s, s[op]) or (len(mine) > 1 and not op.reduce_axis and
                                    op.num_outputs == 1):
            owners[op] = mine
            inline.add(op)
        elif len(mine) == 1:
            owners[op], group[op] = mine, next(iter(mine))
        else:
            tiled = len(op.axis) > 2 and _extent(op.axis[1]) == inputs
            anchors[op] = "inputs" if tiled else "samples"
            owners[op], group[op] = {op}, op
    return _Groups(anchors, group, inline, inputs, tile)


def _schedule_split(s, groups: _Groups, cfg):
    """Each anchor a kernel: blocks over its samples (``blockIdx.y``) and tiles
    (``blockIdx.x``), or its samples alone; its group's stages computed at the block in
    shared memory, a tile's input capsules on ``threadIdx.y`` and the rest on
    ``threadIdx.x`` (``threads / tile`` of them)."""
    tile = groups.tile
    lanes = max(1, cfg["threads"] // tile)
    blocks = {}
    order = [op for op in _compute_stages(s, None)
             if op in groups.group or op in groups.inline]
    for op in order:
        kind = groups.anchors.get(op)
        if kind is None:
            continue
        local = _register_sum(s, op.output(0))
        stage = s[op.output(0)]
        sample, *rest = op.axis
        if kind == "samples":
            stage.bind(sample, thread_axis("blockIdx.x"))
            blocks[op] = (stage, sample)
            inputs = None
        else:
            stage.bind(sample, thread_axis("blockIdx.y"))
            if kind == "tiles":
                block, inputs = rest.pop(0), None
            else:
                block, inputs = stage.split(rest.pop(0), factor=tile)
            stage.bind(block, thread_axis("blockIdx.x"))
            blocks[op] = (stage, block)
        _spread(s, stage, inputs, rest, lanes, tile, local)
    for op in order:
        if op in groups.anchors:
            continue
        if op in groups.inline:
            s[op].compute_inline()
            continue
        anchor_stage, block = blocks[groups.group[op]]
        s[op].set_scope("shared")
        local = _register_sum(s, op.output(0))
        s[op].compute_at(anchor_stage, block)
        rest = list(op.axis[1:])
        tiled = groups.anchors[groups.group[op]] != "samples"
        inputs = rest.pop(0) if tiled and len(rest) > 1 and \
            _extent(rest[0]) == groups.inputs else None
        _spread(s, s[op], inputs, rest, lanes, tile, local)


def _spread(s, stage, inputs, rest, lanes: int, tile: int, local):
    """A tile's input capsules (``inputs``, if the stage has them) on ``threadIdx.y``,
    one each — exactly, so the tiles the stage reads are a tile's too — and the other
    axes ``rest`` fused on ``threadIdx.x``, ``lanes`` at a time; without ``inputs``, the
    ``rest`` over both. The ``local`` sum (if any) at each thread's element."""
    fused = stage.fuse(*rest) if len(rest) > 1 else rest[0]
    if inputs is not None:
        stage.bind(inputs, thread_axis("threadIdx.y"))
        _, x = stage.split(fused, factor=lanes)
    else:
        _, inner = stage.split(fused, factor=lanes * tile)
        y, x = stage.split(inner, factor=lanes)
        stage.bind(y, thread_axis("threadIdx.y"))
    stage.bind(x, thread_axis("threadIdx.x"))
    if local is not None:
        s[local].compute_at(stage, x)
