"""``torch.nn.functional``'s names and signatures for the operators whose ``td.ops``
name or signature differs (``linear`` is ``dense``, ``conv2d`` adds a bias, losses take
``input`` and ``target``, ...). Each is re-exported by ``nn.functional`` and ends in
``apply``: a generated kernel per call; numpy only draws dropout's mask and checks
arguments."""
from __future__ import annotations

import math

import numpy as np

from .functional import apply
from .tensor import Tensor, no_grad


def _array(t):
    return t.data if isinstance(t, Tensor) else np.asarray(t)


def linear(input, weight, bias=None) -> Tensor:
    """``input @ weight.T + bias`` (``td.ops.dense``)."""
    return apply("dense", input, weight, bias)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """NCHW convolution (``td.ops.conv2d_nchw``), then the bias per output channel
    (``td.ops.bias_add``)."""
    y = apply("conv2d_nchw", input, weight, stride=stride, padding=padding,
              dilation=dilation, groups=groups)
    return y if bias is None else apply("bias_add", y, bias, axis=1)


def cross_entropy(input, target, reduction: str = "mean") -> Tensor:
    """log_softmax and the negative log-likelihood of class indices ``target`` (N,) for
    ``input`` (N, C), one kernel (``td.ops.cross_entropy``); ``reduction`` "mean",
    "sum" or "none"."""
    labels = _array(target)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got "
                        f"{labels.dtype}")
    classes = _array(input).shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(f"cross_entropy: target holds class {bad}, outside [0, {classes})")
    return apply("cross_entropy", input, labels, reduction=reduction)


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """``(input - target)**2`` reduced by ``reduction`` (``td.ops.mse_loss``)."""
    return apply("mse_loss", input, target, reduction=reduction)


def dropout(input, p: float = 0.5, training: bool = True, rng=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) when
    ``training``; ``input`` itself otherwise. The mask is drawn with numpy (``rng``: a
    ``numpy.random.Generator``, default a fresh one); the multiply is a kernel."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    rng = rng if rng is not None else np.random.default_rng()
    keep = rng.random(_array(input).shape) >= p
    return apply("dropout", input, keep, p=float(p))


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization over the channels (axis 1) of ``input`` (N, C, ...).
    ``training``: normalized with the batch's statistics (biased variance), and the
    running statistics, when given, updated in place as PyTorch does (``momentum``,
    unbiased variance; ``td.ops.batch_norm_update_stats``); otherwise normalized with
    the running statistics."""
    channels = _array(input).shape[1]
    dtype = _array(input).dtype
    weight = weight if weight is not None else np.ones(channels, dtype)
    bias = bias if bias is not None else np.zeros(channels, dtype)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when "
                             "not training")
        return apply("batch_norm", input, weight, bias, running_mean, running_var, eps=eps)
    if running_mean is not None and running_var is not None:
        with no_grad():
            new = apply("batch_norm_update_stats", _array(input), running_mean, running_var,
                        momentum=momentum)
        # in place, as PyTorch updates its buffers
        np.copyto(_array(running_mean), new.data[0])
        np.copyto(_array(running_var), new.data[1])
    return apply("batch_norm", input, weight, bias, eps=eps)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dimensions (``td.ops.layer_norm``,
    whose ``gamma``/``beta`` are ``weight``/``bias``)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) \
        else tuple(normalized_shape)
    x = _array(input)
    if x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} must end input's shape "
                         f"{x.shape}")
    weight = weight if weight is not None else np.ones(shape, x.dtype)
    bias = bias if bias is not None else np.zeros(shape, x.dtype)
    axis = tuple(range(x.ndim - len(shape), x.ndim))
    return apply("layer_norm", input, weight, bias, axis=axis, eps=eps)


def embedding(input, weight) -> Tensor:
    """Rows of ``weight`` picked by the integer indices ``input`` (``td.ops.take``)."""
    return apply("take", weight, _array(input), axis=0)


def reshape(input, shape) -> Tensor:
    """``input`` with ``shape`` (one size may be -1), a copy (``td.ops.reshape``)."""
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    return apply("reshape", input, shape=shape)


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Dimensions ``start_dim`` to ``end_dim`` merged into one (``torch.flatten``)."""
    shape = _array(input).shape
    ndim = max(len(shape), 1)
    start, end = start_dim % ndim, end_dim % ndim
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                         f"for {len(shape)} dimensions")
    merged = math.prod(shape[start:end + 1])
    return reshape(input, shape[:start] + (merged,) + shape[end + 1:])
