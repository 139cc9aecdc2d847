"""How ``td.build_program`` cuts a graph of computes into kernels.

A stage is *materialized* — computed by a kernel into an array of its own — when it is
an output, has several outputs, is read inside a reduction (inlined there it would be
recomputed per reduction step), or has several readers. Every other stage is computed
inside the kernel of the stage that reads it:

* an elementwise stage is inlined into its reader;
* a reduction whose only reader is elementwise (one output) becomes that kernel's *anchor*, the
  reader its epilogue (``relu(x @ W.T + b)``: one kernel; a weight's gradient and the
  optimizer's update of the weight: one kernel). A kernel has at most one anchor; a
  second reduction in the same reader is materialized.

A *copy* — a stage that reads another tensor of its shape at its own indices, as the
gradient flowing through a bias add does — is never materialized: its readers read
the tensor it copies.
"""
from __future__ import annotations

from .ir import nodes as n
from .ir.visitor import Visitor
from .te.tensor import ComputeOp, PlaceholderOp


def operations(outputs, given) -> list:
    """The computes ``outputs`` need, producers first, checked to be computes."""
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


def copied(op):
    """The tensor ``op`` copies (reads at its own indices, same shape and dtype), or
    None."""
    if not isinstance(op, ComputeOp) or op.reduce_axis or op.num_outputs != 1:
        return None
    body = op.body[0]
    if not isinstance(body, n.TensorRead) or body.dtype != op.output(0).dtype:
        return None
    axes = tuple(iv.var for iv in op.axis)
    t = body.tensor
    if len(body.indices) != len(axes) or any(i is not v for i, v in zip(body.indices, axes)):
        return None
    same = all(repr(a) == repr(b) for a, b in zip(t.shape, op.output(0).shape))
    return t if same else None


def source(t, given):
    """``t``, or the tensor a chain of copies starting at ``t`` reads."""
    while t not in given:
        origin = copied(t.op)
        if origin is None:
            break
        t = origin
    return t


class _ReadsInReduction(Visitor):
    def __init__(self):
        self.inside, self.depth = set(), 0

    def visit_Reduce(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_TensorRead(self, node):
        if self.depth:
            self.inside.add(node.tensor)
        self.generic_visit(node)


def _readers(order, given, outputs) -> dict:
    """op id -> (the ops reading it, read inside a reduction), copies seen through."""
    out: dict = {}
    skipped = _copies(order, given, outputs)
    for op in order:
        if id(op) in skipped:
            continue
        inside = _ReadsInReduction()
        for b in op.body:
            inside.visit(b)
        inside = {source(t, given).op for t in inside.inside}
        for op_read in {id(s.op): s.op for s in (source(t, given)
                                                  for t in op.input_tensors)}.values():
            ops, reduced = out.get(id(op_read), ([], False))
            out[id(op_read)] = (ops + [op], reduced or op_read in inside)
    return out


def _copies(order, given, outputs) -> set:
    output_ops = {id(t.op) for t in outputs}
    return {id(op) for op in order if copied(op) is not None and id(op) not in output_ops}


def roots(order, outputs, given) -> list:
    """The materialized ops, in ``order``: one kernel each."""
    readers = _readers(order, given, outputs)
    skipped = _copies(order, given, outputs)
    output_ops = {id(t.op) for t in outputs}
    materialized, anchors = set(), set()
    for op in order:
        if id(op) in skipped:
            continue
        ops, in_reduction = readers.get(id(op), ([], False))
        if id(op) in output_ops or op.num_outputs > 1 or in_reduction or len(ops) > 1:
            materialized.add(id(op))
        elif op.reduce_axis:
            if ops and not ops[0].reduce_axis and ops[0].num_outputs == 1:
                anchors.add(id(op))
            else:
                materialized.add(id(op))
    # at most one anchor per kernel, none in a reduction's kernel
    for op in reversed(order):
        if id(op) not in materialized:
            continue
        found = [a for a in _cone(op, materialized, given) if id(a) in anchors]
        keep = 0 if op.reduce_axis else 1
        for extra in found[keep:]:
            anchors.discard(id(extra))
            materialized.add(id(extra))
    return [op for op in order if id(op) in materialized]


def _cone(root, materialized, given) -> list:
    """The ops computed inside ``root``'s kernel, other than ``root``."""
    seen, todo, out = set(), [root], []
    while todo:
        op = todo.pop()
        for t in op.input_tensors:
            s = source(t, given)
            if s in given or id(s.op) in materialized or id(s.op) in seen:
                continue
            seen.add(id(s.op))
            out.append(s.op)
            todo.append(s.op)
    return out
