"""Which pipelined tiles the tensor memory accelerator can copy (``s[T].pipeline(...,
tma=True)``), and the box of the argument tensor each one is.

The TMA copies a box of a global tensor, row-major in its shape's order, into shared
memory densely in the same order, XOR-permuting the 16-byte chunks of each 128-byte line
when the tensor map asks for the 128-byte swizzle. So a tile qualifies when it is a
plain copy of an argument (``cache_read``: ``T[i, j] = A[i, j]``), its extents are
constants the TMA takes (at most 256 each, rows of whole 16 bytes), it is not padded
(``storage_align``), and when swizzled (``s[T].swizzle()``, the same permutation on the
same 1024-byte blocks) its rows are 128 bytes. The box's origin is the tile's region
(``ProducerRealize`` bounds) in the tensor: expressions of the loops around the tile.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildError
from ..ir import dtype as dt
from ..ir import nodes as n

TMA_AVAILABLE = "tma_available"   # Call: true where compiled for sm_90 and later
MAX_BOX = 256           # elements per dimension of a TMA box
MAX_RANK = 5
SWIZZLE_BYTES = 128     # the one swizzle the layout of ``s[T].swizzle()`` matches
STAGE_ALIGNMENT = 128   # bytes: where a TMA destination may start


def is_arch_choice(stmt) -> bool:
    """``if tma_available(): <TMA version> else: <cp.async version>``: a choice the
    CUDA C makes with ``#if`` when compiled, the same in every thread."""
    return (isinstance(stmt, n.IfThenElse) and isinstance(stmt.condition, n.Call)
            and stmt.condition.name == TMA_AVAILABLE and stmt.else_case is not None)


@dataclass(frozen=True)
class TmaBox:
    """The box a TMA tile copies: ``src[origin + i]`` for ``i < box``."""
    src: n.Buffer
    origin: tuple
    box: tuple
    swizzle: int          # 0 or SWIZZLE_BYTES
    nbytes: int           # of the whole box


def tma_box(realize: n.ProducerRealize, src: n.Buffer | None, swizzled: bool,
            padded: bool) -> TmaBox:
    """The box of pipelined tile ``realize`` (its stage asked for ``tma=True``), whose
    body reads ``src`` (the argument's buffer; ``None`` if it reads something else)."""
    tensor = realize.tensor
    where = f"pipeline(tma=True) of {tensor.name!r}"
    op = tensor.op
    body = op.body[0] if len(getattr(op, "body", ())) == 1 else None
    if not (src is not None and isinstance(body, n.TensorRead)
            and len(body.indices) == len(op.axis)
            and all(idx is iv.var for idx, iv in zip(body.indices, op.axis))):
        raise BuildError(f"{where}: the TMA copies a box of an argument tensor, so the "
                         f"stage must be a plain copy of one (cache_read); it computes "
                         f"{body!r}")
    extents = [r.extent for r in realize.bounds]
    dims = [e.value if isinstance(e, n.IntImm) else None for e in extents]
    nbytes = dt.bits(tensor.dtype) // 8
    if None in dims or not 1 <= len(dims) <= MAX_RANK or max(dims) > MAX_BOX:
        raise BuildError(f"{where}: a TMA box has 1 to {MAX_RANK} constant extents of at "
                         f"most {MAX_BOX}; the tile is {list(extents)}")
    if dt.lanes(tensor.dtype) != 1 or nbytes not in (1, 2, 4, 8) or (dims[-1] * nbytes) % 16:
        raise BuildError(f"{where}: the TMA copies rows of whole 16-byte chunks; the "
                         f"tile's rows are {dims[-1]} x {tensor.dtype}")
    if padded:
        raise BuildError(f"{where}: the TMA writes the tile densely; it cannot be padded "
                         f"(storage_align) as well")
    total = nbytes
    for d in dims:
        total *= d
    if total % STAGE_ALIGNMENT:
        raise BuildError(f"{where}: each stage of the tile starts where the TMA can write "
                         f"(on {STAGE_ALIGNMENT} bytes), so the tile must be a multiple of "
                         f"{STAGE_ALIGNMENT} bytes; it is {total}")
    if swizzled and dims[-1] * nbytes != SWIZZLE_BYTES:
        raise BuildError(f"{where}: a swizzled tile copied by the TMA needs rows of "
                         f"{SWIZZLE_BYTES} bytes (its 128-byte swizzle); the rows are "
                         f"{dims[-1] * nbytes}")
    shape = [d.value if isinstance(d, n.IntImm) else None for d in src.shape]
    row = nbytes
    for d in reversed(shape[1:]):
        row = row * d if d is not None and row is not None else None
        if row is not None and row % 16:
            raise BuildError(f"{where}: the TMA steps through {src.name!r} in whole 16 "
                             f"bytes, but its shape {tuple(shape)} of {src.dtype} has rows "
                             f"{row} bytes apart")
    return TmaBox(src, tuple(r.min for r in realize.bounds), tuple(dims),
                  SWIZZLE_BYTES if swizzled else 0, total)
