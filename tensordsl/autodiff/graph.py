"""The part of a compute graph a derivative walks: operations in dependency order, and
which of them depend on the tensors being differentiated against."""
from __future__ import annotations

from ..errors import TensorDSLError
from ..te.tensor import STOP_GRADIENT_TAG, ComputeOp, PlaceholderOp


def topological(outputs, given=()) -> list:
    """Operations ``outputs`` are computed from, every producer before its consumers,
    not looking past the tensors in ``given``."""
    order, seen = [], set()

    def visit(op):
        if id(op) in seen:
            return
        seen.add(id(op))
        for t in op.input_tensors:
            if t not in given:
                visit(t.op)
        order.append(op)

    for t in outputs:
        if t not in given:
            visit(t.op)
    return order


def depending_on(order, sources) -> set:
    """ids of the operations in ``order`` that read (through any chain) one of
    ``sources``; a ``stop_gradient`` compute depends on nothing."""
    wanted = {id(t.op) for t in sources}
    out = set()
    for op in order:
        if getattr(op, "tag", "") == STOP_GRADIENT_TAG and id(op) not in wanted:
            continue
        if id(op) in wanted or any(id(t.op) in out for t in op.input_tensors):
            out.add(id(op))
    return out


def check_differentiable(order, needed: set, what: str):
    for op in order:
        if id(op) in needed and not isinstance(op, (ComputeOp, PlaceholderOp)):
            raise TensorDSLError(f"{what}: cannot differentiate through {op.name!r}, a "
                                 f"{type(op).__name__} (only computes and placeholders "
                                 "have derivative rules)")
