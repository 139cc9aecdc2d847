"""Features of a candidate's loop nest for the cost model.

The schedule is applied and taken through ``schedule_ops`` (a few milliseconds): the
loop nest says what the knobs mean — the vector width, how much is unrolled into the
register tile, how long the innermost serial loop runs, how parallel the outer loop is,
how deep the nest is — so the model can relate configurations of different knobs.
"""
from __future__ import annotations

import math

from ..ir import nodes as n
from ..ir.visitor import Visitor

IR_FEATURES = ("vector_lanes", "unrolled", "inner_serial", "parallel", "depth", "loops",
               "body_iterations")


class _Nest(Visitor):
    def __init__(self):
        self.stack: list[n.For] = []
        self.vector = self.unrolled = self.inner = self.parallel = 1
        self.depth = self.loops = 0
        self.iterations = 0.0

    def visit_For(self, node):
        self.loops += 1
        self.stack.append(node)
        self.depth = max(self.depth, len(self.stack))
        self.generic_visit(node)
        self.stack.pop()

    def _extent(self, loop) -> int:
        return loop.extent.value if isinstance(loop.extent, n.IntImm) else 64

    def visit_ProducerStore(self, node):
        total, vec, unr, inner = 1, 1, 1, 1
        for loop in self.stack:
            e = self._extent(loop)
            total *= e
            if loop.kind == "vectorized":
                vec *= e
            elif loop.kind == "unrolled":
                unr *= e
            elif loop.kind == "parallel":
                self.parallel = max(self.parallel, e)
            else:
                inner = e
        self.iterations += total
        if total >= self.iterations / 2:  # the statement that dominates the work
            self.vector, self.unrolled, self.inner = vec, unr, inner


def ir_features(workload, config: dict) -> list[float]:
    from ..lower.pipeline import lower
    s, tensors = workload.schedule(config)
    nest = _Nest()
    nest.visit(lower(s, tensors, stop_after="schedule_ops").body)
    return [math.log2(max(1, v)) for v in (nest.vector, nest.unrolled, nest.inner,
                                           nest.parallel)] + \
        [float(nest.depth), float(nest.loops), math.log2(max(1.0, nest.iterations))]
