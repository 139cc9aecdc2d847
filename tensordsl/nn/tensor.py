"""``Tensor`` and its tape: each result of a differentiable operator records the
operator, its operands and options; ``backward()`` walks the records in reverse and
calls the operators' generated backward kernels."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

_state = threading.local()


def grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Within it, results record nothing (inference, optimizer updates)."""
    before = grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = before


@dataclass(eq=False)
class _Record:
    """How a tensor was made: ``td.ops.<op>(*operands, **optional, **options)``;
    ``operands`` holds Tensors and plain values in the operator's positional order, the
    first ``required`` of them required (the rest, e.g. ``dense``'s bias, optional).

    An operation that is not a ``td.ops`` operator (``nn.Function``: a user's compute)
    brings its own ``vjp``: the cotangent -> one gradient (or None) per operand; ``op``
    then only names it."""
    op: str
    operands: list
    names: list
    required: int
    options: dict = field(default_factory=dict)
    vjp: Callable | None = None

    def backward(self, cotangent) -> tuple:
        """``td.ops.<op>_backward`` (or ``vjp``): the required operands, the cotangent,
        then the optional operands by name and the options."""
        import tensordsl as td
        if self.vjp is not None:
            return tuple(self.vjp(cotangent))
        arrays = [x.data if isinstance(x, Tensor) else x for x in self.operands]
        optional = dict(zip(self.names[self.required:], arrays[self.required:]))
        # only the gradients the tape needs: none for data, labels or running statistics
        wanted = tuple(n for n, x in zip(self.names, self.operands)
                       if isinstance(x, Tensor) and x.requires_grad)
        return getattr(td.ops, self.op + "_backward")(*arrays[:self.required], cotangent,
                                                      **optional, **self.options, wrt=wanted)


class Tensor:
    """A numpy array that may take part in differentiation (PyTorch's shape)."""

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        array = np.asarray(data, dtype=dtype)
        if requires_grad and array.dtype.kind != "f":
            raise TypeError(f"Tensor: requires_grad needs a floating-point array, got "
                            f"{array.dtype}")
        # contiguous for the kernels; a 0-d array stays 0-d (ascontiguousarray's is 1-d)
        self.data = array if array.flags.c_contiguous else np.ascontiguousarray(array)
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self.record: _Record | None = None
        self.expr = None     # while tracing (nn.TrainStep): the te tensor it stands for

    @classmethod
    def traced(cls, expr, requires_grad: bool = False) -> "Tensor":
        """A symbolic tensor: the value ``expr`` (a te tensor) will have when the traced
        program runs (``trace.py``); it has no data."""
        t = cls.__new__(cls)
        t.data, t.expr, t.grad, t.record = None, expr, None, None
        t.requires_grad = requires_grad
        return t

    @property
    def shape(self) -> tuple:
        if self.data is None:
            return tuple(int(d.value) for d in self.expr.shape)
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.expr.dtype) if self.data is None else self.data.dtype

    ndim = property(lambda self: len(self.shape))

    def numpy(self) -> np.ndarray:
        if self.data is None:
            raise RuntimeError("numpy: a traced tensor has no value until its program runs "
                               "(a module's forward under nn.TrainStep may not read data)")
        return self.data

    def item(self):
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def __repr__(self):
        if self.data is None:
            return f"Tensor(traced {self.expr.name}, shape={self.shape}, dtype={self.dtype})"
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    # PyTorch's operators and methods, each an ``nn.functional`` call (so a kernel)
    def __add__(self, other):
        return _F().add(self, other)

    def __radd__(self, other):
        return _F().add(other, self)

    def __sub__(self, other):
        return _F().subtract(self, other)

    def __rsub__(self, other):
        return _F().subtract(other, self)

    def __mul__(self, other):
        return _F().multiply(self, other)

    def __rmul__(self, other):
        return _F().multiply(other, self)

    def __truediv__(self, other):
        return _F().divide(self, other)

    def __rtruediv__(self, other):
        return _F().divide(other, self)

    def __neg__(self):
        return _F().multiply(self, -1.0)

    def __matmul__(self, other):
        return _F().matmul(self, other)

    def reshape(self, *shape) -> "Tensor":
        """``x.reshape(2, -1)`` or ``x.reshape((2, -1))``."""
        return _F().reshape(self, shape[0] if len(shape) == 1 and not
                            isinstance(shape[0], int) else shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        return _F().flatten(self, start_dim, end_dim)

    def sum(self, axis=None, keepdims: bool = False) -> "Tensor":
        return _F().reduce_sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False) -> "Tensor":
        return _F().reduce_mean(self, axis=axis, keepdims=keepdims)

    def relu(self) -> "Tensor":
        return _F().relu(self)

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a
        gradient; ``grad`` is the cotangent (default: ones, for a one-element tensor)."""
        import tensordsl as td
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require a gradient (no "
                               "operand of the computation that made it did)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward: a cotangent is needed for a result of shape "
                                 f"{self.shape} (only a one-element result defaults to 1)")
            grad = np.ones(self.shape, self.dtype)
        grad = np.asarray(grad, self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward: grad must have shape {self.shape}, got {grad.shape}")
        cotangent = {id(self): grad}
        for t in reversed(_topological(self)):
            g = cotangent.pop(id(t), None)
            if g is None:
                continue
            if t.record is None:
                t.grad = g.copy() if t.grad is None else td.ops.add(t.grad, g)
                continue
            grads = t.record.backward(g)
            for x, gx in zip(t.record.operands, grads):
                if isinstance(x, Tensor) and x.requires_grad and gx is not None:
                    have = cotangent.get(id(x))
                    cotangent[id(x)] = gx if have is None else td.ops.add(have, gx)


def _F():
    """``nn.functional`` (imported late: it imports this module)."""
    from . import functional
    return functional


def _topological(root: Tensor) -> list:
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t.record is not None:
            for x in t.record.operands:
                if isinstance(x, Tensor) and x.requires_grad and id(x) not in seen:
                    stack.append((x, False))
    return order
