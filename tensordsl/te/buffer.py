"""Buffers of a declared tensor intrinsic (TVM's ``tir.decl_buffer``) and the views of
them its body is built from.

``td.decl_buffer`` states how an intrinsic expects one of its operands laid out: shape,
strides (``None``: compact row-major; an entry may be a ``td.var``, which takes whatever
the tensorized tensor has) and element type. ``td.decl_tensor_intrin(op, fcompute,
binds={tensor: buffer})`` ties buffers to the intrinsic's tensors. When a loop nest is
tensorized, ``fcompute(ins, outs)`` is called with one ``BufferView`` per tensor: the
region of the real tensor the nest touches, seen through the declared buffer. Its
``access_ptr``, ``elem_offset`` and ``strides`` are expressions that storage flattening
turns into the region's address, offset and row strides in the real buffer.
"""
from __future__ import annotations

from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.op import convert

_ZERO = n.IntImm("int64", 0)


class DeclBuffer:
    """The layout an intrinsic expects of one operand (TVM ``tir.Buffer``)."""

    def __init__(self, shape, dtype: str, name: str, strides, elem_offset, offset_factor,
                 scope: str, data_alignment: int):
        from .api import _shape
        self.shape = _shape(shape, f"decl_buffer {name!r}")
        self.dtype, self.name, self.scope = dt.normalize(dtype), name, scope
        if strides is not None:
            if not isinstance(strides, (tuple, list)) or len(strides) != len(self.shape):
                raise ValueError(f"decl_buffer {name!r}: strides must be a list of "
                                 f"{len(self.shape)} entries (one per dimension), got "
                                 f"{strides!r}")
            strides = tuple(convert(s) for s in strides)
            for s in strides:
                if not (isinstance(s, (n.IntImm, n.Var)) and dt.is_int(s.dtype)):
                    raise TypeError(f"decl_buffer {name!r}: a stride is an int or a "
                                    f"td.var, got {s!r}")
        self.strides = strides
        self.elem_offset, self.offset_factor = elem_offset, offset_factor
        self.data_alignment = data_alignment

    def expected_stride(self, d: int) -> int | None:
        """The stride dimension ``d`` must have, or None where any will do (a var)."""
        if self.strides is None:
            stride = 1
            for extent in self.shape[d + 1:]:
                if not isinstance(extent, n.IntImm):
                    return None
                stride *= extent.value
            return stride
        s = self.strides[d]
        return s.value if isinstance(s, n.IntImm) else None

    def __repr__(self):
        return f"DeclBuffer({self.name}, {self.dtype}, shape={list(self.shape)})"


def decl_buffer(shape, dtype: str = "float32", name: str = "buffer", data=None,
                strides=None, elem_offset=None, scope: str = "", data_alignment: int = -1,
                offset_factor: int = 0) -> DeclBuffer:
    """How a tensor intrinsic sees one operand (TVM ``tir.decl_buffer``):
    ``td.decl_buffer(b.shape, b.dtype, name="B", strides=[td.var("s1"), 1])``.
    ``data``, ``elem_offset``, ``data_alignment`` and ``offset_factor`` are accepted for
    TVM's sake; the offset is always the region's."""
    if data is not None:
        raise ValueError(f"decl_buffer {name!r}: data= (a pointer variable) is not "
                         "supported; the view's access_ptr() gives the region's address")
    return DeclBuffer(shape, dtype, name, strides, elem_offset, offset_factor, scope,
                      data_alignment)


class BufferView:
    """The region ``[mins, mins + shape)`` of ``tensor`` seen as ``buffer``: its trailing
    dimensions are the buffer's, its leading ones (if more) of extent 1."""

    def __init__(self, buffer: DeclBuffer, tensor, mins: tuple, intrin: str):
        self.buffer, self.tensor, self.mins, self.intrin = buffer, tensor, tuple(mins), intrin
        self.shape, self.dtype, self.name = buffer.shape, buffer.dtype, buffer.name
        self.scope = buffer.scope
        lead = len(self.mins) - len(self.shape)
        self.strides = tuple(_stride(self, lead + d, None) for d in range(len(self.shape)))
        self.accesses: dict = {}    # id(read or store) -> (node, its indices in the buffer)
        self.elem_offset = n.Cast("int32", n.Call("int64", "tensor_offset", (self.first,)))

    @property
    def first(self) -> n.TensorRead:
        return n.TensorRead(self.tensor, self.mins)

    def stride_checks(self) -> list[n.Stmt]:
        """One statement per dimension whose stride the declaration fixes: storage
        flattening compares it with the real one (``BuildError`` if they differ)."""
        lead = len(self.mins) - len(self.shape)
        return [n.Evaluate(_stride(self, lead + d, want))
                for d in range(len(self.shape))
                for want in [self.buffer.expected_stride(d)] if want is not None]

    def access_ptr(self, access_mask="rw", ptr_type: str = "handle", content_lanes: int = 1,
                   offset=0) -> n.Call:
        """The address of the region's first element, plus ``offset`` elements (TVM
        ``Buffer.access_ptr``; the mask, ``"r"``, ``"w"`` or ``"rw"``, documents intent)."""
        if not isinstance(access_mask, (str, int)):
            raise TypeError(f"access_ptr of {self.name!r}: access_mask must be 'r', 'w' or "
                            f"'rw', got {access_mask!r}")
        return n.Call("handle", "tensor_address", (self.first, _int64(offset, "offset")))

    def _indices(self, begin) -> tuple:
        begin = list(begin) if isinstance(begin, (tuple, list)) else [begin]
        if len(begin) != len(self.shape):
            raise ValueError(f"buffer {self.name!r}: expected {len(self.shape)} indices, "
                             f"got {len(begin)}")
        lead = len(self.mins) - len(self.shape)
        return tuple(self.mins[:lead]) + tuple(
            n.Add(lo, _int64(i, "index")) for lo, i in zip(self.mins[lead:], begin))

    def vload(self, begin, dtype: str | None = None) -> n.Expr:
        """The element at ``begin`` (one index per dimension of the buffer); checked to
        lie inside the buffer's shape over the loops around it when tensorizing."""
        if dtype is not None and dt.normalize(dtype) != self.dtype:
            raise ValueError(f"vload of buffer {self.name!r}: loads its element type "
                             f"{self.dtype}, not {dtype} (no vector loads)")
        return self._track(n.TensorRead(self.tensor, self._indices(begin)), begin)

    def vstore(self, begin, value) -> n.Stmt:
        """Store ``value`` at ``begin`` (checked as ``vload``)."""
        value = convert(value)
        if value.dtype != self.dtype:
            value = n.Cast(self.dtype, value)
        return self._track(n.ProducerStore(self.tensor, value, self._indices(begin)), begin)

    def _track(self, node, begin):
        begin = list(begin) if isinstance(begin, (tuple, list)) else [begin]
        self.accesses[id(node)] = (node, [_int64(i, "index") for i in begin])
        return node

    def __repr__(self):
        return f"BufferView({self.name} of {self.tensor.name})"


def _stride(view: BufferView, dim: int, want) -> n.Call:
    """``tensor_stride(first, dim, want, name)``: the real tensor's stride in ``dim``
    (flattening knows it), ``want`` -1 where any is fine."""
    return n.Call("int32", "tensor_stride", (
        view.first, n.IntImm("int64", dim), n.IntImm("int64", -1 if want is None else want),
        n.StringImm(f"{view.intrin}: buffer {view.name!r} bound to {view.tensor.name!r}")))


def _int64(x, what: str) -> n.Expr:
    e = convert(x)
    if not dt.is_int(e.dtype):
        raise TypeError(f"{what} must be an integer, got {e.dtype} ({e!r})")
    return e if e.dtype == "int64" else n.Cast("int64", e)
