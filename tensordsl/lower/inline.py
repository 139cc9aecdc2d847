"""Stage bodies as lowering sees them: reads of inlined stages replaced by their
expressions, and every other read pointed at the tensor its stage computes now."""
from __future__ import annotations

from ..ir import nodes as n
from ..ir.visitor import Mutator, substitute


class _Expand(Mutator):
    def __init__(self, schedule):
        self.s = schedule

    def visit_TensorRead(self, node):
        indices = tuple(self.visit(i) for i in node.indices)
        stage = self.s[node.tensor]
        if stage.attach_type == "inline":
            op = stage.op
            body = self.visit(op.body[node.tensor.value_index])
            return substitute(body, {iv.var: i for iv, i in zip(op.axis, indices)})
        return n.TensorRead(stage.op.output(node.tensor.value_index), indices)


def expanded_bodies(schedule, stage) -> tuple[n.Expr, ...]:
    """``stage.op.body`` with inlined producers substituted (cached on the stage)."""
    cache = schedule.__dict__.setdefault("_expanded", {})
    key = id(stage.op)
    if key not in cache:
        cache[key] = (stage.op, tuple(_Expand(schedule).visit(b) for b in stage.op.body))
    return cache[key][1]
