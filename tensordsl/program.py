"""``td.build_program``: a whole graph of tensors as a sequence of kernels.

``td.build`` compiles one schedule into one function. A derived gradient, a training
step or a model is a graph of many stages, several of them reductions, that no single
template schedules well; ``build_program`` cuts it into kernels the way a graph compiler
does and schedules each on its own:

* a stage is *materialized* (computed by its own kernel into its own array) when it is
  an output, reduces, has several outputs, is read inside a reduction (inlining it
  there would recompute it per reduction step), or has several readers;
* every other stage (elementwise, one reader) is inlined into its reader.

Each kernel is a compute over placeholders standing for the arrays it reads, built by
``td.build(tensors)``: the auto-scheduler, with the best record on file for what it
computes (``tensordsl tune`` can tune it; records are filed by structure, so the same
kernel found in another program reuses them).

    loss = ...; grads = td.grad(loss, [w1, w2])
    step = td.build_program([x, w1, w2], [loss, *grads])
    loss_value, g1, g2 = step(x_np, w1_np, w2_np)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace

import numpy as np

from .arith.simplify import const_int
from .ir import nodes as n
from .ir.visitor import Mutator
from . import partition
from .runtime import packed
from .te.tensor import ComputeOp, PlaceholderOp, Tensor


@dataclass
class _Kernel:
    function: object
    reads: list       # original tensors, in the kernel's argument order
    writes: list      # original tensors it computes
    shapes: list
    find_workload: object = None   # () -> whose records it uses (a product's matmul, or
    #                                 its compute), made only when asked: tune-model asks

    @cached_property
    def workload(self):
        return self.find_workload() if self.find_workload is not None else None


class Program:
    """Kernels run in dependency order; ``program(*inputs)`` returns the outputs.

    A call checks the input arrays once against the placeholders, then runs every kernel
    in one call into machine code (an entry point compiled beside them that calls each
    in turn: ``targets/llvm/runtime.program_entry``; kernel by kernel from Python where
    one is not an LLVM function): the kernels' shapes were fixed when they were built,
    and the arrays between kernels are the program's own, allocated on the first call
    (per thread) and reused. The outputs are new arrays each call."""

    def __init__(self, inputs, outputs, kernels):
        self.inputs, self.outputs, self.kernels = inputs, outputs, kernels
        self._slot = {t: k for k, t in enumerate(inputs)}
        for kernel in kernels:
            for t in kernel.writes:
                self._slot.setdefault(t, len(self._slot))
        self._shape = {t: shape for kernel in kernels
                       for t, shape in zip(kernel.writes, kernel.shapes)}
        self._output_slots = {self._slot[t] for t in outputs if t not in inputs}
        self._input_specs = [(t.name, tuple(const_int(d) for d in t.shape), np.dtype(t.dtype))
                             for t in inputs]
        self._local = threading.local()

    def __call__(self, *arrays):
        if len(arrays) != len(self.inputs):
            raise TypeError(f"program: expected {len(self.inputs)} arrays "
                            f"({', '.join(t.name for t in self.inputs)}), got {len(arrays)}")
        from .nd import aligned_numpy, data_address
        plan = self._plan()
        values, pointers = list(plan.values), list(plan.pointers)
        for k, (spec, a) in enumerate(zip(self._input_specs, arrays)):
            values[k] = a
            pointers[k] = _checked_pointer(spec, a)
        for slot in self._output_slots:
            t = plan.tensors[slot]
            values[slot] = a = aligned_numpy(self._shape[t], t.dtype)
            pointers[slot] = data_address(a)
        if plan.entry is not None:      # every kernel in one call from Python
            words = plan.words
            for slot in plan.varying:
                words[slot] = pointers[slot]
            failed = plan.entry(words)
            if failed:
                _allocation_failed(self.kernels[failed - 1])
        else:
            for cfunc, slots, trailing, kernel in plan.steps:
                if cfunc is None:
                    kernel.function(*[values[i] for i in slots])
                elif cfunc(*[pointers[i] for i in slots], *trailing):
                    _allocation_failed(kernel)
        packed.raise_pending()
        return [values[self._slot[t]] for t in self.outputs]

    def _plan(self):
        """This thread's buffers between kernels and each kernel's entry point."""
        plan = getattr(self._local, "plan", None)
        if plan is not None:
            return plan
        from .nd import aligned_numpy
        tensors = [None] * len(self._slot)
        for t, k in self._slot.items():
            tensors[k] = t
        values, pointers = [None] * len(tensors), [0] * len(tensors)
        for k, t in enumerate(tensors):
            if k >= len(self.inputs) and k not in self._output_slots:
                values[k] = aligned_numpy(self._shape[t], t.dtype)
                pointers[k] = values[k].ctypes.data
        steps = []
        for kernel in self.kernels:
            slots = [self._slot[t] for t in (*kernel.reads, *kernel.writes)]
            bound = kernel.function.bound_call() if hasattr(kernel.function, "bound_call") \
                else None
            cfunc, trailing = bound if bound is not None else (None, ())
            steps.append((cfunc, slots, trailing, kernel))
        entry = _native_entry(steps)
        words = None
        if entry is not None:
            import ctypes
            words = (ctypes.c_int64 * len(tensors))(*(p or 0 for p in pointers))
        plan = self._local.plan = SimpleNamespace(
            tensors=tensors, values=values, pointers=pointers, steps=steps, entry=entry,
            words=words, varying=[*range(len(self.inputs)), *sorted(self._output_slots)])
        return plan

    def profile(self, *arrays, repeat: int = 20) -> list:
        """``[(kernel name, median seconds)]`` of each kernel on these inputs, in run
        order (TVM's debug executor): where a program spends its time. Each kernel is
        timed ``repeat`` times over (hot); ``timed_runs`` times them in their places."""
        import time
        calls, _arrays = self._bound_calls(arrays)
        times = []
        for call, kernel in zip(calls, self.kernels):
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            times.append((kernel.writes[0].op.name, float(np.median(samples))))
        return times

    def timed_runs(self, *arrays):
        """A function that runs the program once on these inputs and returns each
        kernel's seconds, in run order: each kernel timed in its place, between its
        neighbours, as a call runs it (the outputs are written to arrays allocated here
        once)."""
        import time
        calls, alive = self._bound_calls(arrays)
        clock = time.perf_counter

        def run() -> list:
            seconds = []
            for call, kernel in zip(calls, self.kernels):
                start = clock()
                failed = call()
                seconds.append(clock() - start)
                if failed:
                    _allocation_failed(kernel)
            packed.raise_pending()
            return seconds
        run.arrays = alive   # (what the calls point into lives as long as run)
        return run

    def _bound_calls(self, arrays) -> tuple[list, list]:
        """Each kernel as a call without arguments on these inputs (checked by one run
        of the program, which also fills the buffers between kernels), with outputs
        allocated here; and the arrays, which the caller keeps alive while it calls."""
        import functools
        from .nd import aligned_numpy
        self(*arrays)
        plan = self._plan()
        values, pointers = list(plan.values), list(plan.pointers)
        for k, a in enumerate(arrays):
            values[k], pointers[k] = a, a.ctypes.data
        for slot in self._output_slots:
            t = plan.tensors[slot]
            values[slot] = aligned_numpy(self._shape[t], t.dtype)
            pointers[slot] = values[slot].ctypes.data
        calls = []
        for cfunc, slots, trailing, kernel in plan.steps:
            if cfunc is None:
                calls.append(functools.partial(kernel.function, *[values[i] for i in slots]))
            else:
                calls.append(functools.partial(cfunc, *[pointers[i] for i in slots],
                                               *trailing))
        return calls, values

    def __repr__(self):
        return (f"Program({len(self.kernels)} kernels: "
                f"{', '.join(k.writes[0].op.name for k in self.kernels)})")


def _allocation_failed(kernel):
    raise MemoryError(f"{kernel.writes[0].op.name}: a temporary buffer could not be "
                      "allocated")


def _native_entry(steps: list):
    """One entry point that runs every kernel of ``steps`` in order
    (``targets/llvm/runtime.program_entry``), or None where a kernel is not an LLVM
    function called with its pointers (one run from Python, or on another target)."""
    runtimes = [getattr(kernel.function, "kernel", None) for *_, kernel in steps]
    if not steps or any(cfunc is None for cfunc, *_ in steps) or \
            not all(hasattr(r, "address") and hasattr(r, "n_pointers") for r in runtimes):
        return None
    from targets.llvm.runtime import program_entry
    return program_entry([(runtime, slots, trailing)
                          for runtime, (_, slots, trailing, _) in zip(runtimes, steps)])


def _checked_pointer(spec, a) -> int:
    """The data pointer of the array given for an input (``spec``: its name, shape and
    dtype), after checking it is one."""
    name, shape, dtype = spec
    if not isinstance(a, np.ndarray):
        raise TypeError(f"program: input {name!r} must be a numpy.ndarray, got "
                        f"{type(a).__name__}")
    if a.shape != shape or a.dtype != dtype:
        raise ValueError(f"program: input {name!r} must be a {dtype} array of shape "
                         f"{shape}, got {a.dtype} of shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"program: input {name!r} must be C-contiguous "
                         "(numpy.ascontiguousarray)")
    from .nd import data_address
    pointer = data_address(a)    # (a.ctypes.data, without making a ctypes object)
    if pointer % a.dtype.alignment:
        raise ValueError(f"program: input {name!r}: data pointer is not aligned to "
                         f"{a.dtype.alignment} bytes")
    return pointer


def build_program(inputs, outputs, target: str = "llvm") -> Program:
    """Compile the graph computing ``outputs`` from ``inputs`` (tensors; placeholders,
    or any tensors to be given as arrays) into a ``Program`` of kernels. Shapes must be
    constants. See the module docstring for how the graph is cut."""
    inputs = list(inputs)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    for what, group in (("inputs", inputs), ("outputs", outputs)):
        for k, t in enumerate(group):
            if not isinstance(t, Tensor):
                raise TypeError(f"build_program: {what}[{k}] must be a tensor, got {t!r}")
    given = {t for t in inputs}
    order = partition.operations(outputs, given)
    materialized = partition.roots(order, outputs, given)
    kernels = []
    stored = set(given)
    for op in materialized:
        kernels.append(_kernel(op, stored, target))
        stored.update(op.outputs)
    return Program(inputs, outputs, kernels)


class _Retarget(Mutator):
    def __init__(self, replace):
        self.replace = replace

    def visit_TensorRead(self, node):
        indices = tuple(self.visit(i) for i in node.indices)
        return n.TensorRead(self.replace(node.tensor), indices)


def _kernel(root, stored, target) -> _Kernel:
    """``root``'s kernel: the computes inlined into it cloned, reads of stored tensors
    turned into reads of placeholders."""
    import tensordsl as td
    from .te.api import placeholder
    placeholders: dict = {}
    clones: dict = {}

    def replace(t: Tensor) -> Tensor:
        t = partition.source(t, stored)
        if t in stored:
            if t not in placeholders:
                placeholders[t] = placeholder(t.shape, t.dtype, name=t.name)
            return placeholders[t]
        return clone(t.op).output(t.value_index)

    def clone(op):
        if id(op) not in clones:
            mutator = _Retarget(replace)
            body = tuple(mutator.visit(b) for b in op.body)
            clones[id(op)] = ComputeOp(op.name, op.axis, body, op.tag)
        return clones[id(op)]

    new = clone(root)
    reads = list(placeholders)
    args = [placeholders[t] for t in reads]
    shapes = []
    for t in root.outputs:
        shape = [const_int(d) for d in t.shape]
        if any(d is None for d in shape):
            raise ValueError(f"build_program: {t.name!r} has a symbolic shape "
                             f"{list(t.shape)}; programs need constant shapes")
        shapes.append(tuple(shape))
    if root.num_outputs == 1:
        function, find_workload = _build_one(args, new.output(0), target,
                                             _identifier(root))
    else:
        # several outputs (an optimizer's update): elementwise, the auto-scheduler's
        function, find_workload = _build_auto(args, new.outputs, target, _identifier(root))
    return _Kernel(function, reads, list(root.outputs), shapes, find_workload)


def _build_auto(args, outs, target: str, name: str):
    """``td.build(tensors)``: the auto-scheduler, with the records filed for what the
    kernel computes (its workload: ``Workload.of_compute``, which ``tune-model`` tunes)."""
    import tensordsl as td
    function = td.build([*args, *outs], target=target, name=name)
    if target != "llvm":
        return function, None    # (tune-model tunes the CPU's kernels)
    return function, (lambda: _compute_workload(args, outs[-1], name))


def _build_one(args, out, target: str, name: str):
    """A kernel with one output, scheduled by what it computes, and a function that
    makes the workload whose records it uses (or None): a matrix product with an
    elementwise epilogue by the matmul template's micro-kernel, with the records of the
    ``matmul`` of its sizes and layouts (``tensordsl tune matmul ...``, ``tensordsl
    tune-model``); a convolution, its gradients or a row-wise reduction by their
    template in the operator table (``autodiff/operators.py``), with the records filed
    for what it computes under that template (its workload: ``Workload.of_compute(...,
    derived="rowwise")``; a template without knobs, or a sparse one, with its
    defaults); anything else by the auto-scheduler (``_build_auto``)."""
    import tensordsl as td
    if target != "llvm":
        return _build_auto(args, [out], target, name)
    product = _product_anchor(out)
    if product is None:
        from .autodiff.operators import (SPARSE_TEMPLATES, knobs, prepare, schedule_derived,
                                         template_of)
        prepared = prepare(out)
        template = template_of(prepared)
        if template in ("auto", "matmul"):
            return _build_auto(args, [out], target, name)
        if template in SPARSE_TEMPLATES or not knobs(template, prepared)[0]:
            s = schedule_derived(template, prepared)
            return td.build(s, [*args, prepared], target=target, name=name), None
        from .autotune.history import best_config
        from .autotune.structural import record_key
        key = record_key(prepared, args)
        config = best_config(key, target, template) if key is not None else None
        s = schedule_derived(template, prepared, config)
        return td.build(s, [*args, prepared], target=target, name=name), \
            (lambda: _compute_workload(args, prepared, name, template))
    from schedules.cpu.matmul import schedule_matmul
    from .autodiff.operators import equivalent_workloads
    from .autotune.history import best_config
    workloads = equivalent_workloads("matmul", product.output(0))
    config = next((c for c in (best_config(w.key, target, "matmul") for w in workloads)
                   if c is not None), None)
    s = td.create_schedule(out.op)
    schedule_matmul(s, out, config)
    # (a batched product has no 2-d matmul workload to file records under)
    return td.build(s, [*args, out], target=target, name=name), \
        (lambda: workloads[0] if workloads else None)


def _compute_workload(args, out, name: str, derived: str | None = None):
    """``Workload.of_compute`` of the kernel, or None for one whose IR does not pickle
    (it is built all the same, with its defaults or the records filed for it)."""
    import pickle
    from .autotune.workload import Workload
    try:
        return Workload.of_compute(args, out, name, derived)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError):
        return None


def _product_anchor(out):
    """The kernel's one reduction if it is a matrix product (``is_product``) and every
    other stage is elementwise; else None."""
    from schedules.cpu.matmul import is_product
    from .autodiff.graph import topological
    computes = [op for op in topological([out]) if isinstance(op, ComputeOp)]
    reducing = [op for op in computes if op.reduce_axis]
    if len(reducing) != 1 or any(op.num_outputs != 1 for op in computes):
        return None
    anchor = reducing[0]
    return anchor if is_product(SimpleNamespace(op=anchor)) else None


def _identifier(op) -> str:
    name = "".join(c if c.isalnum() else "_" for c in op.name)
    return name if name[:1].isalpha() else f"k_{name}"
