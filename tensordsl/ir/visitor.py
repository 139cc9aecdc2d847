"""One Visitor and one Mutator for every IR node.

Both dispatch on the node's class name (``visit_Add``); the defaults walk every child
expression and statement. The Mutator rebuilds a node only when a child changed and
otherwise returns the very same object, so passes can test ``new is old``.
Buffers, IterVars, tensors and reducers are not children: passes that rewrite them
say so explicitly.
"""
from __future__ import annotations

from dataclasses import fields

from . import nodes as n

_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


def _is_child(value) -> bool:
    return isinstance(value, n.Node)


def child_exprs(node) -> list:
    """The expressions directly inside ``node`` (its fields, and the items of its
    tuple fields), in field order."""
    out = []
    for name in _field_names(type(node)):
        value = getattr(node, name)
        for item in (value if isinstance(value, tuple) else (value,)):
            if isinstance(item, n.Expr):
                out.append(item)
    return out


class Visitor:
    """Walks the IR; override ``visit_<Node>`` and call ``self.generic_visit(node)``
    to continue below it."""

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            return self.generic_visit(node)
        return method(node)

    def generic_visit(self, node):
        for name in _field_names(type(node)):
            self._visit_value(getattr(node, name))

    def _visit_value(self, value):
        if isinstance(value, n.Node):
            self.visit(value)
        elif isinstance(value, tuple):
            for item in value:
                self._visit_value(item)
        elif isinstance(value, n.Range):
            self.visit(value.min)
            self.visit(value.extent)


class Mutator:
    """Rewrites the IR bottom-up; override ``visit_<Node>`` and return a node."""

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            return self.generic_visit(node)
        return method(node)

    def generic_visit(self, node):
        cls = type(node)
        values = []
        changed = False
        for name in _field_names(cls):
            old = getattr(node, name)
            new = self._mutate_value(old)
            changed |= new is not old
            values.append(new)
        return cls(*values) if changed else node

    def _mutate_value(self, value):
        if isinstance(value, n.Node):
            return self.visit(value)
        if isinstance(value, tuple):
            items = tuple(self._mutate_value(v) for v in value)
            return value if all(a is b for a, b in zip(items, value)) else items
        if isinstance(value, n.Range):
            lo, ext = self.visit(value.min), self.visit(value.extent)
            return value if lo is value.min and ext is value.extent else n.Range(lo, ext)
        return value


class _Substitute(Mutator):
    def __init__(self, mapping):
        self.mapping = mapping

    def visit_Var(self, node):
        return self.mapping.get(node, node)


def substitute(node, mapping: dict) -> n.Node:
    """Replace variables by expressions (``mapping``: Var → Expr)."""
    if not mapping:
        return node
    return _Substitute(mapping).visit(node)


class _CollectVars(Visitor):
    def __init__(self):
        self.vars: dict[n.Var, None] = {}

    def visit_Var(self, node):
        self.vars[node] = None


def free_vars(node) -> list[n.Var]:
    """Variables used in ``node``, in order of first use."""
    c = _CollectVars()
    c.visit(node)
    return list(c.vars)


def uses_var(node, var: n.Var) -> bool:
    return var in free_vars(node)


def post_order(node):
    """Every IR node below and including ``node``, children first."""
    out = []

    class _Walk(Visitor):
        def visit(self, x):
            super().visit(x)
            out.append(x)

    _Walk().visit(node)
    return out


class _Externs(Visitor):
    def __init__(self):
        self.names = []

    def visit_Call(self, node):
        if node.name == "call_extern" and node.args[0].value not in self.names:
            self.names.append(node.args[0].value)
        self.generic_visit(node)


def called_functions(body) -> list[str]:
    """The names of the C functions ``body`` calls, in order of first call."""
    v = _Externs()
    v.visit(body)
    return v.names
