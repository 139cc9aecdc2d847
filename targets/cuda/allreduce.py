"""CUDA C for ``AllReduce``: combining one value per thread across ``threadIdx.x``.

    extent a power of two <= 32   butterfly of ``__shfl_xor_sync`` within each group
                                  of lanes (every lane ends with the result)
    extent a multiple of 32       butterfly within each warp, warp results through
                                  shared memory, each thread combines them
    otherwise                     every value through shared memory, each thread
                                  combines its group's
The reduction axis must span the whole ``threadIdx.x`` launch dimension, so the groups
are the rows of the block (threads that share ``threadIdx.y`` and ``.z``).
"""
from __future__ import annotations

from tensordsl.errors import BuildError
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import substitute


def write_allreduce(w, s: n.AllReduce, depth: int):
    (extent,) = [int(e.value) for e in s.extents]
    if w.k.block[0] != extent:
        raise BuildError(f"a reduction over threadIdx.x of extent {extent} in a block "
                         f"{w.k.block[0]} threads wide: bind the reduction axis to the "
                         "whole threadIdx.x dimension")
    comb = s.combiner
    ctypes = [w_type(w, v.dtype) for v in s.values]
    k = len(w.lines)
    val_vars = [n.Var(f"td_red{k}_v{i}", v.dtype) for i, v in enumerate(s.values)]
    other_vars = [n.Var(f"td_red{k}_o{i}", v.dtype) for i, v in enumerate(s.values)]
    vals, others = [w.var(v) for v in val_vars], [w.var(v) for v in other_vars]
    w.emit(depth, "{")
    d = depth + 1
    for name, t, v in zip(vals, ctypes, s.values):
        w.emit(d, f"{t} {name} = {w.expr(v)};")

    def combine(a_names, b_names, indent):
        """a = combine(a, b), with every output computed from the old values."""
        mapping = dict(zip(comb.lhs, val_vars)) | dict(zip(comb.rhs, other_vars))
        news = [w.expr(substitute(r, mapping)) for r in comb.result]
        tmp = [f"{a}_next" for a in a_names]
        for t, ct, e in zip(tmp, ctypes, news):
            w.emit(indent, f"{ct} {t} = {e};")
        for a, t in zip(a_names, tmp):
            w.emit(indent, f"{a} = {t};")

    def butterfly(width, indent):
        offset = width // 2
        while offset >= 1:
            w.emit(indent, "{")
            for o, v, t in zip(others, vals, ctypes):
                w.emit(indent + 1, f"{t} {o} = __shfl_xor_sync(0xffffffffu, {v}, {offset}, "
                                   f"{width});")
            combine(vals, others, indent + 1)
            w.emit(indent, "}")
            offset //= 2

    threads = w.k.threads
    whole_warps = threads % 32 == 0     # __shfl_xor_sync(0xffffffff) needs full warps
    if extent & (extent - 1) == 0 and extent <= 32 and whole_warps:
        butterfly(extent, d)
        if threads > 32:
            # insert_barriers counts an AllReduce as a block barrier: with several warps
            # the shuffles alone order only each warp
            w.emit(d, "__syncthreads();")
    else:
        by_warp = extent % 32 == 0 and whole_warps
        per_value = threads // 32 if by_warp else threads
        bufs = [w.shared_scratch(t, per_value) for t in ctypes]
        tid = "(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z))"
        if by_warp:
            butterfly(32, d)
            for b, v in zip(bufs, vals):
                slot = w.shared_at(b, f"{tid} / 32", "write")
                w.emit(d, f"if (threadIdx.x % 32 == 0) {slot} = {v};")
            count, first = extent // 32, f"({tid} - threadIdx.x) / 32"
        else:
            for b, v in zip(bufs, vals):
                w.emit(d, f"{w.shared_at(b, tid, 'write')} = {v};")
            count, first = extent, f"({tid} - threadIdx.x)"
        w.emit(d, "__syncthreads();")
        for b, v in zip(bufs, vals):
            w.emit(d, f"{v} = {w.shared_at(b, first, 'read')};")
        w.emit(d, f"for (int td_i = 1; td_i < {count}; ++td_i) {{")
        for o, b, t in zip(others, bufs, ctypes):
            w.emit(d + 1, f"{t} {o} = {w.shared_at(b, f'{first} + td_i', 'read')};")
        combine(vals, others, d + 1)
        w.emit(d, "}")
        w.emit(d, "__syncthreads();")   # the scratch may be reused right after
    for r, v in zip(s.results, vals):
        w.emit(d, f"{w.at(r, '0LL')} = {w.stored(r, v)};")
    w.emit(depth, "}")


def w_type(w, dtype: str) -> str:
    """The C type of a value (bfloat16 values are floats; only memory is 16-bit)."""
    from tensordsl.ir import dtype as dt
    from .codegen import c_type
    return "float" if dt.element(dtype) == "bfloat16" else c_type(dtype)
