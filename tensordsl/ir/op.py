"""Building expressions: constants, type matching of operands, casts and intrinsics.

Python numbers adopt the type of the other operand (``x * 2`` keeps ``x``'s float32);
two expressions of different types meet at ``dtype.promote``.
"""
from __future__ import annotations

import math

from . import dtype as dt
from . import nodes as n


def const(value, dtype: str | None = None) -> n.Expr:
    """A constant; ``dtype`` defaults to int64 for ints, float32 for floats, bool for bools."""
    if dtype is None:
        if isinstance(value, bool):
            dtype = "bool"
        elif isinstance(value, int):
            dtype = dt.INDEX_DTYPE
        elif isinstance(value, float):
            dtype = "float32"
        else:
            raise TypeError(f"value: expected a Python number, got {type(value).__name__}")
    dtype = dt.normalize(dtype)
    if dt.is_float(dtype):
        return n.FloatImm(dtype, float(value))
    if dt.is_bool(dtype):
        return n.IntImm(dtype, int(bool(value)))
    if isinstance(value, float) and not float(value).is_integer():
        raise TypeError(f"value: {value!r} is not representable in {dtype}")
    return n.IntImm(dtype, int(value))


def convert(value) -> n.Expr:
    """Turn a Python number, an IterVar or an expression into an expression."""
    if isinstance(value, n.Expr):
        return value
    if isinstance(value, n.IterVar):
        return value.var
    if isinstance(value, (bool, int, float)):
        return const(value)
    import numpy as np
    if isinstance(value, np.generic):
        return const(value.item(), value.dtype.name)
    raise TypeError(f"expected an expression or a number, got {type(value).__name__}: "
                    f"{value!r}")


def _is_python_number(x) -> bool:
    return isinstance(x, (bool, int, float))


def match_types(a, b) -> tuple[n.Expr, n.Expr]:
    if _is_python_number(a) and not _is_python_number(b):
        b = convert(b)
        a = _const_like(a, b.dtype)
    elif _is_python_number(b) and not _is_python_number(a):
        a = convert(a)
        b = _const_like(b, a.dtype)
    else:
        a, b = convert(a), convert(b)
    if a.dtype != b.dtype:
        target = dt.promote(a.dtype, b.dtype)
        a, b = cast(target, a), cast(target, b)
    return a, b


def _const_like(value, dtype: str) -> n.Expr:
    base = dt.element(dtype)
    if isinstance(value, float) and not dt.is_float(base) and not value.is_integer():
        base = "float32"  # 0.5 * int_expr is a float expression, as in numpy
    if dt.is_bool(base) and not isinstance(value, bool):
        base = dt.INDEX_DTYPE if isinstance(value, int) else "float32"
    c = const(value, base)
    return n.Broadcast(c, dt.lanes(dtype)) if dt.lanes(dtype) > 1 else c


def binary(kind: str, a, b) -> n.Expr:
    a, b = match_types(a, b)
    if kind in ("FloorDiv", "FloorMod") and dt.is_bool(a.dtype):
        raise TypeError(f"{kind}: operands must be numbers, got bool")
    return getattr(n, kind)(a, b)


def logical(kind: str, a, b) -> n.Expr:
    a, b = convert(a), convert(b)
    for operand in (a, b):
        if not dt.is_bool(operand.dtype):
            raise TypeError(f"{kind}: expected boolean operands, got {operand.dtype} "
                            "(use comparisons, td.all or td.any)")
    return getattr(n, kind)(a, b)


def true_divide(a, b) -> n.Expr:
    a, b = match_types(a, b)
    if not dt.is_float(a.dtype):
        raise TypeError("'/' of two integer expressions is ambiguous: use '//' (floor "
                        "division) or cast an operand with .astype('float32')")
    return n.Div(a, b)


def zero_like(x) -> n.Expr:
    x = convert(x)
    return _const_like(0, x.dtype)


def cast(dtype, value) -> n.Expr:
    value = convert(value)
    dtype = dt.with_lanes(dt.normalize(dtype), dt.lanes(value.dtype))
    if value.dtype == dtype:
        return value
    if isinstance(value, n.IntImm) and dt.lanes(dtype) == 1:
        return const(value.value, dtype)
    return n.Cast(dtype, value)


# ---------------------------------------------------------------- intrinsics


def _float_unary(name: str, x) -> n.Expr:
    x = convert(x)
    if not dt.is_float(x.dtype):
        x = cast("float32", x)
    return n.Call(x.dtype, name, (x,))


def exp(x): return _float_unary("exp", x)
def log(x): return _float_unary("log", x)
def sqrt(x): return _float_unary("sqrt", x)
def tanh(x): return _float_unary("tanh", x)
def erf(x): return _float_unary("erf", x)
def floor(x): return _float_unary("floor", x)
def ceil(x): return _float_unary("ceil", x)
def round(x): return _float_unary("round", x)  # noqa: A001 (TVM's name)


def sigmoid(x) -> n.Expr:
    x = convert(x)
    if not dt.is_float(x.dtype):
        x = cast("float32", x)
    return 1.0 / (1.0 + exp(-x))


def abs(x) -> n.Expr:  # noqa: A001 (TVM's name)
    x = convert(x)
    if dt.is_float(x.dtype):
        return n.Call(x.dtype, "fabs", (x,))
    if dt.is_unsigned(x.dtype) or dt.is_bool(x.dtype):
        return x
    return n.Select(x < 0, -x, x)


def pow(x, y) -> n.Expr:  # noqa: A001 (TVM's name)
    x, y = match_types(x, y)
    if not dt.is_float(x.dtype):
        x, y = cast("float32", x), cast("float32", y)
    return n.Call(x.dtype, "pow", (x, y))


def maximum(a, b) -> n.Expr:
    return binary("Max", a, b)


def minimum(a, b) -> n.Expr:
    return binary("Min", a, b)


def if_then_else(cond, t, f) -> n.Expr:
    """``t`` where ``cond`` else ``f``; only the chosen arm is evaluated (guards loads)."""
    cond = convert(cond)
    if not dt.is_bool(cond.dtype):
        raise TypeError(f"if_then_else: cond must be boolean, got {cond.dtype}")
    t, f = match_types(t, f)
    return n.Call(t.dtype, "if_then_else", (cond, t, f))


def select(cond, t, f) -> n.Expr:
    """``t`` where ``cond`` else ``f``; both arms are evaluated."""
    cond = convert(cond)
    if not dt.is_bool(cond.dtype):
        raise TypeError(f"select: cond must be boolean, got {cond.dtype}")
    t, f = match_types(t, f)
    return n.Select(cond, t, f)


def all(*conds) -> n.Expr:  # noqa: A001 (TVM's name)
    if len(conds) == 1 and isinstance(conds[0], (list, tuple)):
        conds = tuple(conds[0])
    if not conds:
        return const(True)
    out = convert(conds[0])
    for c in conds[1:]:
        out = logical("And", out, c)
    return out


def any(*conds) -> n.Expr:  # noqa: A001 (TVM's name)
    if len(conds) == 1 and isinstance(conds[0], (list, tuple)):
        conds = tuple(conds[0])
    if not conds:
        return const(False)
    out = convert(conds[0])
    for c in conds[1:]:
        out = logical("Or", out, c)
    return out


def max_value(dtype) -> n.Expr:
    dtype = dt.normalize(dtype)
    if dt.is_float(dtype):
        return const(math.inf, dtype)
    if dt.is_bool(dtype):
        return const(True)
    import numpy as np
    return const(int(np.iinfo(dt.numpy_name(dtype)).max), dtype)


def min_value(dtype) -> n.Expr:
    dtype = dt.normalize(dtype)
    if dt.is_float(dtype):
        return const(-math.inf, dtype)
    if dt.is_bool(dtype):
        return const(False)
    import numpy as np
    return const(int(np.iinfo(dt.numpy_name(dtype)).min), dtype)
