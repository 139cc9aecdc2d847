"""What a parallel loop's body uses but does not define: the variables and buffers its
outlined function must receive (``codegen.parallel_for``). Everything an expression
mentions counts, vector masks included."""
from __future__ import annotations

from tensordsl.ir.visitor import Visitor


class Captures(Visitor):
    """Variables and buffers a statement uses but does not define."""

    def __init__(self):
        self.defined, self.vars, self.buffers, self.allocated = set(), {}, {}, set()

    def visit_Var(self, node):
        if node not in self.defined:
            self.vars[node] = None

    def visit_For(self, node):
        self.visit(node.min)
        self.visit(node.extent)
        self.defined.add(node.var)
        self.visit(node.body)

    def visit_LetStmt(self, node):
        self.visit(node.value)
        self.defined.add(node.var)
        self.visit(node.body)

    visit_Let = visit_LetStmt

    def visit_Allocate(self, node):
        self.visit(node.extent)
        self.allocated.add(node.buffer)
        self.visit(node.body)

    def visit_Load(self, node):
        if node.buffer not in self.allocated:
            self.buffers[node.buffer] = None
        self.generic_visit(node)   # the index, and a mask's variables too

    def visit_Store(self, node):
        if node.buffer not in self.allocated:
            self.buffers[node.buffer] = None
        self.generic_visit(node)
