"""Optimizers whose updates are generated kernels: ``SGD`` (momentum, weight decay),
with PyTorch's update rule. One kernel per (size, dtype) class of parameters, compiled
once: ``p <- p - lr * b``, ``b <- momentum * b + (g + weight_decay * p)``."""
from __future__ import annotations

import functools

import numpy as np

from .tensor import no_grad


def sgd_update(p, g, b, h):
    """SGD's update as tensor expressions of any shape: ``(p', b')`` (``b'`` None without
    momentum, ``b`` None) for the hyperparameters ``h = [lr, momentum, weight_decay]``."""
    import tensordsl as td
    d = td.compute(p.shape, lambda *i: g[i] + h[2] * p[i], name="d")
    if b is None:
        return td.compute(p.shape, lambda *i: p[i] - h[0] * d[i], name="p_new"), None
    new_b = td.compute(p.shape, lambda *i: h[1] * b[i] + d[i], name="b_new")
    return td.compute(p.shape, lambda *i: p[i] - h[0] * new_b[i], name="p_new"), new_b


@functools.cache
def _sgd_kernel(size: int, dtype: str, momentum: bool):
    """(p, g, b, lr, momentum, weight_decay, first) -> (p', b') over flat arrays."""
    import tensordsl as td
    p = td.placeholder((size,), dtype, "p")
    g = td.placeholder((size,), dtype, "g")
    b = td.placeholder((size,), dtype, "b")
    h = td.placeholder((3,), dtype, "hyper")   # lr, momentum, weight_decay
    new_p, new_b = sgd_update(p, g, b if momentum else None, h)
    return td.build_program([p, g, b, h], [new_p, new_b] if momentum else [new_p])


class SGD:
    """``torch.optim.SGD`` (no dampening, no Nesterov): momentum's buffer starts as the
    first step's direction, as PyTorch's."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"SGD: lr must be positive, got {lr}")
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: dict = {}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    # ------------------------------------------------ the traced step (nn.TrainStep)
    def hyperparameters(self, dtype) -> np.ndarray:
        """This step's ``h`` of ``sgd_update`` (momentum 0 on the first step: the buffer
        starts as the direction itself)."""
        first = not self.buffers
        return np.array([self.lr, 0.0 if first else self.momentum, self.weight_decay], dtype)

    def state_names(self) -> tuple:
        return ("momentum_buffer",) if self.momentum else ()

    def state(self, p, name: str) -> np.ndarray:
        return self.buffers.get(id(p), np.zeros(p.shape, p.dtype)).reshape(p.shape)

    def set_state(self, p, name: str, value: np.ndarray):
        self.buffers[id(p)] = value

    def traced_update(self, p, g, states: dict, h) -> tuple:
        """(p', {state name: new value}) as expressions."""
        new_p, new_b = sgd_update(p, g, states.get("momentum_buffer"), h)
        return new_p, ({"momentum_buffer": new_b} if self.momentum else {})

    @no_grad()
    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            flat = p.data.reshape(-1)
            kernel = _sgd_kernel(flat.size, p.dtype.name, self.momentum != 0)
            first = id(p) not in self.buffers
            # the first step's buffer is the direction itself: momentum 0 against zeros
            b = self.buffers.get(id(p), np.zeros_like(flat)).reshape(-1)
            hyper = np.array([self.lr, 0.0 if first else self.momentum, self.weight_decay],
                             p.dtype)
            out = kernel(flat, np.ascontiguousarray(p.grad, p.dtype).reshape(-1), b, hyper)
            p.data = out[0].reshape(p.shape)
            if self.momentum:
                self.buffers[id(p)] = out[1]
