"""Modules in PyTorch's shape: ``Module`` (parameters, train/eval, ``state_dict`` as
``.npz``), ``Parameter``, ``Sequential``, ``Linear``, ``ReLU``. Their forwards are
``nn.functional`` calls, so their backwards are generated kernels too."""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .tensor import Tensor


class Parameter(Tensor):
    """A tensor a module trains: ``requires_grad`` by default."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(np.array(data, copy=True), requires_grad=requires_grad)


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def __call__(self, *args):
        return self.forward(*args)

    def named_parameters(self, prefix: str = ""):
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m.named_parameters(f"{prefix}{name}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def train(self, mode: bool = True) -> "Module":
        object.__setattr__(self, "training", mode)
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> dict:
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state) -> None:
        """From a dict of arrays or a path to an ``.npz`` file (never pickle)."""
        if isinstance(state, (str, bytes)) or hasattr(state, "__fspath__"):
            with np.load(state, allow_pickle=False) as f:
                state = {k: f[k] for k in f.files}
        mine = dict(self.named_parameters())
        if set(state) != set(mine):
            raise KeyError(f"load_state_dict: expected parameters {sorted(mine)}, got "
                           f"{sorted(state)}")
        for name, p in mine.items():
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {p.shape}, the "
                                 f"file's has {value.shape}")
            p.data = np.ascontiguousarray(value, dtype=p.dtype)

    def save(self, path) -> None:
        """``state_dict()`` to an ``.npz`` file."""
        np.savez(path, **self.state_dict())


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        for k, m in enumerate(modules):
            setattr(self, str(k), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class Linear(Module):
    """``y = x @ weight.T + bias``; weight and bias drawn from U(-1/sqrt(in), 1/sqrt(in))
    as PyTorch's defaults (kaiming_uniform with a = sqrt(5))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype="float32", rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1 / math.sqrt(in_features)
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features))
                                .astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_features).astype(dtype)) \
            if bias else None

    def forward(self, x):
        return F.dense(x, self.weight, self.bias)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)
