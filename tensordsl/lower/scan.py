"""Scans in the loop nest: the rows of a scan's init and update stages are stored straight
into the scan's outputs.

``schedule_ops`` builds a scan (``te/tensor.py: ScanOp``) like any other stage: its
init stages run first (at root), then the scan's loop over ``scan_axis`` computes, at
each iteration, its update stages (attached there when the schedule was created, each
for its row ``scan_axis + init_len``) and the stages between the states and the
updates. The updates read the states as the scan's outputs (``inline.py``). This pass
then makes the init and update tensors the scan's outputs themselves — their stores go
to the scan's rows and their own storage disappears — as TVM's ScheduleOps does:

    realize init[0:1, 0:n]                      for i: scan[0, i] = X[0, i]
      for i: init[0, i] = X[0, i]        →      for scan.idx in range(m - 1):
    for scan.idx in range(m - 1):                 for i: scan[scan.idx + 1, i] =
      realize update[scan.idx + 1, 0:n]                   scan[scan.idx, i] + X[...]
        for i: update[scan.idx + 1, i] = scan[scan.idx, i] + X[...]
"""
from __future__ import annotations

from ..ir import nodes as n
from ..ir.visitor import Mutator
from ..te.tensor import ScanOp


class _StoreIntoScan(Mutator):
    def __init__(self, aliases):
        self.aliases = aliases

    def visit_ProducerRealize(self, node):
        if node.tensor in self.aliases:
            return self.visit(node.body)
        return self.generic_visit(node)

    def visit_ProducerStore(self, node):
        node = self.generic_visit(node)
        target = self.aliases.get(node.tensor)
        return node if target is None else n.ProducerStore(target, node.value, node.indices)

    def visit_TensorRead(self, node):
        node = self.generic_visit(node)
        target = self.aliases.get(node.tensor)
        return node if target is None else n.TensorRead(target, node.indices)


def store_into_scans(schedule, body: n.Stmt) -> n.Stmt:
    """``body`` with every scan's init and update tensors replaced by its outputs."""
    aliases = {}
    for stage in schedule.stages:
        if isinstance(stage.op, ScanOp):
            for k, (init, update) in enumerate(zip(stage.op.init, stage.op.update)):
                out = stage.op.output(k)
                aliases[schedule.canonical(init)] = out
                aliases[schedule.canonical(update)] = out
    return _StoreIntoScan(aliases).visit(body) if aliases else body
