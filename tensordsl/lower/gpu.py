"""GPU lowering: kernels, their launch shape, and shared-memory synchronization.

After ``schedule_ops`` a GPU function is host code (a sequence, allocations of
intermediate tensors) around *kernels*: top-level loops bound to ``blockIdx``/``threadIdx``.
A thread-bound loop means "this thread's index", not a loop; every loop bound to the
same tag in one kernel shares the launch dimension, the largest of their extents, and
a loop with a smaller extent gets a guard ``var < extent``.

Passes (each ``PrimFunc -> PrimFunc``), in the order ``pipeline.GPU_PASSES`` runs them:

    check_kernels       every statement runs inside a kernel; allocations in a kernel
                        are shared (per block) or local (per thread)
    guard_thread_extents  loops narrower than the launch dimension get their guard
    insert_barriers     __syncthreads() between a shared write and a read of it by
                        other threads, and before a loop's next iteration overwrites a
                        tile the last one read (not for double-buffered tiles)
    sink_guards         a guard around a barrier moves inside it: every thread of the
                        block must reach every barrier
    check_limits        threads per block and shared memory within the device's limits
    check_tensor_cores  each WMMA call runs on whole warps that agree on its fragment,
                        and its tiles lie where load/store_matrix_sync can reach them
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..arith.facts import multiple_of
from ..arith.simplify import simplify_expr
from ..errors import BuildError, ScheduleError
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor, free_vars, substitute
from .tma import is_arch_choice

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIM = {"x": 1024, "y": 1024, "z": 64}
MAX_SHARED_BYTES = 48 * 1024   # static __shared__ per block, every architecture
# A block with more declares its arrays in dynamic shared memory instead, up to what its
# architecture lets a kernel opt into (cuFuncSetAttribute; CUDA's programming guide,
# "maximum amount of shared memory per thread block"); an architecture not listed: none.
MAX_OPTIN_SHARED_BYTES = {"sm_70": 96 * 1024, "sm_72": 96 * 1024, "sm_75": 64 * 1024,
                          "sm_80": 163 * 1024, "sm_86": 99 * 1024, "sm_87": 163 * 1024,
                          "sm_89": 99 * 1024, "sm_90": 227 * 1024, "sm_90a": 227 * 1024,
                          "sm_100": 227 * 1024, "sm_120": 99 * 1024}


def max_shared_bytes(arch: str) -> int:
    """The most shared memory a block may use on ``arch``."""
    return MAX_OPTIN_SHARED_BYTES.get(arch, MAX_SHARED_BYTES)


def dynamic_shared_bytes(kernel_bytes: int) -> int:
    """Of a kernel's shared memory, what it takes dynamically: all of it beyond the
    static limit (its arrays then carved from one dynamic array), else nothing."""
    return kernel_bytes if kernel_bytes > MAX_SHARED_BYTES else 0
SHARED_ALIGNMENT = 128         # where each __shared__ array starts (targets/cuda/codegen.py)


def is_kernel_root(stmt) -> bool:
    return isinstance(stmt, n.For) and stmt.kind == "thread_binding"


def host_parts(body: n.Stmt):
    """Yield the statements of the host part in order: ``Allocate`` of intermediates
    (with their bodies walked) and kernel roots; anything else is yielded too, so the
    caller can refuse it."""
    if isinstance(body, n.Seq):
        for s in body.stmts:
            yield from host_parts(s)
    elif isinstance(body, n.Allocate) and body.buffer.scope == "global":
        yield body
        yield from host_parts(body.body)
    else:
        yield body


def kernels(body: n.Stmt) -> list[n.For]:
    return [s for s in host_parts(body) if is_kernel_root(s)]


def thread_loops(kernel: n.Stmt) -> list[n.For]:
    out = []

    class _Walk(Visitor):
        def visit_For(self, node):
            if node.kind == "thread_binding":
                out.append(node)
            self.generic_visit(node)

    _Walk().visit(kernel)
    return out


def launch_dims(kernel: n.Stmt) -> dict[str, n.Expr]:
    """Tag (``blockIdx.x``, ``threadIdx.y``, ...) -> launch extent: the largest extent of
    the loops bound to it (thread extents must be constants)."""
    dims: dict[str, n.Expr] = {}
    for loop in thread_loops(kernel):
        tag, ext = loop.thread_tag, loop.extent
        if tag.startswith("threadIdx") and not isinstance(ext, n.IntImm):
            raise BuildError(f"the loop {loop.var.name!r} bound to {tag} has the symbolic "
                             f"extent {ext}; thread extents must be constants (split the "
                             "axis by a constant factor and bind the inner part)")
        old = dims.get(tag)
        if old is None:
            dims[tag] = ext
        elif isinstance(old, n.IntImm) and isinstance(ext, n.IntImm):
            dims[tag] = old if old.value >= ext.value else ext
        elif not _same(old, ext):
            dims[tag] = n.Max(old, ext)
    return dims


def _same(a, b) -> bool:
    from ..ir.printer import Printer
    p = Printer()
    return p.expr(a) == p.expr(b)


def _stage_names(stmt) -> str:
    names = []

    class _Stores(Visitor):
        def visit_Store(self, node):
            if node.buffer.name not in names:
                names.append(node.buffer.name)
            self.generic_visit(node)

    _Stores().visit(stmt)
    return ", ".join(repr(x) for x in names) or "(none)"


# ---------------------------------------------------------------- check_kernels


class _KernelScopes(Mutator):
    """Inside a kernel: a ``global`` allocation under a thread index is per thread
    (``local``); anywhere else it would be shared by threads that never synchronize."""

    def __init__(self):
        self.thread_depth = 0

    def visit_For(self, node):
        inner = node.kind == "thread_binding" and node.thread_tag.startswith("threadIdx")
        self.thread_depth += inner
        try:
            return self.generic_visit(node)
        finally:
            self.thread_depth -= inner

    def visit_Allocate(self, node):
        body = self.visit(node.body)
        buf = node.buffer
        if buf.scope == "global":
            if not self.thread_depth:
                raise BuildError(
                    f"stage {buf.name!r} is computed inside a kernel but outside its "
                    "threadIdx loops, in global memory; give it "
                    f"s[{buf.name}].set_scope('shared') (one copy per block) or compute it "
                    "inside the thread loops")
            buf = n.Buffer(buf.name, buf.dtype, buf.shape, "local", buf.data)
            body = _Rebuffer(node.buffer, buf).visit(body)
        if not isinstance(node.extent, n.IntImm):
            raise BuildError(f"stage {buf.name!r}: a {buf.scope} buffer in a kernel needs a "
                             f"constant size, got {node.extent}; tile the stage by constants")
        if body is node.body and buf is node.buffer:
            return node
        return n.Allocate(buf, node.extent, body)


class _Rebuffer(Mutator):
    def __init__(self, old, new):
        self.old, self.new = old, new

    def visit_Load(self, node):
        node = self.generic_visit(node)
        if node.buffer is self.old:
            return n.Load(node.dtype, self.new, node.index, node.predicate)
        return node

    def visit_Store(self, node):
        node = self.generic_visit(node)
        if node.buffer is self.old:
            return n.Store(self.new, node.value, node.index, node.predicate)
        return node


def check_kernels(f: n.PrimFunc) -> n.PrimFunc:
    for part in host_parts(f.body):
        if isinstance(part, n.Allocate) or is_kernel_root(part):
            continue
        if isinstance(part, n.For) and part.kind == "parallel":
            why = "a parallel loop is a CPU construct; bind it to blockIdx/threadIdx"
        elif isinstance(part, n.Evaluate) and isinstance(part.value, n.Call) \
                and part.value.name == "call_packed":
            raise BuildError(f"td.extern calling {part.value.args[0].value!r}: a packed "
                             "function runs Python on the host; build for the CPU "
                             "(target='llvm')")
        else:
            why = "bind its outer loops with s[T].bind(axis, td.thread_axis('blockIdx.x'))"
        raise BuildError(f"stage {_stage_names(part)} has a loop or statement outside any "
                         f"GPU kernel: {why}")
    return f.with_body(_map_kernels(f.body, lambda k: _KernelScopes().visit(k)))


# ---------------------------------------------------------------- guard_thread_extents


class _GuardExtents(Mutator):
    def __init__(self, dims):
        self.dims = dims

    def visit_For(self, node):
        node = self.generic_visit(node)
        if node.kind != "thread_binding":
            return node
        launch = self.dims[node.thread_tag]
        if _same(launch, node.extent):
            return node
        # the loop now spans the launch (what the hardware runs), so later passes know
        # the guard is needed
        body = n.IfThenElse(n.LT(node.var, node.extent), node.body)
        return n.For(node.var, node.min, launch, node.kind, body, node.thread_tag)


class _FoldUnitThreads(Mutator):
    def visit_For(self, node):
        node = self.generic_visit(node)
        if (node.kind == "thread_binding" and node.balance is None
                and isinstance(node.extent, n.IntImm) and node.extent.value == 1):
            body = substitute(node.body, {node.var: node.min})
            return n.For(node.var, node.min, node.extent, node.kind, body, node.thread_tag)
        return node


def fold_unit_threads(f: n.PrimFunc) -> n.PrimFunc:
    """A block or thread index of extent 1 (a batch of one bound to ``blockIdx.z``) is
    its minimum in the loop's body, so indices built from it fold to constants — a
    thread's register block then indexes its local array by constants only, which
    keeps it in registers (``local[b*16 + k]`` with ``b`` a launch index put conv2d's
    accumulator in local memory). The loop itself stays: it sets the launch."""
    return f.with_body(_FoldUnitThreads().visit(f.body))


def guard_thread_extents(f: n.PrimFunc) -> n.PrimFunc:
    def per_kernel(k):
        return _GuardExtents(launch_dims(k)).visit(k)
    return f.with_body(_map_kernels(f.body, per_kernel))


def _map_kernels(body, fn):
    class _Host(Mutator):
        def visit_For(self, node):
            return fn(node) if is_kernel_root(node) else node
    return _Host().visit(body)


# ---------------------------------------------------------------- insert_barriers


@dataclass
class _Access:
    reads: set = field(default_factory=set)
    writes: set = field(default_factory=set)


def _shared_access(stmt, shared: set) -> _Access:
    acc = _Access()

    class _Walk(Visitor):
        def visit_Load(self, node):
            if id(node.buffer) in shared:
                acc.reads.add(id(node.buffer))
            self.generic_visit(node)

        def visit_Store(self, node):
            if id(node.buffer) in shared:
                acc.writes.add(id(node.buffer))
            self.generic_visit(node)

    _Walk().visit(stmt)
    return acc


def _contains_barrier(stmt) -> bool:
    found = []

    class _Walk(Visitor):
        def visit_Barrier(self, node):
            found.append(node)

        def visit_AllReduce(self, node):
            found.append(node)

    _Walk().visit(stmt)
    return bool(found)


class _InsertBarriers(Mutator):
    def __init__(self, double_buffered: set):
        self.shared: set = set()
        self.double_buffered = double_buffered

    def visit_Allocate(self, node):
        if node.buffer.scope == "shared":
            self.shared.add(id(node.buffer))
        return self.generic_visit(node)

    def visit_Seq(self, node):
        stmts = [self.visit(s) for s in node.stmts]
        out, written, read = [], set(), set()
        for s in stmts:
            if isinstance(s, n.Barrier):
                written, read = set(), set()
                out.append(s)
                continue
            acc = _shared_access(s, self.shared)
            if (acc.reads & written) or (acc.writes & (read | written)):
                out.append(n.Barrier("shared"))
                written, read = set(), set()
            out.append(s)
            if _contains_barrier(s):
                # what s leaves unsynchronized at its end is at most all it touches
                written, read = set(acc.writes), set(acc.reads)
            else:
                written |= acc.writes
                read |= acc.reads
        return n.Seq(tuple(out)) if len(out) > 1 else out[0]

    def visit_For(self, node):
        node = self.generic_visit(node)
        if node.kind == "thread_binding":
            return node
        acc = _shared_access(node.body, self.shared)
        carried = (acc.writes & acc.reads) - self.double_buffered
        if carried and _contains_barrier(node.body):
            # the next iteration overwrites what this one read: wait for the readers
            body = n.seq(node.body, n.Barrier("shared"))
            return n.For(node.var, node.min, node.extent, node.kind, body, node.thread_tag)
        return node


def insert_barriers(f: n.PrimFunc) -> n.PrimFunc:
    double = {id(b) for b in f.attrs.get("double_buffered", ())}
    return f.with_body(_map_kernels(f.body, lambda k: _InsertBarriers(double).visit(k)))


# ---------------------------------------------------------------- sink_guards


class _SinkGuards(Mutator):
    def visit_IfThenElse(self, node):
        node = self.generic_visit(node)
        if not _contains_barrier(node.then_case) and not (
                node.else_case is not None and _contains_barrier(node.else_case)):
            return node
        if is_arch_choice(node):
            return node       # (both arms are whole versions of the code: no guard)
        if node.else_case is not None:
            raise BuildError("a __syncthreads() lies in one arm of an if/else that depends "
                             f"on the thread ({node.condition}); every thread of a block "
                             "must reach it")
        return _push(node.condition, node.then_case)


def _push(cond, stmt) -> n.Stmt:
    """``if cond: stmt`` with the condition moved below every barrier in ``stmt``."""
    if isinstance(stmt, (n.Barrier, n.AllReduce)):
        return stmt
    if not _contains_barrier(stmt):
        return n.IfThenElse(cond, stmt)
    if isinstance(stmt, n.Seq):
        return n.seq(*[_push(cond, s) for s in stmt.stmts])
    if isinstance(stmt, n.For):
        loop_vars = set(free_vars(stmt.min)) | set(free_vars(stmt.extent))
        if loop_vars & set(free_vars(cond)):
            raise BuildError(f"loop {stmt.var.name!r} holds a __syncthreads() but its range "
                             "depends on a guard; every thread must run it equally often")
        return n.For(stmt.var, stmt.min, stmt.extent, stmt.kind, _push(cond, stmt.body),
                     stmt.thread_tag)
    if isinstance(stmt, n.Allocate):
        return n.Allocate(stmt.buffer, stmt.extent, _push(cond, stmt.body))
    if isinstance(stmt, n.LetStmt):
        return n.LetStmt(stmt.var, stmt.value, _push(cond, stmt.body))
    if isinstance(stmt, n.Pragma):
        return n.Pragma(stmt.key, _push(cond, stmt.body))
    if isinstance(stmt, n.IfThenElse) and is_arch_choice(stmt):
        return n.IfThenElse(stmt.condition, _push(cond, stmt.then_case),
                            _push(cond, stmt.else_case))
    if isinstance(stmt, n.IfThenElse) and stmt.else_case is None:
        return _push(n.And(cond, stmt.condition), stmt.then_case)
    raise BuildError(f"cannot move a guard ({cond}) below the __syncthreads() in "
                     f"{type(stmt).__name__}")


def sink_guards(f: n.PrimFunc) -> n.PrimFunc:
    return f.with_body(_map_kernels(f.body, lambda k: _SinkGuards().visit(k)))


# ---------------------------------------------------------------- check_limits


def shared_allocations(kernel) -> list[n.Allocate]:
    """The kernel's shared arrays, each once (a TMA loop's two versions, ``async_copies``,
    allocate the same arrays in both)."""
    out, seen = [], set()

    class _Walk(Visitor):
        def visit_Allocate(self, node):
            if node.buffer.scope == "shared" and id(node.buffer) not in seen:
                seen.add(id(node.buffer))
                out.append(node)
            self.generic_visit(node)

    _Walk().visit(kernel)
    return out


def shared_bytes(kernel) -> int:
    """The kernel's shared memory: its arrays, each starting on ``SHARED_ALIGNMENT``
    bytes (as ``ptxas`` counts them)."""
    return sum(shared_bytes_of(a) for a in shared_allocations(kernel))


def shared_bytes_of(allocation) -> int:
    """One shared array's bytes, rounded up to where the next one starts."""
    nbytes = int(allocation.extent.value) * max(1, dt.bits(allocation.buffer.dtype) // 8)
    return -(-nbytes // SHARED_ALIGNMENT) * SHARED_ALIGNMENT


def check_limits(f: n.PrimFunc) -> n.PrimFunc:
    for k in kernels(f.body):
        dims = launch_dims(k)
        threads = 1
        for axis in "xyz":
            ext = dims.get(f"threadIdx.{axis}")
            if ext is None:
                continue
            if ext.value > MAX_BLOCK_DIM[axis]:
                raise BuildError(f"stage {_stage_names(k)}: threadIdx.{axis} extent "
                                 f"{ext.value} exceeds the device limit {MAX_BLOCK_DIM[axis]}")
            threads *= ext.value
        if threads > MAX_THREADS_PER_BLOCK:
            raise BuildError(f"stage {_stage_names(k)}: {threads} threads per block exceed "
                             f"the device limit {MAX_THREADS_PER_BLOCK}; split the bound "
                             "axes by smaller factors")
        check_shared(k, max(MAX_OPTIN_SHARED_BYTES.values()), "of any GPU")
    return f


def check_shared(kernel, limit: int, where: str):
    """Refuse a kernel whose shared arrays take more than ``limit`` bytes a block."""
    used = shared_bytes(kernel)
    if used > limit:
        names = ", ".join(a.buffer.name for a in shared_allocations(kernel))
        raise BuildError(f"stage {_stage_names(kernel)}: {used} bytes of shared memory "
                         f"({names}) exceed the {limit}-byte limit per block {where}; "
                         "use smaller tiles (or fewer pipeline stages)")


# ---------------------------------------------------------------- check_tensor_cores


def _wmma_calls(kernel) -> list[tuple[n.Call, list[n.For]]]:
    """Every tensor-core call of the kernel with the thread loops around it."""
    out, loops = [], []

    class _Walk(Visitor):
        def visit_For(self, node):
            if node.kind != "thread_binding":
                return self.generic_visit(node)
            loops.append(node)
            self.generic_visit(node)
            loops.pop()

        def visit_Evaluate(self, node):
            if isinstance(node.value, n.Call) and node.value.name.startswith("wmma."):
                out.append((node.value, list(loops)))
            self.generic_visit(node)

    _Walk().visit(kernel)
    return out


def _wmma_stage(call: n.Call) -> str:
    """The stage a tensor-core call computes: the accumulator, or the stored tensor."""
    return call.args[0].buffer.name


def _wmma_tiles(call: n.Call) -> list[tuple[n.Load, n.Load]]:
    """The (first element, one row below) reads of each tile in memory (not fragments)."""
    a = call.args
    if call.name == "wmma.mma_sync":
        return [(a[2], a[3]), (a[4], a[5])]
    if call.name == "wmma.store":
        return [(a[0], a[1])]
    return []


def tensor_core_buffers(f: n.PrimFunc) -> set[str]:
    """The global buffers tensor-core calls load or store tiles of: their arrays must
    start on 32 bytes (the runtime checks it at each call)."""
    return {first.buffer.name for k in kernels(f.body) for call, _ in _wmma_calls(k)
            for first, _ in _wmma_tiles(call) if first.buffer.scope == "global"}


def check_tensor_cores(f: n.PrimFunc) -> n.PrimFunc:
    """A WMMA call is executed by a warp's 32 lanes together on one fragment: it must
    not depend on ``threadIdx.x``, and ``threadIdx.x`` must span whole warps (so a warp
    holds one ``threadIdx.y/z`` pair). ``load_matrix_sync``/``store_matrix_sync`` need
    a row stride that is a multiple of 16 bytes and a tile on 32 bytes (shared tiles
    start on 128, global arrays on 32: ``tensor_core_buffers``), which ``storage_align``
    padding can break."""
    for k in kernels(f.body):
        calls = _wmma_calls(k)
        if not calls:
            continue
        x = launch_dims(k).get("threadIdx.x")
        lanes = x.value if x is not None else 1
        for call, loops in calls:
            stage = _wmma_stage(call)
            inside = [lp for lp in loops if lp.thread_tag == "threadIdx.x"]
            if inside:
                raise ScheduleError(
                    f"stage {stage!r}: the tensor-core call {call.name} lies inside the "
                    f"threadIdx.x loop {inside[0].var.name!r}; the 32 lanes of a warp run it "
                    "together on one fragment, so bind the tiles to threadIdx.y/z (warps), "
                    "not to threadIdx.x")
            if lanes % 32:
                raise ScheduleError(
                    f"stage {stage!r}: the block's threadIdx.x extent {lanes} is not a "
                    "multiple of 32, so a warp holds threads of several threadIdx.y/z, "
                    f"i.e. of several fragments; {call.name} needs the 32 lanes of a warp "
                    "on one (give threadIdx.x 32 threads, e.g. in the cooperative fetches)")
            for first, below in _wmma_tiles(call):
                _check_wmma_tile(stage, call.name, first, below)
    return f


def _check_wmma_tile(stage: str, intrinsic: str, first: n.Load, below: n.Load):
    buf = first.buffer
    size = max(1, dt.bits(buf.dtype) // 8)
    row = simplify_expr(n.Sub(below.index, first.index))
    if not multiple_of(row, 16 // size):
        shown = (f"{row.value} elements ({row.value * size} bytes)"
                 if isinstance(row, n.IntImm) else f"{row} (not provably a multiple)")
        raise ScheduleError(
            f"stage {stage!r}: {intrinsic} accesses {buf.name!r} with leading dimension "
            f"{shown}; tensor cores need a multiple of 16 bytes ({16 // size} "
            f"{buf.dtype} elements): make the padded row stride (storage_align) a "
            f"multiple of {16 // size}")
    if not multiple_of(first.index, 32 // size):
        raise ScheduleError(
            f"stage {stage!r}: {intrinsic} accesses a tile of {buf.name!r} at element "
            f"{first.index}, not provably on 32 bytes (a multiple of {32 // size} "
            f"{buf.dtype} elements) as tensor cores need")
