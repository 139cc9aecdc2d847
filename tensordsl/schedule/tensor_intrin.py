"""Hardware intrinsics that ``s[T].tensorize(axis, intrin)`` puts in place of a loop nest.

The tensor-core intrinsics of CUDA's WMMA API, on 16x16x16 tiles (float16 or bfloat16
inputs, float32 accumulation), each a warp-wide operation:

    wmma_mma_sync()   the reduction stage's loops (i, j, k) of 16, 16, 16 over
                      C[i, j] += A[i, k] * B[k, j] with C in scope "wmma.accumulator"
                      (its initialization becomes fill_fragment); A and B row-major.
                      wmma_mma_sync(m, n) takes a warp's m x n block of such tiles (m
                      and n multiples of 16) in one step: each of its m/16 A tiles and
                      n/16 B tiles loaded once, then every product
    wmma_store()      a copy stage's loops (i, j) of 16, 16 reading the accumulator:
                      store_matrix_sync into the stage's buffer

``tensordsl/lower/tensorize.py`` checks the loops and the computation and emits the
calls; the CUDA code generator writes them with ``nvcuda::wmma`` (float16 tiles) or with
ldmatrix and mma.sync (bfloat16 tiles: ``targets/cuda/wmma.py``).

And intrinsics a user declares (TVM ``te.decl_tensor_intrin``): a compute stating what
the intrinsic computes, and ``fcompute(ins, outs)`` building the code that does it,
typically a ``td.call_extern`` of a C function (``tensordsl/lower/tensorize_declared.py``
matches and binds them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import nodes as n


@dataclass(frozen=True)
class TensorIntrin:
    name: str                 # "wmma.mma_sync" | "wmma.store"
    shape: tuple[int, ...]    # loop extents it replaces, outermost first

    def __repr__(self):
        return f"TensorIntrin({self.name}, {self.shape})"


@dataclass(frozen=True, eq=False)
class DeclaredIntrin(TensorIntrin):
    """An intrinsic declared by ``td.decl_tensor_intrin``: ``op`` states what it
    computes, ``fcompute(ins, outs)`` the code (a statement; or for a reduction,
    ``(body, reset, update)``), ``binds`` each tensor of ``op`` to a ``td.decl_buffer``."""
    op: object = field(default=None, repr=False)
    fcompute: object = field(default=None, repr=False)
    binds: dict = field(default_factory=dict, repr=False)

    def buffer(self, tensor):
        """The declared buffer of one of ``op``'s tensors (compact, of its shape, where
        none was bound)."""
        from ..te.buffer import decl_buffer
        for t, b in self.binds.items():
            if t.op is tensor.op and t.value_index == tensor.value_index:
                return b
        return decl_buffer(tensor.shape, tensor.dtype, tensor.name)


def decl_tensor_intrin(op, fcompute, name: str = "tensor_intrin", binds=None,
                       scalar_params=None, default_buffer_params=None) -> DeclaredIntrin:
    """A tensor intrinsic computing what compute ``op`` does (TVM
    ``te.decl_tensor_intrin``), for ``s[T].tensorize(axis, intrin)``: the loops from
    ``axis`` inward must be ``op``'s axes then its reduction axes, of the same extents,
    and compute the same expression of the same element types. ``fcompute(ins, outs)``
    gets one buffer view per input and output of ``op`` (``access_ptr``, ``strides``,
    ``elem_offset``, ``vload``, ``vstore``) and returns the statement (or call) doing
    the work; for a reduction it may return ``(body, reset, update)`` — the whole
    reduction, the output's initialization, and an accumulation — so that the stage's
    reduction may also run outside the tensorized loops. ``binds``: ``{tensor:
    td.decl_buffer(...)}`` for operands not laid out compactly (a var stride takes the
    real one; a constant stride is checked when building)."""
    from ..te.buffer import DeclBuffer
    from ..te.tensor import ComputeOp
    if not isinstance(op, ComputeOp) and hasattr(op, "op"):
        op = op.op                      # a tensor given for its op
    if not isinstance(op, ComputeOp):
        raise TypeError(f"decl_tensor_intrin {name!r}: op must be a compute's op "
                        f"(C.op), got {op!r}")
    if len(op.body) != 1:
        raise ValueError(f"decl_tensor_intrin {name!r}: op must have one output, got "
                         f"{len(op.body)}")
    if not callable(fcompute):
        raise TypeError(f"decl_tensor_intrin {name!r}: fcompute must be a function of "
                        f"(ins, outs), got {fcompute!r}")
    if scalar_params:
        raise ValueError(f"decl_tensor_intrin {name!r}: scalar_params are not supported")
    if default_buffer_params:
        raise ValueError(f"decl_tensor_intrin {name!r}: default_buffer_params are not "
                         "supported; bind each tensor to a td.decl_buffer in binds")
    binds = dict(binds or {})
    own = {(id(t.op), t.value_index): t for t in list(op.input_tensors) + [op.output(0)]}
    for t, b in binds.items():
        if not isinstance(b, DeclBuffer):
            raise TypeError(f"decl_tensor_intrin {name!r}: binds maps tensors to "
                            f"td.decl_buffer(...), got {b!r} for {t!r}")
        mine = own.get((id(getattr(t, "op", None)), getattr(t, "value_index", None)))
        if mine is None:
            raise ValueError(f"decl_tensor_intrin {name!r}: binds has "
                             f"{getattr(t, 'name', t)!r}, which is "
                             f"neither read nor computed by op {op.name!r}")
        shape = [int(d.value) if isinstance(d, n.IntImm) else None for d in b.shape]
        want = [int(d.value) if isinstance(d, n.IntImm) else None for d in mine.shape]
        if shape != want or b.dtype != mine.dtype:
            raise ValueError(f"decl_tensor_intrin {name!r}: buffer {b.name!r} is "
                             f"{b.dtype}{shape}, the tensor {mine.name!r} bound to it "
                             f"{mine.dtype}{want}")
    shape = []
    for iv in tuple(op.axis) + tuple(op.reduce_axis):
        extent = iv.dom.extent
        if not isinstance(extent, n.IntImm):
            raise ValueError(f"decl_tensor_intrin {name!r}: axis {iv.var.name!r} must have "
                             f"a constant extent, got {extent}")
        shape.append(int(extent.value))
    return DeclaredIntrin(name, tuple(shape), op, fcompute, binds)


def wmma_mma_sync(m: int = 16, n: int = 16, k: int = 16) -> TensorIntrin:
    if k != 16 or m < 16 or n < 16 or m % 16 or n % 16:
        raise ValueError(f"wmma_mma_sync: supported tiles are 16x16x16 and blocks of them "
                         f"(m and n multiples of 16, k 16), got {m}x{n}x{k}")
    return TensorIntrin("wmma.mma_sync", (m, n, k))


def wmma_store(m: int = 16, n: int = 16) -> TensorIntrin:
    if (m, n) != (16, 16):
        raise ValueError(f"wmma_store: supported tile is 16x16, got {m}x{n}")
    return TensorIntrin("wmma.store", (m, n))


def by_name(name: str, shape=None) -> TensorIntrin:
    """The intrinsic ``name`` of ``shape`` (its loop extents; default its 16x16 tile),
    as a schedule's trace records it."""
    makers = {"wmma.mma_sync": wmma_mma_sync, "wmma.store": wmma_store}
    if name not in makers:
        raise ValueError(f"unknown tensor intrinsic {name!r}; known: {sorted(makers)}")
    return makers[name](*(shape or ()))
