"""TVM's classic names, so that a TVM program ports by renaming ``tvm.te.``, ``tvm.tir.``,
``te.`` and ``tvm.`` to ``td.`` (the ported tutorials in ``tests/compat/`` prove it).

Our own names stay the primary API; these are the spellings a TVM user reaches for first
and that we otherwise call differently. Every one is exported from ``tensordsl``.

    td.size_var(name)              a symbolic size (TVM's ``te.size_var``; = ``td.var``)
    td.indexdiv / td.indexmod      index division and remainder (floor semantics, as TVM)
    td.floordiv / td.floormod      ``a // b`` and ``a % b``
    td.truncdiv / td.truncmod      C's ``/`` and ``%`` on integers (round toward zero)
    td.Select(cond, t, f)          ``td.select`` (both arms evaluated)

TVM forms that are not functions live with what they extend, and are listed here so this
file remains the one index of them:

    td.lower(..., simple_mode=True)     accepted; our IR is always printed simply
    Schedule.normalize()                a no-op: every axis already starts at 0
    T[i][j]                             chained indexing (``te/tensor.py: TensorSlice``)
    td.max(a, b), td.sum(a, b)          a reducer given two expressions combines them
    float shapes ``(N / bn, K)``        an integral float is accepted as a size or factor
    td.ScheduleError                    also a ``RuntimeError`` (TVM's ``TVMError``)
    td.thread_axis((0, n), tag)         the extent stated, as TVM's
    x.equal(y)                          ``x == y`` as an expression (``ir/nodes.py``)
    s[T].set_store_predicate(cond)      stores only where ``cond`` holds
    td.decl_tensor_intrin, td.decl_buffer   your own tensorize intrinsics
                                        (``schedule/tensor_intrin.py``, ``te/buffer.py``)
    td.call_extern(dtype, name, ...)    a C function (``te/api.py``; ``call_pure_extern``
                                        too; on the GPU a CUDA device function); its IR by
                                        ``s[T].pragma(axis, "import_llvm", code)``
"""
from __future__ import annotations

from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.op import binary, match_types, select
from .api import var


def size_var(name: str = "size", dtype: str = "int64") -> n.Var:
    """A symbolic size, never negative (TVM ``te.size_var``): ``n = td.size_var("n")``."""
    return var(name, dtype)


def floordiv(a, b) -> n.Expr:
    """``a // b`` rounding toward negative infinity (TVM ``tir.floordiv``)."""
    return binary("FloorDiv", a, b)


def floormod(a, b) -> n.Expr:
    """``a % b`` with the sign of ``b`` (TVM ``tir.floormod``)."""
    return binary("FloorMod", a, b)


def indexdiv(a, b) -> n.Expr:
    """Division of non-negative indices (TVM ``tir.indexdiv``, floor semantics)."""
    return floordiv(a, b)


def indexmod(a, b) -> n.Expr:
    """Remainder of non-negative indices (TVM ``tir.indexmod``, floor semantics)."""
    return floormod(a, b)


def _integer_operands(name: str, a, b):
    a, b = match_types(a, b)
    if not dt.is_int(a.dtype) or dt.is_bool(a.dtype):
        raise TypeError(f"{name}: operands must be integers, got {a.dtype}")
    return a, b


def truncdiv(a, b) -> n.Expr:
    """Integer division rounding toward zero, as C's ``/`` (TVM ``tir.truncdiv``):
    ``truncdiv(-7, 2)`` is ``-3``."""
    a, b = _integer_operands("truncdiv", a, b)
    return n.Div(a, b)


def truncmod(a, b) -> n.Expr:
    """The remainder of ``truncdiv``, with the sign of ``a``, as C's ``%`` (TVM
    ``tir.truncmod``): ``truncmod(-7, 2)`` is ``-1``."""
    a, b = _integer_operands("truncmod", a, b)
    return n.Sub(a, n.Mul(n.Div(a, b), b))


Select = select
