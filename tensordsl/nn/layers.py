"""Layers in PyTorch's shape and names: ``Conv2d``, ``MaxPool2d``, ``GELU``, ``Tanh``,
``Sigmoid``, ``Flatten``, ``Dropout``, ``Embedding``. Parameters are initialized as
PyTorch's defaults; ``dtype=`` and ``rng=`` (a ``numpy.random.Generator``) as ``Linear``
takes them. Forwards call ``nn.functional`` only, so every op is a generated kernel."""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .modules import Module, Parameter


def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return v, v
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return int(v[0]), int(v[1])
    raise TypeError(f"{what}: expected an int or a pair of ints, got {v!r}")


class Conv2d(Module):
    """NCHW convolution with a bias per output channel. Weight (out, in/groups, kh, kw)
    and bias drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * kh * kw:
    PyTorch's kaiming_uniform with a = sqrt(5) and its bias rule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 dtype="float32", rng=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels "
                             f"({in_channels}) and out_channels ({out_channels})")
        kh, kw = _pair(kernel_size, "Conv2d kernel_size")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding = _pair(stride, "Conv2d stride"), padding
        self.dilation, self.groups = _pair(dilation, "Conv2d dilation"), groups
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1 / math.sqrt(in_channels // groups * kh * kw)
        shape = (out_channels, in_channels // groups, kh, kw)
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_channels).astype(dtype)) \
            if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}"


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Flatten(Module):
    """Dimensions ``start_dim`` (default 1, the batch kept) to ``end_dim`` merged."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zeroes elements with probability ``p`` in training mode (the rest scaled by
    1/(1-p)); the identity in eval mode. ``rng`` draws the masks."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of ``embedding_dim``, drawn from N(0, 1) as
    PyTorch's; ``forward(indices)`` picks rows."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype="float32", rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(rng.standard_normal((num_embeddings, embedding_dim))
                                .astype(dtype))

    def forward(self, indices):
        return F.embedding(indices, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
