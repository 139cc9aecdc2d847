"""Capsule layers (Sabour, Frosst and Hinton, 2017): ``PrimaryCapsules`` (a convolution
regrouped into capsules and squashed), ``CapsuleLayer`` (predictions and dynamic routing)
and the margin loss ``margin_loss`` (re-exported by ``nn.functional``).

Each is one ``td.ops`` operator per call — ``primary_capsules``, ``capsule_routing``,
``margin_loss`` of ``kernels/capsule.py`` — so its backward is ``td.ops.<op>_backward``,
derived by ``td.vjp`` from the same definition (through every routing iteration, the
coefficients included, as PyTorch's autograd differentiates the usual implementations).

    caps = nn.PrimaryCapsules(32, types=8, caps_dim=8, kernel_size=3, stride=2, padding=1)
    digits = nn.CapsuleLayer(in_caps=8 * 4 * 4, in_dim=8, out_caps=10, out_dim=16)
    v = digits(caps(features))                       # (N, 10, 16)
    loss = F.margin_loss(v, labels)                  # labels: class indices (N,)
    predicted = capsule_lengths(v).argmax(axis=1)
"""
from __future__ import annotations

import math

import numpy as np

from .functional import apply
from .layers import _pair
from .modules import Module, Parameter
from .tensor import Tensor
from .trace import active

__all__ = ["CapsuleLayer", "PrimaryCapsules", "capsule_lengths", "margin_loss"]


class PrimaryCapsules(Module):
    """A convolution of ``types * caps_dim`` channels with a bias, each output position
    of each type a capsule of ``caps_dim`` values, squashed (``td.ops.primary_capsules``):
    (N, in_channels, H, W) -> (N, types * OH * OW, caps_dim), capsules ordered by type,
    then row, then column (PyTorch's ``y.view(N, types, caps_dim, OH * OW)
    .transpose(2, 3)``). Weight and bias drawn as ``nn.Conv2d``'s."""

    def __init__(self, in_channels: int, types: int, caps_dim: int, kernel_size,
                 stride=1, padding: int = 0, dtype="float32", rng=None):
        super().__init__()
        for what, value in (("in_channels", in_channels), ("types", types),
                            ("caps_dim", caps_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PrimaryCapsules: {what} must be a positive int, "
                                 f"got {value!r}")
        kh, kw = _pair(kernel_size, "PrimaryCapsules kernel_size")
        self.in_channels, self.types, self.caps_dim = in_channels, types, caps_dim
        self.kernel_size = (kh, kw)
        self.stride, self.padding = _pair(stride, "PrimaryCapsules stride"), padding
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1 / math.sqrt(in_channels * kh * kw)
        channels = types * caps_dim
        self.weight = Parameter(rng.uniform(-bound, bound, (channels, in_channels, kh, kw))
                                .astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, channels).astype(dtype))

    def forward(self, x):
        return apply("primary_capsules", x, self.weight, self.bias, caps_dim=self.caps_dim,
                     stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, types={self.types}, caps_dim={self.caps_dim}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class CapsuleLayer(Module):
    """``in_caps`` capsules of ``in_dim`` -> ``out_caps`` capsules of ``out_dim`` by
    ``iterations`` of routing by agreement (``td.ops.capsule_routing``, the predictions
    ``weight[i, j] @ u[b, i]`` included): (N, in_caps, in_dim) -> (N, out_caps, out_dim).
    ``weight`` (in_caps, out_caps, out_dim, in_dim) is drawn from N(0, std^2) with
    ``std = 1 / sqrt(in_dim)`` unless ``std`` is given: each prediction then has about
    the length of its input capsule."""

    def __init__(self, in_caps: int, in_dim: int, out_caps: int, out_dim: int,
                 iterations: int = 3, std: float | None = None, dtype="float32", rng=None):
        super().__init__()
        for what, value in (("in_caps", in_caps), ("in_dim", in_dim), ("out_caps", out_caps),
                            ("out_dim", out_dim), ("iterations", iterations)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CapsuleLayer: {what} must be a positive int, "
                                 f"got {value!r}")
        self.in_caps, self.in_dim = in_caps, in_dim
        self.out_caps, self.out_dim, self.iterations = out_caps, out_dim, iterations
        rng = rng if rng is not None else np.random.default_rng()
        std = 1 / math.sqrt(in_dim) if std is None else std
        self.weight = Parameter((std * rng.standard_normal((in_caps, out_caps, out_dim,
                                                             in_dim))).astype(dtype))

    def forward(self, u):
        shape = tuple(u.shape) if isinstance(u, Tensor) else np.shape(u)
        if len(shape) != 3 or shape[1:] != (self.in_caps, self.in_dim):
            raise ValueError(f"CapsuleLayer: input must have shape (batch, in_caps, in_dim) "
                             f"= (?, {self.in_caps}, {self.in_dim}), got {shape}")
        return apply("capsule_routing", u, self.weight, iterations=self.iterations)

    def extra_repr(self) -> str:
        return (f"in_caps={self.in_caps}, in_dim={self.in_dim}, out_caps={self.out_caps}, "
                f"out_dim={self.out_dim}, iterations={self.iterations}")


def margin_loss(v, labels, m_plus: float = 0.9, m_minus: float = 0.1,
                lam: float = 0.5) -> Tensor:
    """The margin loss of Sabour et al. (eq. 4) of capsules ``v`` (N, classes, dim) for
    class indices ``labels`` (N,), averaged over the batch: per sample, ``sum_k T_k
    max(0, m_plus - |v_k|)^2 + lam (1 - T_k) max(0, |v_k| - m_minus)^2`` with ``T`` the
    one-hot of the label. The one-hot is a row of the identity picked by ``td.ops.take``
    (a kernel, so ``nn.TrainStep`` can trace it), the loss ``td.ops.margin_loss``, the
    mean ``td.ops.reduce_mean``."""
    shape = tuple(v.shape) if isinstance(v, Tensor) else np.shape(v)
    if len(shape) != 3:
        raise ValueError(f"margin_loss: v must have shape (batch, classes, dim), got {shape}")
    classes = shape[1]
    labels_dtype = labels.dtype if isinstance(labels, Tensor) else np.asarray(labels).dtype
    if labels_dtype.kind not in "iu":
        raise TypeError(f"margin_loss: labels must hold integer class indices, got "
                        f"{labels_dtype}")
    values = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if values is None:   # traced: the labels arrive with each run, checked then
        active().check(labels, lambda got: _check_labels(got, shape[0], classes))
    else:
        _check_labels(values, shape[0], classes)
    dtype = v.dtype if isinstance(v, Tensor) else np.asarray(v).dtype
    onehot = apply("take", np.eye(classes, dtype=dtype), labels, axis=0)
    per_sample = apply("margin_loss", v, onehot, m_plus=m_plus, m_minus=m_minus, lam=lam)
    return apply("reduce_mean", per_sample)


def _check_labels(labels: np.ndarray, batch: int, classes: int):
    if labels.shape != (batch,):
        raise ValueError(f"margin_loss: labels must have shape (batch,) = ({batch},), got "
                         f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(f"margin_loss: labels hold class {bad}, outside [0, {classes})")


def capsule_lengths(v) -> np.ndarray:
    """|v_k| per capsule as a numpy array (N, classes): a CapsNet's class scores, the
    longest capsule its prediction (not differentiated: for accuracy only)."""
    data = v.data if isinstance(v, Tensor) else np.asarray(v)
    return np.sqrt((data * data).sum(axis=-1))
