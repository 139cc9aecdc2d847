"""The GPU template of capsule routing (``kernels/capsule.py``): a sample's whole routing
in one thread block.

Under the generic template every stage of the unrolled routing is a kernel of its own
(14 for 3 iterations), each a pass over global memory and a launch; the stages are
tiny (a sample's ``s`` is 10 x 16 floats), so launches and memory round trips are all
the time there is. Here the output's samples go to ``blockIdx.x`` (``samples`` of them
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
capsule each) read ``u_hat`` ``out_dim`` words apart: bank conflicts, the price of
giving each its dot product whole.
Elementwise stages read once by a stage of their own shape are inlined.

What fits decides what is fused: shared memory holds 48 KiB per block (the code
generator's static ``__shared__`` arrays, ``tensordsl/lower/gpu.py``), and a sample's
stages each take their size in it:

* everything fits (e.g. 32 input capsules x 10 x 16: ``u_hat`` 20 KiB, the logits,
  coefficients and softmax rows ~10 KiB): one kernel, nothing but ``u`` and ``W`` read
  from global memory, ``v`` written to it;
* the routing fits without the predictions (``u_hat`` larger than the rest allows, up
  to ~150 input capsules x 10 output capsules): ``u_hat`` is computed apart by a kernel
  of one thread per element (all the GPU's blocks in use) and the
  routing reads it from global memory (from L2: one sample's is read by one block, five
  times for 3 iterations) — two kernels;
* neither (the paper's 1152 x 10: every logits-shaped stage is 45 KiB, ``u_hat`` 720
  KiB): the generic template. Fusing these needs more than static shared memory: the
  dynamic shared memory a block may opt into (227 KiB on sm_90) for the logits and
  coefficients, and ``u_hat`` recomputed from ``W`` per iteration or split over blocks
  with a second reduction — none of which the code generator has yet.

The same template fuses any chain whose stages are all indexed by the output's first
axis (the sample): EM routing's steps (``em_routing``'s pose or activations) and the
routing's gradient with respect to ``u`` (``schedules/cuda/__init__.py``'s
``GRADIENT_TEMPLATES``); stages that are not per sample (or are read by one that is
not) become kernels of their own, before the fused one. The gradient with respect to
``W`` sums over the batch a per-sample tensor (the gradient of ``u_hat``): that tensor's
chain is fused the same way, the sum over the batch is a kernel after it (one thread
per weight, its sum in a register).

Knobs (``DEFAULT``): ``threads`` per sample (a multiple of 32), ``samples`` per block
(the largest divisor of the batch not above the knob, so every block has whole samples;
``threads x samples`` at most 1024). More samples per block: fewer, fuller blocks for
small routings, but ``samples`` times the shared memory.
"""
from __future__ import annotations

from tensordsl.ir import dtype as dt
from tensordsl.ir import nodes as n
from tensordsl.lower.gpu import MAX_SHARED_BYTES
from tensordsl.te.api import thread_axis
from tensordsl.te.tensor import ComputeOp, PlaceholderOp

from .generic import bind_flat, schedule_generic

DEFAULT = {"threads": 128, "samples": 1}

# the plans, in the order they are tried
ONE_KERNEL, PREDICTIONS_APART, GENERIC = "one kernel", "predictions apart", "generic"


def schedule_capsule_routing(s, out, config=None):
    """Schedule ``out`` by the plan ``plan`` chooses for it — or, for a sum over the
    batch of a per-sample tensor (the routing's gradient with respect to ``W``), for
    that tensor, the sum a kernel after it; returns ``s``."""
    cfg = _config(config)
    if _fuse_per_sample(s, out, cfg):
        return s
    anchor = _summed_over_batch(out)
    if anchor is not None and _fuse_per_sample(s, anchor, cfg):
        local = _register_sum(s, out)
        thread = bind_flat(s[out], cfg["threads"])
        if local is not None:
            s[local].compute_at(s[out], thread)
        return s
    return schedule_generic(s, out, {"threads": cfg["threads"]})


def plan(s, out, cfg) -> tuple[str, set, set]:
    """``(plan, fused, apart)``: which plan fits shared memory (module docstring), the
    stages computed in the block of ``out``'s samples (``fused``) and, of those, the
    predictions computed by a kernel of their own (``apart``)."""
    fused = _per_sample_stages(s, out)
    if not fused:
        return GENERIC, set(), set()
    samples = _samples_per_block(out, cfg["samples"])
    kept = {op for op in fused if not _inlinable(s, s[op])}
    if _shared_bytes(kept, samples) <= MAX_SHARED_BYTES:
        return ONE_KERNEL, kept, set()
    apart = {op for op in kept if _reads_only_inputs(op)}
    if apart and _shared_bytes(kept - apart, samples) <= MAX_SHARED_BYTES:
        return PREDICTIONS_APART, kept, apart
    return GENERIC, set(), set()


def _fuse_per_sample(s, out, cfg) -> bool:
    """Schedule ``out`` (a per-sample tensor) and the stages it reads by ``plan``;
    False, and ``s`` untouched, when the plan is the generic one."""
    chosen, fused, apart = plan(s, out, cfg)
    if chosen == GENERIC:
        return False
    threads = cfg["threads"]
    # (decided before scheduling: cache_write adds stages and rewires their readers)
    roles = {}
    for op in _compute_stages(s, out):
        if s[op].is_output:
            continue
        if op in fused and op not in apart:
            roles[op] = "block"
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
        if role == "block":
            s[op].set_scope("shared")
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
    """The compute stages but ``out``'s."""
    return [st.op for st in s.stages if isinstance(st.op, ComputeOp) and st.op is not out.op]


def _readers(s, op) -> list:
    return [st.op for st in s.stages if isinstance(st.op, ComputeOp)
            and any(t.op is op for t in st.op.input_tensors)]


def _per_sample_stages(s, out) -> set:
    """The stages to compute in the output's block: those whose first axis has the
    batch's extent and whose readers are all such stages (or the output); none when the
    output is not per sample (a constant batch, and an axis more)."""
    if len(out.op.axis) < 2 or out.op.num_outputs != 1 or _extent(out.op.axis[0]) is None:
        return set()
    batch = _extent(out.op.axis[0])
    fused = {op for op in _compute_stages(s, out)
             if op.axis and _extent(op.axis[0]) == batch}
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


def _shared_bytes(ops, samples: int) -> int:
    """Shared memory of ``ops`` computed for ``samples`` samples at a time."""
    total = 0
    for op in ops:
        size = samples
        for iv in op.axis[1:]:
            size *= _extent(iv) or 1 << 30     # (symbolic: never fits)
        total += size * max(1, dt.bits(op.output(0).dtype) // 8) * op.num_outputs
    return total


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
