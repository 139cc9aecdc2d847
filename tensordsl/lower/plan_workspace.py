"""Workspace planning: large temporary buffers become parameters the runtime provides.

A buffer allocated by the kernel on every call costs its page faults on every call
(about 1.7 us per 4 KiB page here: 4 MiB of packed panels cost ~2 ms). Allocations of a
constant size above ``MIN_BYTES`` outside parallel loops are removed from the body and
appended to the function's parameters; ``attrs["workspace"]`` lists them. The runtime
allocates each once per calling thread and passes it on every call.

The same holds inside a parallel loop (one level deep), where each thread of the team
needs a buffer of its own: there the workspace holds one slice per thread, indexed by
``thread_index()``, the function gets a ``team_size`` parameter saying how many slices
there are, and its parallel regions never start more threads than that.
"""
from __future__ import annotations

from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.visitor import Mutator

MIN_BYTES = 64 * 1024


class _Hoist(Mutator):
    def __init__(self):
        self.buffers: list[n.Buffer] = []  # (allocated, workspace, per-thread slice or None)
        self.parallel_depth = 0
        self.device_depth = 0

    def visit_For(self, node):
        parallel, device = node.kind == "parallel", node.kind == "thread_binding"
        self.parallel_depth += parallel
        self.device_depth += device
        try:
            return self.generic_visit(node)
        finally:
            self.parallel_depth -= parallel
            self.device_depth -= device

    def visit_Allocate(self, node):
        size = node.extent
        if (self.parallel_depth <= 1 and not self.device_depth
                and isinstance(size, n.IntImm)
                and size.value * max(1, dt.bits(node.buffer.dtype) // 8) >= MIN_BYTES
                and node.buffer.scope == "global"):
            buf = n.Buffer(node.buffer.name, node.buffer.dtype, (size,), "workspace",
                           node.buffer.data)
            self.buffers.append((node.buffer, buf, size if self.parallel_depth else None))
            return self.visit(node.body)
        return self.generic_visit(node)


class _Rebind(Mutator):
    """Accesses to an allocated buffer go to its workspace (to this thread's slice)."""

    def __init__(self, mapping):
        self.mapping = mapping  # id(old) -> (new, slice size or None)

    def _index(self, index, slice_size):
        if slice_size is None:
            return index
        offset = n.Mul(n.Call("int64", "thread_index", ()), slice_size)
        if isinstance(index, n.Ramp):
            return n.Ramp(n.Add(index.base, offset), index.stride, index.lanes)
        return n.Add(index, offset)

    def visit_Load(self, node):
        node = self.generic_visit(node)
        new = self.mapping.get(id(node.buffer))
        if new is None:
            return node
        return n.Load(node.dtype, new[0], self._index(node.index, new[1]), node.predicate)

    def visit_Store(self, node):
        node = self.generic_visit(node)
        new = self.mapping.get(id(node.buffer))
        if new is None:
            return node
        return n.Store(new[0], node.value, self._index(node.index, new[1]), node.predicate)


def plan_workspace(f: n.PrimFunc) -> n.PrimFunc:
    hoist = _Hoist()
    body = hoist.visit(f.body)
    if not hoist.buffers:
        return f
    body = _Rebind({id(old): (new, per_thread)
                    for old, new, per_thread in hoist.buffers}).visit(body)
    hoisted = tuple(new for _, new, _ in hoist.buffers)
    per_thread = tuple(new for _, new, slice_size in hoist.buffers if slice_size is not None)
    attrs = dict(f.attrs, workspace=tuple(f.attrs.get("workspace", ())) + hoisted,
                 per_thread_workspace=per_thread)
    params = f.params + hoisted
    if per_thread:
        team = n.Var("team_size", "int64")
        attrs["team_size"] = team
        params += (team,)
    return n.PrimFunc(f.name, params, body, f.outputs, attrs)
