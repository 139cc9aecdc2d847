"""C text the exported entries share: identifiers, byte arrays, and integer expressions of
shape variables (``int64_t``).

An exported entry evaluates the same expressions the Python runtime does at call time —
the bounds a kernel's reads need (``lower/check_bounds.py``, ``size_checks``) and a GPU
launch's grid (``targets/cuda/plan.py``) — so those are printed here. Division and modulo are floor
division and floor modulo, as in the IR (C's ``/`` and ``%`` truncate): ``C_HELPERS``
defines them once per generated file.
"""
from __future__ import annotations

import keyword
import re

from ..ir import nodes as n

C_HELPERS = """\
static inline int64_t td_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
static inline int64_t td_floormod(int64_t a, int64_t b) { return a - td_floordiv(a, b) * b; }
static inline int64_t td_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t td_max(int64_t a, int64_t b) { return a > b ? a : b; }
"""

_C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch",
    "typedef", "union", "unsigned", "void", "volatile", "while", "bool", "class", "new",
    "delete", "this", "template", "namespace", "operator", "private", "public", "main",
}

_BINARY = {n.Add: "+", n.Sub: "-", n.Mul: "*", n.EQ: "==", n.NE: "!=", n.LT: "<",
           n.LE: "<=", n.GT: ">", n.GE: ">=", n.And: "&&", n.Or: "||"}
_CALLS = {n.FloorDiv: "td_floordiv", n.FloorMod: "td_floormod", n.Min: "td_min",
          n.Max: "td_max"}


def c_identifier(name: str) -> str:
    """``name`` as a C identifier: other characters become ``_``; a keyword gets a ``_``."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    if ident in _C_KEYWORDS or keyword.iskeyword(ident):
        ident += "_"
    return ident


def c_expr(e: n.Expr, names: dict) -> str:
    """``e`` as a C expression; ``names`` maps each shape variable to its C name."""
    if isinstance(e, n.IntImm):
        return f"INT64_C({e.value})"
    if isinstance(e, n.Var):
        if e not in names:
            raise ValueError(f"export: the expression {e} uses {e.name}, which is not an "
                             "argument of the kernel")
        return names[e]
    if type(e) in _BINARY:
        return f"({c_expr(e.a, names)} {_BINARY[type(e)]} {c_expr(e.b, names)})"
    if type(e) in _CALLS:
        return f"{_CALLS[type(e)]}({c_expr(e.a, names)}, {c_expr(e.b, names)})"
    if isinstance(e, n.Not):
        return f"(!{c_expr(e.a, names)})"
    if isinstance(e, n.Select):
        return (f"({c_expr(e.condition, names)} ? {c_expr(e.true_value, names)} : "
                f"{c_expr(e.false_value, names)})")
    if isinstance(e, n.Cast) and e.dtype.startswith(("int", "uint", "bool")):
        return f"((int64_t){c_expr(e.value, names)})"
    raise ValueError(f"export: cannot evaluate {e} ({type(e).__name__}) in C")


def c_byte_array(data: bytes) -> str:
    """``data`` as a C initializer: ``{1, 2, ...}``, 24 bytes a line."""
    rows = [", ".join(str(b) for b in data[i:i + 24]) for i in range(0, len(data), 24)]
    return "{\n    " + ",\n    ".join(rows) + "\n}"


def size_checks(module, names: dict, bad_sizes: int) -> list[str]:
    """C statements returning ``bad_sizes`` when a size is negative or the sizes make a
    read of ``module`` (a ``td.build`` result) fall outside a tensor (its
    ``access_checks``, which the Python runtime evaluates before a call)."""
    lines = [f"    if ({cname} < 0) return {bad_sizes};" for cname in names.values()]
    for check in module.access_checks:
        lo, hi = c_expr(check.lo, names), c_expr(check.hi, names)
        lines.append(f"    if ({c_expr(check.nonempty, names)} && {lo} <= {hi} && "
                     f"({lo} < 0 || {hi} >= {c_expr(check.extent, names)}))")
        lines.append(f"        return {bad_sizes};  /* {check.reader} reads {check.tensor}, "
                     f"dimension {check.dim} */")
    return lines
