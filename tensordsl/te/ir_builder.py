"""``td.ir_builder``: loop nests written by hand, for the kernels a compute cannot state
(TVM's ``tvm.tir.ir_builder``) — data-dependent loops (``while_loop``: merging two
sorted lists, the co-iteration of sparse operands), running counters, early outs.
The statement it builds is the body of a ``td.extern``; the pipeline lowers, checks
and compiles it like any stage.

    def fill(ins, outs):
        ib = td.ir_builder.create()
        a, out = ib.buffer_ptr(ins[0]), ib.buffer_ptr(outs[0])
        total = ib.allocate("float32", (1,), name="total")
        total[0] = 0.0
        with ib.for_range(0, n, name="i") as i:
            total[0] += a[i]
            out[i] = total[0]
        return ib.get()

    B = td.extern((n,), [A], fill, name="prefix_sum")

Tensors are indexed by their own indices (``a[i, j]``) or, like TVM's buffers, by one
row-major index (``a[k]``). ``allocate`` makes a buffer of the enclosing scope: in a
``parallel`` loop, one per iteration.
"""
from __future__ import annotations

import contextlib

from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.op import cast, const, convert
from .tensor import Tensor

_KINDS = {"serial": "serial", "parallel": "parallel", "vectorize": "vectorized",
          "vectorized": "vectorized", "unroll": "unrolled", "unrolled": "unrolled"}


def _value(x, dtype: str, what: str) -> n.Expr:
    """``x`` as an expression of ``dtype``: numbers adopt it, expressions must have it
    (a silent conversion would hide a mistake in the kernel)."""
    if isinstance(x, (bool, int, float)):
        return const(x, dtype)
    x = convert(x)
    if x.dtype != dtype:
        if dt.is_int(x.dtype) and dt.is_int(dtype):
            return cast(dtype, x)        # index arithmetic: int32 <-> int64 is exact
        raise TypeError(f"{what}: expected a {dtype} value, got {x.dtype} ({x!r})")
    return x


def _index(i) -> n.Expr:
    i = convert(i)
    if not dt.is_int(i.dtype):
        raise TypeError(f"ir_builder: an index must be an integer, got {i.dtype} ({i!r})")
    return i if i.dtype == "int64" else cast("int64", i)


def _row_major(shape, flat: n.Expr) -> tuple:
    """The indices of element ``flat`` of an array of ``shape``."""
    indices = []
    for extent in reversed(shape[1:]):
        indices.append(n.FloorMod(flat, extent))
        flat = n.FloorDiv(flat, extent)
    return (flat, *reversed(indices))


def _flat(shape, indices) -> n.Expr:
    flat = indices[0]
    for extent, i in zip(shape[1:], indices[1:]):
        flat = flat * extent + i
    return flat


class BufferVar:
    """A tensor or an allocated buffer, read and written element by element."""

    def __init__(self, builder: "IRBuilder", target, shape, dtype: str, name: str):
        self._builder, self._target = builder, target
        self.shape, self.dtype, self.name = tuple(shape), dtype, name

    def _indices(self, key) -> tuple:
        key = key if isinstance(key, tuple) else (key,)
        key = tuple(_index(k) for k in key)
        if len(key) == len(self.shape):
            return key
        if len(key) == 1:
            return _row_major(self.shape, key[0])
        raise IndexError(f"{self.name}: expected {len(self.shape)} indices or one "
                         f"row-major index, got {len(key)}")

    def __getitem__(self, key) -> n.Expr:
        indices = self._indices(key)
        if isinstance(self._target, Tensor):
            return n.TensorRead(self._target, indices)
        return n.Load(self.dtype, self._target, _flat(self.shape, indices))

    def __setitem__(self, key, value):
        indices = self._indices(key)
        value = _value(value, self.dtype, f"a store into {self.name}")
        if isinstance(self._target, Tensor):
            self._builder.emit(n.ProducerStore(self._target, value, indices))
        else:
            self._builder.emit(n.Store(self._target, value, _flat(self.shape, indices)))

    def __repr__(self):
        return f"BufferVar({self.name}, {self.dtype}{list(self.shape)})"


class IRBuilder:
    """Collects statements; the ``with`` scopes nest them (see the module docstring)."""

    def __init__(self):
        self._scopes: list[list] = [[]]
        self._last_if: n.IfThenElse | None = None

    # ------------------------------------------------------------ statements
    def emit(self, stmt):
        """Append a statement (an expression is evaluated for its effect)."""
        if isinstance(stmt, n.Expr):
            stmt = n.Evaluate(stmt)
        if not isinstance(stmt, n.Stmt) and not callable(stmt):
            raise TypeError(f"ir_builder.emit: expected a statement, got {stmt!r}")
        self._scopes[-1].append(stmt)

    def _pop(self) -> n.Stmt:
        body: n.Stmt = n.Seq(())
        for item in reversed(self._scopes.pop()):
            # an allocation wraps the statements after it in its scope
            body = item(body) if callable(item) else n.seq(item, body)
        return body

    @contextlib.contextmanager
    def _scope(self, wrap):
        self._scopes.append([])
        yield_value = wrap.yield_value if hasattr(wrap, "yield_value") else None
        try:
            yield yield_value
        finally:
            body = self._pop()
        stmt = wrap(body)
        self.emit(stmt)
        self._last_if = stmt if isinstance(stmt, n.IfThenElse) else None

    def for_range(self, begin, end, name: str = "i", dtype: str = "int64",
                  kind: str = "serial"):
        """``with ib.for_range(0, n, name="i") as i:`` a loop over ``[begin, end)``;
        ``kind``: serial, parallel, vectorize or unroll. Loop indices are int64."""
        if kind not in _KINDS:
            raise ValueError(f"for_range: kind must be one of {', '.join(_KINDS)}, got "
                             f"{kind!r}")
        var = n.Var(name, "int64")
        lo, hi = _index(begin), _index(end)

        def wrap(body):
            return n.For(var, lo, hi - lo, _KINDS[kind], body)
        wrap.yield_value = var
        return self._scope(wrap)

    def while_loop(self, condition):
        """``with ib.while_loop(cond):`` repeat the body while ``cond`` holds."""
        cond = _value(condition, "bool", "while_loop")
        return self._scope(lambda body: n.While(cond, body))

    def if_scope(self, condition):
        """``with ib.if_scope(cond):`` the body only where ``cond`` holds."""
        cond = _value(condition, "bool", "if_scope")
        return self._scope(lambda body: n.IfThenElse(cond, body))

    @contextlib.contextmanager
    def else_scope(self):
        """``with ib.else_scope():`` right after an ``if_scope``: where it did not hold."""
        scope = self._scopes[-1]
        last = self._last_if
        if last is None or not scope or scope[-1] is not last or last.else_case is not None:
            raise RuntimeError("ir_builder.else_scope must follow an if_scope directly")
        self._scopes.append([])
        try:
            yield
        finally:
            body = self._pop()
        scope[-1] = n.IfThenElse(last.condition, last.then_case, body)
        self._last_if = None

    @contextlib.contextmanager
    def new_scope(self):
        """A nested scope: buffers allocated inside it end with it."""
        self._scopes.append([])
        try:
            yield
        finally:
            self.emit(self._pop())

    # ------------------------------------------------------------ values
    def let(self, name: str, value) -> n.Var:
        """A named value for the statements that follow in this scope."""
        value = convert(value)
        var = n.Var(name, value.dtype)
        self.emit(lambda body: n.LetStmt(var, value, body))
        return var

    def allocate(self, dtype: str, shape, name: str = "buf", scope: str = "local"):
        """A buffer of constant ``shape`` for the statements after it in this scope."""
        dtype = dt.normalize(dtype)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(f"allocate {name!r}: shape must be positive integers, got "
                             f"{shape}")
        if scope not in ("local", "shared", "global", ""):
            raise ValueError(f"allocate {name!r}: scope must be local, shared or global, "
                             f"got {scope!r}")
        extents = tuple(const(d) for d in shape)
        buffer = n.Buffer(name, dtype, extents, scope or "local")
        size = 1
        for d in shape:
            size *= d
        self.emit(lambda body: n.Allocate(buffer, const(size), body))
        return BufferVar(self, buffer, extents, dtype, name)

    def pointer(self, dtype: str, name: str = "ptr", scope: str = "local"):
        """One element: ``p = ib.pointer("int64"); p[0] = 0``."""
        return self.allocate(dtype, (1,), name, scope)

    def buffer_ptr(self, tensor):
        """Element access to an input or output tensor of the ``td.extern``."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"buffer_ptr: expected a tensor of the extern, got "
                            f"{type(tensor).__name__}")
        return BufferVar(self, tensor, tensor.shape, tensor.dtype, tensor.name)

    def likely(self, condition):
        return convert(condition)

    def get(self) -> n.Stmt:
        """The statement built so far (every scope must be closed)."""
        if len(self._scopes) != 1:
            raise RuntimeError("ir_builder.get: a with-scope is still open")
        stmt = self._pop()
        self._scopes.append([])
        return stmt


def create() -> IRBuilder:
    return IRBuilder()
