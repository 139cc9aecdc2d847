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

from dataclasses import dataclass

import numpy as np

from .arith.simplify import const_int
from .ir import nodes as n
from .ir.visitor import Mutator, Visitor
from .te.tensor import ComputeOp, PlaceholderOp, Tensor


@dataclass
class _Kernel:
    function: object
    reads: list       # original tensors, in the kernel's argument order
    writes: list      # original tensors it computes
    shapes: list


class Program:
    """Kernels run in dependency order; ``program(*inputs)`` returns the outputs."""

    def __init__(self, inputs, outputs, kernels):
        self.inputs, self.outputs, self.kernels = inputs, outputs, kernels

    def __call__(self, *arrays):
        if len(arrays) != len(self.inputs):
            raise TypeError(f"program: expected {len(self.inputs)} arrays "
                            f"({', '.join(t.name for t in self.inputs)}), got {len(arrays)}")
        from .nd import aligned_numpy
        values = dict(zip(self.inputs, arrays))
        for kernel in self.kernels:
            outs = [aligned_numpy(shape, t.dtype) for t, shape in zip(kernel.writes,
                                                                       kernel.shapes)]
            kernel.function(*[values[t] for t in kernel.reads], *outs)
            values.update(zip(kernel.writes, outs))
        return [values[t] for t in self.outputs]

    def __repr__(self):
        return (f"Program({len(self.kernels)} kernels: "
                f"{', '.join(k.writes[0].op.name for k in self.kernels)})")


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
    order = _operations(outputs, given)
    readers = _readers(order)
    materialized = [op for op in order if _materialize(op, readers, outputs)]
    kernels = []
    stored = set(given)
    for op in materialized:
        kernels.append(_kernel(op, stored, target))
        stored.update(op.outputs)
    return Program(inputs, outputs, kernels)


def _operations(outputs, given) -> list:
    from .autodiff.graph import topological
    order = topological(outputs, given)
    for op in order:
        if isinstance(op, PlaceholderOp):
            raise ValueError(f"build_program: the outputs read placeholder {op.name!r}, "
                             "which is not among the inputs")
        if not isinstance(op, ComputeOp):
            raise TypeError(f"build_program: {op.name!r} is a {type(op).__name__}; a "
                            "program is made of computes")
    return order


class _ReadsInReduction(Visitor):
    def __init__(self):
        self.inside, self.depth = set(), 0

    def visit_Reduce(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_TensorRead(self, node):
        if self.depth:
            self.inside.add(node.tensor.op)
        self.generic_visit(node)


def _readers(order) -> dict:
    """op id -> (number of reading ops, read inside a reduction)."""
    out: dict = {}
    for op in order:
        inside = _ReadsInReduction()
        for b in op.body:
            inside.visit(b)
        for op_read in {id(t.op): t.op for t in op.input_tensors}.values():
            count, reduced = out.get(id(op_read), (0, False))
            out[id(op_read)] = (count + 1, reduced or op_read in inside.inside)
    return out


def _materialize(op, readers, outputs) -> bool:
    count, in_reduction = readers.get(id(op), (0, False))
    return (any(t.op is op for t in outputs) or bool(op.reduce_axis)
            or op.num_outputs > 1 or in_reduction or count > 1)


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
        function = td.build([*args, new.output(0)], target=target, name=_identifier(root))
    else:
        from schedules.cpu.generic import schedule_generic
        s = td.create_schedule(new)
        schedule_generic(s, new.output(0))
        function = td.build(s, [*args, *new.outputs], target=target, name=_identifier(root))
    return _Kernel(function, reads, list(root.outputs), shapes)


def _identifier(op) -> str:
    name = "".join(c if c.isalnum() else "_" for c in op.name)
    return name if name[:1].isalpha() else f"k_{name}"
