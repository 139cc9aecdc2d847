"""Storage flattening: n-d tensors become flat buffers.

Argument tensors become the function's parameter buffers (row-major, dense). Each
``ProducerRealize`` becomes an ``Allocate`` of the realized region, so a stage computed
at a loop only stores its tile; ``T[i, j]`` becomes ``T[(i - min0)*stride0 + (j - min1)]``.
``storage_align`` pads a dimension's stride to ``factor*k + offset``.

A double-buffered stage (``s[T].double_buffer()``) gets two copies of its tile; the
iterations of the loop it is computed in alternate between them (``offset + (i % 2) *
size``), so a GPU block can fill the next tile while slow threads still read the last
one, with one barrier per iteration instead of two. A pipelined stage
(``s[T].pipeline(stages=S)``) gets ``S`` copies the same way (``(i % S) * size``), and
is listed with its loop for the GPU pass that copies it ahead (``async_copies.py``),
with the box of the argument it copies where the TMA is to copy it (``tma.py``).

A swizzled stage (``s[T].swizzle()``) stores element offset ``o`` at
``o ^ ((o // L) % 8 * V)``, ``V`` elements to 16 bytes and ``L`` to 128: the 16-byte
chunks of each 128-byte line permuted by the line's position in its 1024-byte block.
The tensor-core product's operand tiles are the exception: they are passed unswizzled
(the tile's first element and the one a row below, as ever) with a flag saying the
buffer is swizzled, since each lane of ``ldmatrix`` swizzles its own row's address
(``targets/cuda/wmma.py``).
"""
from __future__ import annotations

from ..arith.simplify import simplify_expr
from ..errors import BuildError
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.printer import Printer
from ..ir.visitor import Mutator
from .tma import tma_box

_ONE = n.IntImm("int64", 1)
SWIZZLE_BLOCK_BYTES = 1024     # 8 lines of 128 bytes: what one permutation covers


def row_major_strides(shape, align: dict | None = None) -> list[n.Expr]:
    strides = [_ONE] * len(shape)
    acc = _ONE
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc
        acc = n.Mul(acc, shape[d])
        if align and d - 1 in align and d > 0:
            factor, offset = align[d - 1]
            f = n.IntImm("int64", factor)
            # round the next stride up to factor*k + offset
            acc = n.Add(n.Mul(n.FloorDiv(n.Add(acc, n.IntImm("int64", factor - 1 - offset)), f), f),
                        n.IntImm("int64", offset))
    return strides


class _Layout:
    def __init__(self, buffer: n.Buffer, mins, strides, base=None, chunk: int = 0):
        self.buffer, self.mins, self.strides, self.base = buffer, mins, strides, base
        self.chunk = chunk          # swizzled: elements in 16 bytes (else 0)

    def offset(self, indices) -> n.Expr:
        linear = self.linear_offset(indices)
        if not self.chunk:
            return linear
        line = n.IntImm("int64", 8 * self.chunk)          # 128 bytes
        row = n.FloorMod(n.FloorDiv(linear, line), n.IntImm("int64", 8))
        return n.Call("int64", "bitwise_xor",
                      (linear, n.Mul(row, n.IntImm("int64", self.chunk))))

    def linear_offset(self, indices) -> n.Expr:
        out = self.base
        for idx, lo, stride in zip(indices, self.mins, self.strides):
            rel = idx if lo is None else n.Sub(idx, lo)
            term = rel if isinstance(stride, n.IntImm) and stride.value == 1 else n.Mul(rel, stride)
            out = term if out is None else n.Add(out, term)
        return out if out is not None else n.IntImm("int64", 0)


class FlattenStorage(Mutator):
    def __init__(self, param_buffers: dict, aligns: dict, double_buffered=frozenset(),
                 pipelined=None, swizzled=frozenset(), tma=frozenset()):
        self.layouts = {}
        self.tma = tma                       # pipelined ops the TMA copies
        self.params = dict(param_buffers)    # argument tensor -> its buffer
        self.aligns = aligns
        self.swizzled = swizzled
        self.double_buffered = double_buffered
        self.pipelined = pipelined or {}     # op -> stages
        self.loops: list[n.Var] = []
        self.doubled: list[n.Buffer] = []
        self.pipelined_buffers: list[tuple] = []   # (buffer, loop var, stages, TmaBox)
        for tensor, buf in param_buffers.items():
            self.layouts[tensor] = _Layout(buf, [None] * len(buf.shape),
                                           row_major_strides(buf.shape))

    def layout(self, tensor) -> _Layout:
        lay = self.layouts.get(tensor)
        if lay is None:
            raise BuildError(f"tensor {tensor.name!r} is used but is neither an argument of "
                             "the function nor computed by the schedule; pass it in args")
        return lay

    def visit_ProducerRealize(self, node):
        extents = [r.extent for r in node.bounds]
        strides = row_major_strides(extents, self.aligns.get(node.tensor.op))
        size = extents[0] if extents else _ONE
        if extents:
            size = n.Mul(strides[0], extents[0])
        base = None
        copies = self.pipelined.get(node.tensor.op, 2)
        if node.tensor.op in self.double_buffered and self.loops:
            # (with no loop around it, e.g. one of extent 1, one copy is all it needs)
            base = n.Mul(n.FloorMod(self.loops[-1], n.IntImm("int64", copies)), size)
            size = n.Mul(size, n.IntImm("int64", copies))
        buf = n.Buffer(node.tensor.name, node.tensor.dtype, (size,), node.scope)
        chunk = _swizzle_chunk(node, extents, bool(self.aligns.get(node.tensor.op))) \
            if node.tensor.op in self.swizzled else 0
        if base is not None:
            self.doubled.append(buf)
            if node.tensor.op in self.pipelined:
                self.pipelined_buffers.append((buf, self.loops[-1], copies,
                                               self._tma_box(node, chunk)))
        self.layouts[node.tensor] = _Layout(buf, [r.min for r in node.bounds], strides, base,
                                            chunk)
        body = self.visit(node.body)
        del self.layouts[node.tensor]
        return n.Allocate(buf, size, body)

    def _tma_box(self, node, chunk: int):
        if node.tensor.op not in self.tma:
            return None
        read = node.tensor.op.body[0]
        src = self.params.get(read.tensor) if isinstance(read, n.TensorRead) else None
        return tma_box(node, src, bool(chunk), bool(self.aligns.get(node.tensor.op)))

    def visit_For(self, node):
        serial = node.kind in ("serial", "unrolled")
        if serial:
            self.loops.append(node.var)
        try:
            return self.generic_visit(node)
        finally:
            if serial:
                self.loops.pop()

    def visit_ProducerStore(self, node):
        lay = self.layout(node.tensor)
        value = self.visit(node.value)
        index = self.visit(lay.offset(node.indices))
        return n.Store(lay.buffer, value, index)

    def visit_TensorRead(self, node):
        lay = self.layout(node.tensor)
        index = self.visit(lay.offset(node.indices))
        return n.Load(node.tensor.dtype, lay.buffer, index)

    def visit_Evaluate(self, node):
        if isinstance(node.value, n.Call) and node.value.name == "tensor_stride":
            self.visit(node.value)       # a declared stride, checked: nothing to run
            return n.seq()
        return self.generic_visit(node)

    def visit_Call(self, node):
        if node.name in _REGION_CALLS:
            return self.region_call(node)
        if node.name == "wmma.store":
            # (a tile stored row-major from its first element: not through the swizzle)
            for read in node.args[:2]:
                if self.layout(read.tensor).chunk:
                    raise BuildError(f"swizzle of {read.tensor.name!r}: a tensor-core "
                                     "store writes its tile row by row, which a swizzled "
                                     "buffer does not lay out; swizzle the operand tiles "
                                     "only")
        if node.name != "wmma.mma_sync":
            return self.generic_visit(node)
        # the operand tiles (arguments 2-5) unswizzled, then a flag per operand
        args = list(node.args)
        flags = []
        for k in (2, 4):
            lay = self.layout(args[k].tensor)
            for j in (k, k + 1):
                args[j] = n.Load(args[j].tensor.dtype, lay.buffer,
                                 self.visit(lay.linear_offset(args[j].indices)))
            flags.append(n.IntImm("int64", int(bool(lay.chunk))))
        args = [a if k in (2, 3, 4, 5) else self.visit(a) for k, a in enumerate(args)]
        return n.Call(node.dtype, node.name, tuple(args) + tuple(flags))


    def region_call(self, node):
        """A declared intrinsic's view of a region (``te/buffer.py``), given its first
        element: ``tensor_address`` its address (plus an offset), ``tensor_offset`` its
        element offset, ``tensor_stride`` the stride of one dimension, checked against
        the declared one."""
        first = node.args[0]
        lay = self.layout(first.tensor)
        if lay.chunk:
            raise BuildError(f"swizzle of {first.tensor.name!r}: a declared tensor "
                             "intrinsic reads it through its address, which a swizzled "
                             "buffer does not lay out row-major; do not swizzle it")
        offset = self.visit(lay.linear_offset(first.indices))
        if node.name == "tensor_address":
            index = n.Add(offset, self.visit(node.args[1]))
            return n.Call("handle", "address_of",
                          (n.Load(first.tensor.dtype, lay.buffer, index),))
        if node.name == "tensor_offset":
            return offset
        dim, want, what = node.args[1].value, node.args[2].value, node.args[3].value
        stride = simplify_expr(lay.strides[dim])
        if want >= 0 and not (isinstance(stride, n.IntImm) and stride.value == want):
            has = stride.value if isinstance(stride, n.IntImm) else \
                f"the size-dependent {Printer().expr(stride)}"
            raise BuildError(f"{what}: the buffer declares a stride of {want} where the "
                             f"tensor's dimension {dim} has {has} (strides=None declares a "
                             "compact buffer; a td.var() stride takes any)")
        return n.Cast("int32", stride)


_REGION_CALLS = ("tensor_address", "tensor_offset", "tensor_stride")


def _swizzle_chunk(node, extents, padded: bool) -> int:
    """Elements per 16-byte chunk of swizzled stage ``node``'s buffer, after checking
    the buffer can be swizzled (see ``Stage.swizzle``)."""
    name = node.tensor.name
    nbytes = dt.bits(node.tensor.dtype) // 8
    dims = [e.value if isinstance(e, n.IntImm) else None for e in extents]
    where = f"swizzle of {name!r}"
    if node.scope != "shared":
        raise BuildError(f"{where}: only a shared buffer is swizzled, it is {node.scope!r}")
    if nbytes not in (2, 4) or dt.lanes(node.tensor.dtype) != 1:
        raise BuildError(f"{where}: elements of 2 or 4 bytes, got {node.tensor.dtype}")
    if None in dims or not dims:
        raise BuildError(f"{where}: its extents must be constants, got {list(extents)}")
    total = 1
    for d in dims:
        total *= d
    if (dims[-1] * nbytes) % 16 or (total * nbytes) % SWIZZLE_BLOCK_BYTES:
        raise BuildError(f"{where}: rows of whole 16-byte chunks in whole "
                         f"{SWIZZLE_BLOCK_BYTES}-byte blocks; got a {'x'.join(map(str, dims))} "
                         f"tile of {node.tensor.dtype} ({total * nbytes} bytes, rows of "
                         f"{dims[-1] * nbytes})")
    if padded:
        raise BuildError(f"{where}: a swizzled tile is not padded as well (storage_align)")
    return 16 // nbytes


def flatten_storage(body: n.Stmt, param_buffers: dict, aligns: dict,
                    double_buffered=frozenset(), pipelined=None, swizzled=frozenset(),
                    tma=frozenset()):
    """The flattened body, the buffers that were double-buffered (or pipelined), and the
    pipelined ones as ``(buffer, loop variable, stages, TmaBox or None)``."""
    f = FlattenStorage(param_buffers, aligns, double_buffered, pipelined, swizzled, tma)
    return f.visit(body), f.doubled, f.pipelined_buffers
