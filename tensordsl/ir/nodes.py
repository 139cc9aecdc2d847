"""IR nodes: expressions and statements, shared by every stage of the compiler.

Semantics (every pass and backend relies on these):

* Integers are two's complement of their dtype's width; overflow wraps. Index arithmetic
  (loop variables, shape variables, flattened offsets) is ``int64`` throughout.
* ``FloorDiv``/``FloorMod`` round toward negative infinity (Python's ``//`` and ``%``);
  ``Div`` is true division for floats and truncating division for integers.
* ``Min``/``Max`` on floats return the second operand when either is NaN.
* Float arithmetic may be contracted into fused multiply-adds; it is never reassociated.
* All operands of an expression are evaluated, except the two arms of the
  ``if_then_else`` call, of which only the selected one is (so it may guard a load).
* ``Select`` evaluates both arms.
* A vector expression (dtype ``"float32x8"``) applies its operation lane by lane;
  ``Ramp(base, stride, lanes)`` is ``[base, base+stride, ...]``, ``Broadcast`` repeats.

Before storage flattening, tensors are read with ``TensorRead`` and written with
``ProducerStore`` inside ``ProducerRealize``; afterwards everything is ``Load``/``Store``
on flat ``Buffer``s inside ``Allocate``. Nodes are immutable; identity matters for
``Var``, ``Buffer`` and ``IterVar`` (two variables named ``i`` are different variables).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import dtype as dt

_node = dataclass(frozen=True, slots=True, eq=False)


class Node:
    __slots__ = ()


class ExprOp:
    """Python operators build IR: ``a + 1`` is ``Add(a, IntImm(1))``, ``a < b`` is ``LT``."""

    __slots__ = ()

    def __add__(self, other): return _op.binary("Add", self, other)
    def __radd__(self, other): return _op.binary("Add", other, self)
    def __sub__(self, other): return _op.binary("Sub", self, other)
    def __rsub__(self, other): return _op.binary("Sub", other, self)
    def __mul__(self, other): return _op.binary("Mul", self, other)
    def __rmul__(self, other): return _op.binary("Mul", other, self)
    def __truediv__(self, other): return _op.true_divide(self, other)
    def __rtruediv__(self, other): return _op.true_divide(other, self)
    def __floordiv__(self, other): return _op.binary("FloorDiv", self, other)
    def __rfloordiv__(self, other): return _op.binary("FloorDiv", other, self)
    def __mod__(self, other): return _op.binary("FloorMod", self, other)
    def __rmod__(self, other): return _op.binary("FloorMod", other, self)
    def __neg__(self): return _op.binary("Sub", _op.zero_like(self), self)
    def __lt__(self, other): return _op.binary("LT", self, other)
    def __le__(self, other): return _op.binary("LE", self, other)
    def __gt__(self, other): return _op.binary("GT", self, other)
    def __ge__(self, other): return _op.binary("GE", self, other)
    def __eq__(self, other): return _op.binary("EQ", self, other)
    def __ne__(self, other): return _op.binary("NE", self, other)
    def __and__(self, other): return _op.logical("And", self, other)
    def __rand__(self, other): return _op.logical("And", other, self)
    def __or__(self, other): return _op.logical("Or", self, other)
    def __ror__(self, other): return _op.logical("Or", other, self)
    def __invert__(self): return Not(_op.convert(self))
    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError("an IR expression has no truth value; use td.all/td.any/td.select "
                        "to combine conditions")

    def astype(self, dtype) -> "Expr":
        return _op.cast(dtype, self)

    def equal(self, other) -> "Expr":
        """``self == other`` as an expression (TVM's spelling, listed in
        ``te/tvm_names.py``)."""
        return _op.binary("EQ", self, other)


class Expr(Node, ExprOp):
    __slots__ = ()
    dtype: str


class Stmt(Node):
    __slots__ = ()


# ---------------------------------------------------------------- leaves


@_node
class IntImm(Expr):
    dtype: str
    value: int


@_node
class FloatImm(Expr):
    dtype: str
    value: float


@_node
class StringImm(Expr):
    """A string constant: the name of a packed function (``td.call_packed``)."""
    value: str
    dtype: str = "handle"


@_node
class Var(Expr):
    name: str
    dtype: str = dt.INDEX_DTYPE


@_node
class Range:
    """The half-open interval ``[min, min + extent)``."""
    min: Expr
    extent: Expr


@_node
class IterVar(ExprOp):
    """A loop axis: a variable with a domain and a kind (``data_par``, ``reduce``)."""
    var: Var
    dom: Range
    kind: str = "data_par"

    @property
    def name(self) -> str:
        return self.var.name

    @property
    def dtype(self) -> str:
        return self.var.dtype

    def __repr__(self):
        return f"IterVar({self.var.name}, {self.kind})"


# ---------------------------------------------------------------- arithmetic


class BinaryOp(Expr):
    __slots__ = ()

    @property
    def dtype(self) -> str:
        return self.a.dtype


@_node
class Add(BinaryOp):
    a: Expr
    b: Expr


@_node
class Sub(BinaryOp):
    a: Expr
    b: Expr


@_node
class Mul(BinaryOp):
    a: Expr
    b: Expr


@_node
class Div(BinaryOp):
    a: Expr
    b: Expr


@_node
class FloorDiv(BinaryOp):
    a: Expr
    b: Expr


@_node
class FloorMod(BinaryOp):
    a: Expr
    b: Expr


@_node
class Min(BinaryOp):
    a: Expr
    b: Expr


@_node
class Max(BinaryOp):
    a: Expr
    b: Expr


class CmpOp(Expr):
    __slots__ = ()

    @property
    def dtype(self) -> str:
        return dt.with_lanes("bool", dt.lanes(self.a.dtype))


@_node
class EQ(CmpOp):
    a: Expr
    b: Expr

    def __bool__(self):
        # Lets IR nodes live in dicts and lists: `x == y` compares identity there.
        return self.a is self.b


@_node
class NE(CmpOp):
    a: Expr
    b: Expr

    def __bool__(self):
        return self.a is not self.b


@_node
class LT(CmpOp):
    a: Expr
    b: Expr


@_node
class LE(CmpOp):
    a: Expr
    b: Expr


@_node
class GT(CmpOp):
    a: Expr
    b: Expr


@_node
class GE(CmpOp):
    a: Expr
    b: Expr


@_node
class And(CmpOp):
    a: Expr
    b: Expr


@_node
class Or(CmpOp):
    a: Expr
    b: Expr


@_node
class Not(Expr):
    a: Expr

    @property
    def dtype(self) -> str:
        return self.a.dtype


@_node
class Select(Expr):
    condition: Expr
    true_value: Expr
    false_value: Expr

    @property
    def dtype(self) -> str:
        return self.true_value.dtype


@_node
class Cast(Expr):
    dtype: str
    value: Expr


@_node
class Call(Expr):
    """An intrinsic: ``exp``, ``log``, ``sqrt``, ``tanh``, ``fabs``, ``pow``, ``floor``,
    ``ceil``, ``round``, the lazy ``if_then_else(cond, a, b)``, and
    ``call_packed(name, signature, *buffers_and_ints)``: a call into a registered Python
    function (``runtime/packed.py``), each buffer given by its first element."""
    dtype: str
    name: str
    args: tuple[Expr, ...]


@_node
class Let(Expr):
    var: Var
    value: Expr
    body: Expr

    @property
    def dtype(self) -> str:
        return self.body.dtype


@_node
class Ramp(Expr):
    base: Expr
    stride: Expr
    lanes: int

    @property
    def dtype(self) -> str:
        return dt.with_lanes(self.base.dtype, self.lanes)


@_node
class Broadcast(Expr):
    value: Expr
    lanes: int

    @property
    def dtype(self) -> str:
        return dt.with_lanes(self.value.dtype, self.lanes)


# ---------------------------------------------------------------- memory


@_node
class Buffer:
    """A flat region of memory. ``shape`` is the logical shape (row-major); after
    flattening, accesses use one linear element index. ``scope`` is ``global``,
    ``shared`` or ``local``."""
    name: str
    dtype: str
    shape: tuple[Expr, ...]
    scope: str = "global"
    data: Var = field(default=None)

    def __post_init__(self):
        if self.data is None:
            object.__setattr__(self, "data", Var(self.name, "handle"))


@_node
class Load(Expr):
    """``buffer[index]``; with a (vector) ``predicate`` only the lanes where it holds are
    read, the others are zero."""
    dtype: str
    buffer: Buffer
    index: Expr
    predicate: Expr | None = None


@_node
class TensorRead(Expr):
    """``tensor[indices]`` before storage flattening (TVM's ProducerLoad)."""
    tensor: Any
    indices: tuple[Expr, ...]

    @property
    def dtype(self) -> str:
        return self.tensor.dtype


@_node
class CommReducer:
    """A commutative reduction: ``combine(lhs, rhs)`` with an identity, tuple-valued."""
    lhs: tuple[Var, ...]
    rhs: tuple[Var, ...]
    result: tuple[Expr, ...]
    identity: tuple[Expr, ...]
    name: str = "reduce"


@_node
class Reduce(Expr):
    """Output ``value_index`` of reducing ``source`` over ``axis`` where ``condition``."""
    combiner: CommReducer
    source: tuple[Expr, ...]
    axis: tuple[IterVar, ...]
    condition: Expr
    value_index: int = 0

    @property
    def dtype(self) -> str:
        return self.source[self.value_index].dtype


# ---------------------------------------------------------------- statements


@_node
class LetStmt(Stmt):
    var: Var
    value: Expr
    body: Stmt


@_node
class For(Stmt):
    """``for var in [min, min + extent)``. ``kind``: serial, parallel, vectorized,
    unrolled, or thread_binding (then ``thread_tag`` names the GPU index, e.g.
    ``threadIdx.x``); ``vthread`` (virtual threads) only until inject_virtual_threads.
    ``balance`` (a parallel loop, or one bound to ``blockIdx``): a nondecreasing weight
    of ``var``'s value (a prefix sum such as CSR's ``pos[var]``); the threads (blocks:
    as many as iterations, each running its share as a loop) then share the iterations
    so that each gets an equal part of the weight, not of the count (TACO's nonzero
    split)."""
    var: Var
    min: Expr
    extent: Expr
    kind: str
    body: Stmt
    thread_tag: str | None = None
    balance: Expr | None = None


@_node
class Store(Stmt):
    """``buffer[index] = value``; with a ``predicate`` only the lanes where it holds."""
    buffer: Buffer
    value: Expr
    index: Expr
    predicate: Expr | None = None


@_node
class ProducerStore(Stmt):
    tensor: Any
    value: Expr
    indices: tuple[Expr, ...]


@_node
class ProducerRealize(Stmt):
    """Storage for ``tensor`` over ``bounds`` (one Range per dimension) within ``body``."""
    tensor: Any
    bounds: tuple[Range, ...]
    scope: str
    body: Stmt


@_node
class Allocate(Stmt):
    buffer: Buffer
    extent: Expr
    body: Stmt


@_node
class Seq(Stmt):
    stmts: tuple[Stmt, ...]


@_node
class IfThenElse(Stmt):
    condition: Expr
    then_case: Stmt
    else_case: Stmt | None = None


@_node
class While(Stmt):
    """``while condition: body`` — a loop whose trip count is data-dependent (the
    co-iteration of sparse operands, ``td.ir_builder``'s ``while_loop``): ``body``
    changes the memory ``condition`` reads."""
    condition: Expr
    body: Stmt


@_node
class Evaluate(Stmt):
    value: Expr


@_node
class Pragma(Stmt):
    """A hint for the statements in ``body`` (``s[T].pragma(axis, key)`` wraps the body
    of that loop): backends act on the keys they know and ignore the rest."""
    key: str
    body: Stmt


@_node
class Barrier(Stmt):
    """All threads of a block meet here (``__syncthreads()`` for scope ``shared``)."""
    scope: str = "shared"


@_node
class TmaLoad(Stmt):
    """A box of global tensor ``src`` (row-major, its shape's order) copied into the
    shared buffer ``dst`` from element ``dst_offset`` by the tensor memory accelerator:
    the elements ``origin + i`` for ``i < box`` (zeros where outside ``src``), laid out
    row-major, 16-byte chunks XOR-permuted when ``swizzle`` is 128 (bytes). The copy
    completes its bytes on the mbarrier ``barrier[slot]`` (``lower/async_copies.py``)."""
    dst: Buffer
    dst_offset: Expr
    src: Buffer
    origin: tuple
    box: tuple
    swizzle: int
    barrier: Buffer
    slot: Expr


@_node
class AllReduce(Stmt):
    """A reduction across the threads of a block: every thread contributes ``values``
    (one per output of ``combiner``); afterwards each thread's ``results`` (one-element
    ``local`` buffers) hold the combination over the threads that differ only in the
    indices ``thread_tags`` (``threadIdx.x``, ...), which range over ``extents``.
    Every thread of the block must reach it, like a barrier."""
    combiner: CommReducer
    values: tuple[Expr, ...]
    results: tuple[Buffer, ...]
    thread_tags: tuple[str, ...]
    extents: tuple[int, ...]


@_node
class PrimFunc:
    """A lowered function: ``params`` are Buffers (tensors) then Vars (scalars bound from
    shapes); ``outputs`` are the buffers it writes."""
    name: str
    params: tuple[Any, ...]
    body: Stmt
    outputs: tuple[Buffer, ...] = ()
    attrs: dict = field(default_factory=dict)

    def with_body(self, body: Stmt) -> "PrimFunc":
        return PrimFunc(self.name, self.params, body, self.outputs, self.attrs)

    def __str__(self):
        from .printer import print_func
        return print_func(self)


def seq(*stmts) -> Stmt:
    """A statement sequence without nested Seqs or empty parts."""
    flat = []
    for s in stmts:
        if s is None:
            continue
        if isinstance(s, Seq):
            flat.extend(s.stmts)
        else:
            flat.append(s)
    if len(flat) == 1:
        return flat[0]
    return Seq(tuple(flat))


from . import op as _op  # noqa: E402  (operators need the node classes above)
