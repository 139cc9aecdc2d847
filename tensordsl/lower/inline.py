"""Stage bodies as lowering sees them: reads of inlined stages replaced by their
expressions, reads of a scan's state by reads of the scan's output, and every other read
pointed at the tensor its stage computes now."""
from __future__ import annotations

from ..ir import nodes as n
from ..ir.visitor import Mutator, substitute


class _Expand(Mutator):
    def __init__(self, schedule):
        self.s = schedule

    def visit_TensorRead(self, node):
        indices = tuple(self.visit(i) for i in node.indices)
        scan_output = self.s.scan_state_of.get(node.tensor.op)
        if scan_output is not None:   # a scan's state: its output so far
            return n.TensorRead(scan_output, indices)
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
        bodies = getattr(stage.op, "body", ())   # a scan has none
        cache[key] = (stage.op, tuple(_Expand(schedule).visit(b) for b in bodies))
    return cache[key][1]
