"""Modules in PyTorch's shape: ``Module`` (parameters, buffers, train/eval,
``state_dict`` as ``.npz``), ``Parameter``, ``Sequential``, ``Linear``, ``ReLU``. Their
forwards are ``nn.functional`` calls, so their backwards are generated kernels too. The
other layers: ``layers.py`` (convolution, pooling, activations, flatten, dropout,
embedding) and ``normalization.py``."""
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
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = _buffer(value, name)
            value = self._buffers[name]
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, tensor) -> None:
        """State that is saved with the module but not trained (BatchNorm's running
        statistics): in ``state_dict`` after the parameters, as PyTorch's."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"register_buffer: name must be an identifier, got {name!r}")
        self._buffers[name] = _buffer(tensor, name)
        object.__setattr__(self, name, self._buffers[name])

    def named_buffers(self, prefix: str = ""):
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, m in self._modules.items():
            yield from m.named_buffers(f"{prefix}{name}.")

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def children(self):
        return list(self._modules.values())

    def named_modules(self, prefix: str = ""):
        """This module (named ``prefix``) and every module inside it, depth first."""
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def extra_repr(self) -> str:
        """What ``repr`` shows inside the parentheses (PyTorch's hook)."""
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        children = [f"({name}): " + repr(m).replace("\n", "\n  ")
                    for name, m in self._modules.items()]
        return head + "\n  " + "\n  ".join(children) + "\n)"

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def __call__(self, *args):
        return self.forward(*args)

    def named_parameters(self, prefix: str = ""):
        """Each parameter once, under the first name it is reached by (a module used
        twice shares its weights: an optimizer must update them once), as PyTorch's."""
        seen = set()
        for name, p in self._all_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_parameters(self, prefix: str):
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m._all_parameters(f"{prefix}{name}.")

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

    def _named_state(self, prefix: str = ""):
        """Parameters then buffers, module by module: PyTorch's ``state_dict`` order."""
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, m in self._modules.items():
            yield from m._named_state(f"{prefix}{name}.")

    def state_dict(self) -> dict:
        return {name: t.data.copy() for name, t in self._named_state()}

    def load_state_dict(self, state) -> None:
        """From a dict of arrays or a path to an ``.npz`` file (never pickle)."""
        if isinstance(state, (str, bytes)) or hasattr(state, "__fspath__"):
            with np.load(state, allow_pickle=False) as f:
                state = {k: f[k] for k in f.files}
        mine = dict(self._named_state())
        if set(state) != set(mine):
            raise KeyError(f"load_state_dict: expected parameters and buffers "
                           f"{sorted(mine)}, got {sorted(state)}")
        for name, t in mine.items():
            value = np.asarray(state[name])
            if value.shape != t.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {t.shape}, the "
                                 f"file's has {value.shape}")
            t.data = np.ascontiguousarray(value, dtype=t.dtype)

    def save(self, path) -> None:
        """``state_dict()`` to an ``.npz`` file."""
        np.savez(path, **self.state_dict())


def _buffer(value, name: str) -> Tensor:
    if isinstance(value, Parameter):
        raise TypeError(f"buffer {name!r}: a Parameter is trained; register it as one")
    return value if isinstance(value, Tensor) else Tensor(value)


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        for k, m in enumerate(modules):
            setattr(self, str(k), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)


class Linear(Module):
    """``y = x @ weight.T + bias``; weight and bias drawn from U(-1/sqrt(in), 1/sqrt(in))
    as PyTorch's defaults (kaiming_uniform with a = sqrt(5))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype="float32", rng=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1 / math.sqrt(in_features)
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features))
                                .astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_features).astype(dtype)) \
            if bias else None

    def forward(self, x):
        return F.dense(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)
