"""The lowering pipeline, in order. Each pass is a function ``PrimFunc -> PrimFunc``
except the first two, which turn the schedule into IR.

    check_bounds      reads outside a tensor refused (static) or
                      checked at call time (symbolic sizes)  (check_bounds.py)
    bound_inference   ranges of every stage's axes            (bound_inference.py)
    schedule_ops      loop nests, compute_at, inlining, init  (schedule_ops.py)
    checked_reads     reads no interval bounds (A[idx[i]]) guarded as they run
                      (checked_reads.py)
    simplify          index arithmetic, guards proved away    (arith/simplify.py)
    flatten_storage   tensors -> flat buffers, allocations    (flatten_storage.py)
    inject_virtual_threads  vthread loops -> interleaved copies (inject_virtual_threads.py)
    simplify_flat     the flattened offsets
    forward_copies    an intermediate copied whole into an output computed there
                      (forward_copies.py)
    unswitch_guards   boundary checks hoisted out of the hot loops (unswitch_guards.py)
    vectorize         vectorized loops -> vector operations   (vectorize.py)
    batch_vector_sums a block of whole-axis sums -> one transpose-and-add network
                      (batch_vector_sums.py)
    unroll            unrolled loops -> copies of the body    (unroll.py)
    local_accumulators  reduction loops accumulate in registers (local_accumulators.py)
    plan_workspace    large temporaries -> buffers the runtime provides once per thread
    simplify_final

For the GPU (``target="cuda"``) the CPU-specific passes (loop partitioning, register
accumulators, workspace) give way to those of ``gpu.py``:

    checked_reads, simplify, flatten_storage, inject_virtual_threads, simplify_flat,
    vectorize, unroll,
    check_kernels         everything inside kernels; per-thread buffers become local
    guard_thread_extents  loops narrower than their launch dimension are guarded
    insert_barriers       __syncthreads() where shared tiles pass between threads
    async_copies          pipelined tiles copied with cp.async, stages ahead (async_copies.py)
    sink_guards           every thread reaches every barrier
    check_limits          threads per block, shared memory per block
    check_tensor_cores    WMMA calls on whole warps, tiles with 16-byte rows on 32 bytes
    simplify_final

``td.lower(s, args, stop_after=NAME)`` returns the IR after any of them.
"""
from __future__ import annotations

from ..arith.simplify import Simplifier
from ..errors import BuildError
from ..ir import nodes as n
from ..ir.verify import undefined_vars, verify
from ..ir.visitor import free_vars
from ..schedule.schedule import Schedule
from ..te.tensor import PlaceholderOp, Tensor
from . import gpu
from .async_copies import pipeline_async_copies
from .batch_vector_sums import batch_vector_sums
from .bound_inference import infer_bounds
from .check_bounds import access_checks
from .checked_reads import checked_reads
from .flatten_storage import flatten_storage
from .forward_copies import forward_copies
from .inject_virtual_threads import inject_virtual_threads
from .schedule_ops import schedule_ops
from .local_accumulators import local_accumulators
from .plan_workspace import plan_workspace
from .unroll import unroll_loops
from .unswitch_guards import unswitch_guards
from .vectorize import vectorize_loops


def simplify(f: n.PrimFunc) -> n.PrimFunc:
    # Shape variables are sizes: never negative.
    ranges = {p: (0, None) for p in f.params if isinstance(p, n.Var)}
    return f.with_body(Simplifier(ranges).visit(f.body))


def flatten(f: n.PrimFunc) -> n.PrimFunc:
    body, doubled, pipelined = flatten_storage(
        f.body, f.attrs["tensor_buffers"], f.attrs["aligns"],
        f.attrs.get("double_buffered_ops", frozenset()), f.attrs.get("pipelined_ops", {}),
        f.attrs.get("swizzled_ops", frozenset()), f.attrs.get("tma_ops", frozenset()))
    return n.PrimFunc(f.name, f.params, body, f.outputs,
                      {**f.attrs, "double_buffered": tuple(doubled),
                       "pipelined": tuple(pipelined)})


def unswitch(f: n.PrimFunc) -> n.PrimFunc:
    return f.with_body(unswitch_guards(f.body))


def vectorize(f: n.PrimFunc) -> n.PrimFunc:
    return f.with_body(vectorize_loops(f.body))


def batch_sums(f: n.PrimFunc) -> n.PrimFunc:
    return f.with_body(batch_vector_sums(f.body))


def unroll(f: n.PrimFunc) -> n.PrimFunc:
    return f.with_body(unroll_loops(f.body))


def accumulate_locally(f: n.PrimFunc) -> n.PrimFunc:
    return f.with_body(local_accumulators(f.body))


PASSES = [
    ("checked_reads", checked_reads),
    ("simplify", simplify),
    ("flatten_storage", flatten),
    ("inject_virtual_threads", inject_virtual_threads),
    ("simplify_flat", simplify),
    ("forward_copies", forward_copies),
    ("unswitch_guards", unswitch),
    ("vectorize", vectorize),
    ("batch_vector_sums", batch_sums),
    ("unroll", unroll),
    ("local_accumulators", accumulate_locally),
    ("plan_workspace", plan_workspace),
    ("simplify_final", simplify),
]
GPU_PASSES = [
    ("checked_reads", checked_reads),
    ("simplify", simplify),
    ("flatten_storage", flatten),
    ("inject_virtual_threads", inject_virtual_threads),
    ("fold_unit_threads", gpu.fold_unit_threads),
    ("simplify_flat", simplify),
    ("vectorize", vectorize),
    ("unroll", unroll),
    ("check_kernels", gpu.check_kernels),
    ("guard_thread_extents", gpu.guard_thread_extents),
    ("insert_barriers", gpu.insert_barriers),
    ("async_copies", pipeline_async_copies),
    ("sink_guards", gpu.sink_guards),
    ("check_limits", gpu.check_limits),
    ("check_tensor_cores", gpu.check_tensor_cores),
    ("simplify_final", simplify),
]
PASS_NAMES = ("bound_inference", "schedule_ops") + tuple(
    dict.fromkeys(name for name, _ in PASSES + GPU_PASSES))


def passes_for(target) -> list:
    kind = getattr(target, "kind", None) or str(target or "llvm").split()[0]
    return GPU_PASSES if kind == "cuda" else PASSES


def lower(schedule: Schedule, args, name: str = "main", stop_after: str | None = None,
          verify_passes: bool = False, target=None, check_indices: bool = True,
          simple_mode: bool = False):
    """Lower a schedule to a ``PrimFunc`` taking ``args`` (tensors) in order, with the
    passes of ``target`` (``"llvm"`` or ``"cuda"``). ``check_indices``: guard reads
    whose indices cannot be bounded in advance (``checked_reads.py``). ``simple_mode``
    is TVM's flag, accepted for ported programs: our IR always prints simply.
    ``target`` None: the enclosing ``td.target.Target``, else ``"llvm"``."""
    from ..target import resolve
    target = resolve(target)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"lower: schedule must be a td.Schedule, got {type(schedule).__name__}")
    if stop_after is not None and stop_after not in PASS_NAMES:
        raise ValueError(f"stop_after: expected one of {', '.join(PASS_NAMES)}, "
                         f"got {stop_after!r}")
    tensors = _canonical_args(schedule, args)
    checks, unbounded = access_checks(st.op for st in schedule.stages)
    bounds = infer_bounds(schedule)
    if stop_after == "bound_inference":
        return bounds
    body = schedule_ops(schedule, bounds, tensors)
    func = _make_func(schedule, name, tensors, body)
    func = n.PrimFunc(func.name, func.params, func.body, func.outputs,
                      {**func.attrs, "access_checks": tuple(checks),
                       "unbounded_reads": unbounded, "check_indices": check_indices})
    if verify_passes:
        verify(func, "schedule_ops")
    if stop_after == "schedule_ops":
        return func
    for pass_name, run in passes_for(target):
        func = run(func)
        if verify_passes:
            verify(func, pass_name)
        if pass_name == stop_after:
            break
    return func


def _canonical_args(schedule: Schedule, args) -> list[Tensor]:
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args: expected a list of tensors, got {type(args).__name__}")
    tensors = []
    for k, a in enumerate(args):
        if not isinstance(a, Tensor):
            raise TypeError(f"args[{k}]: expected a tensor, got {type(a).__name__} {a!r}")
        if a.op not in schedule.stage_map and isinstance(a.op, PlaceholderOp):
            tensors.append(a)  # an input the computation does not read
            continue
        t = schedule.canonical(a)
        stage = schedule[t]
        if stage.attach_type != "root":
            raise BuildError(f"args[{k}]: tensor {a.name!r} is an argument, so it must be "
                             f"computed at root, but its stage is {stage.attach_type}")
        if t in tensors:
            raise BuildError(f"args[{k}]: tensor {a.name!r} is passed twice")
        tensors.append(t)
    for op in schedule.outputs:
        for t in op.outputs:
            if schedule.canonical(t) not in tensors:
                raise BuildError(f"output {t.name!r} of the schedule is missing from args")
    return tensors


def _make_func(schedule, name, tensors, body) -> n.PrimFunc:
    buffers = {}
    for t in tensors:
        buffers[t] = n.Buffer(t.name, t.dtype, tuple(t.shape))
    scalars = []
    for t in tensors:
        for d in t.shape:
            for v in free_vars(d):
                if v not in scalars:
                    scalars.append(v)
    outputs = tuple(buffers[t] for t in tensors if not isinstance(t.op, PlaceholderOp))
    aligns = {st.op: st.align for st in schedule.stages if st.align}
    doubled = frozenset(st.op for st in schedule.stages if st.is_double_buffered)
    pipelined = {st.op: st.pipeline_stages for st in schedule.stages if st.pipeline_stages}
    swizzled = frozenset(st.op for st in schedule.stages if st.is_swizzled)
    tma = frozenset(st.op for st in schedule.stages if st.pipeline_tma)
    params = tuple(buffers[t] for t in tensors) + tuple(scalars)
    func = n.PrimFunc(name, params, body, outputs, {"tensor_buffers": buffers, "aligns": aligns,
                                                    "double_buffered_ops": doubled,
                                                    "pipelined_ops": pipelined,
                                                    "swizzled_ops": swizzled,
                                                    "tma_ops": tma,
                                                    "import_llvm": tuple(
                                                        code for st in schedule.stages
                                                        for code in st.llvm_imports)})
    unbound = undefined_vars(func)
    if unbound:
        raise BuildError(f"variable {unbound[0].name!r} is used but cannot be bound: it "
                         "appears in no argument's shape")
    return func
