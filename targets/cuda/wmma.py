"""CUDA C for the tensor-core calls that ``tensorize`` leaves in the IR (``nvcuda::wmma``).

Each operand arrives as two loads: the tile's first element and the one a row below,
whose index difference is the row stride (``ldm``). An accumulator tile lives in an
array of fragments: the 16x16 tiles of the accumulator buffer, row-major.
"""
from __future__ import annotations

from tensordsl.arith.simplify import simplify_expr
from tensordsl.errors import BuildError
from tensordsl.ir import nodes as n

_NS = "nvcuda::wmma"


def _operand(w, first: n.Load, below: n.Load):
    ldm = simplify_expr(n.Sub(below.index, first.index))
    return f"&{w.at(first.buffer, w.expr(first.index), 'address')}", ldm


def _fragment(w, first: n.Load, below: n.Load) -> str:
    row = simplify_expr(n.Sub(below.index, first.index))
    if not (isinstance(row, n.IntImm) and row.value % 16 == 0):
        raise BuildError(f"accumulator {first.buffer.name!r}: its rows must be a constant "
                         f"multiple of 16 elements wide, got {row}")
    width = row.value
    idx = w.expr(first.index)
    return f"{w.buf(first.buffer)}[(({idx}) / {16 * width}) * {width // 16} + (({idx}) % {width}) / 16]"


def write_wmma(w, call: n.Call, depth: int):
    args = call.args
    if call.name == "wmma.fill":
        w.emit(depth, f"{_NS}::fill_fragment({_fragment(w, args[0], args[1])}, "
                      f"{w.expr(args[2])});")
    elif call.name == "wmma.mma_sync":
        frag = _fragment(w, args[0], args[1])
        (a_ptr, lda), (b_ptr, ldb) = _operand(w, args[2], args[3]), _operand(w, args[4], args[5])
        from .codegen import c_type
        t = c_type(args[2].buffer.dtype)
        w.emit(depth, "{")
        w.emit(depth + 1, f"{_NS}::fragment<{_NS}::matrix_a, 16, 16, 16, {t}, {_NS}::row_major> td_a;")
        w.emit(depth + 1, f"{_NS}::fragment<{_NS}::matrix_b, 16, 16, 16, {t}, {_NS}::row_major> td_b;")
        w.emit(depth + 1, f"{_NS}::load_matrix_sync(td_a, {a_ptr}, {w.expr(lda)});")
        w.emit(depth + 1, f"{_NS}::load_matrix_sync(td_b, {b_ptr}, {w.expr(ldb)});")
        w.emit(depth + 1, f"{_NS}::mma_sync({frag}, td_a, td_b, {frag});")
        w.emit(depth, "}")
    elif call.name == "wmma.store":
        ptr, ldm = _operand(w, args[0], args[1])
        frag = _fragment(w, args[2], args[3])
        w.emit(depth, f"{_NS}::store_matrix_sync({ptr}, {frag}, {w.expr(ldm)}, "
                      f"{_NS}::mem_row_major);")
    else:
        raise BuildError(f"the CUDA code generator has no intrinsic {call.name!r}")
