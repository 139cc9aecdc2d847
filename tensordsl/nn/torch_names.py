"""``torch.nn.functional``'s names and signatures for the operators whose ``td.ops``
name or signature differs (``linear`` is ``dense``, ``conv2d`` adds a bias, losses take
``input`` and ``target``, ...). Each is re-exported by ``nn.functional`` and ends in
``apply``: a generated kernel per call; numpy only draws dropout's mask and checks
arguments. They read shapes and dtypes, never data, so ``nn.TrainStep`` can trace them
(values are checked only where there are values)."""
from __future__ import annotations

import math

import numpy as np

from .functional import apply
from .tensor import Tensor, no_grad
from .trace import active

__all__ = ["batch_norm", "conv2d", "cross_entropy", "dropout", "embedding", "flatten",
           "layer_norm", "linear", "mse_loss", "reshape"]


def _shape(t) -> tuple:
    return tuple(t.shape) if isinstance(t, Tensor) else np.shape(t)


def _dtype(t) -> np.dtype:
    return t.dtype if isinstance(t, Tensor) else np.asarray(t).dtype


def _values(t):
    """The array of ``t``, None for a traced tensor (its values come when it runs)."""
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
    if _dtype(target).kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got "
                        f"{_dtype(target)}")
    classes, labels = _shape(input)[-1], _values(target)
    if labels is None:   # traced: the labels arrive with each run, checked then
        active().check(target, lambda values: _check_labels(values, classes))
    else:
        _check_labels(labels, classes)
    return apply("cross_entropy", input, target, reduction=reduction)


def _check_labels(labels: np.ndarray, classes: int):
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(f"cross_entropy: target holds class {bad}, outside [0, {classes})")


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
    shape = _shape(input)
    trace = active()
    if trace is not None:   # traced once, run every step: a new mask each run
        keep = trace.fresh_input(shape, "bool", lambda: rng.random(shape) >= p)
    else:
        keep = rng.random(shape) >= p
    return apply("dropout", input, keep, p=float(p))


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization over the channels (axis 1) of ``input`` (N, C, ...).
    ``training``: normalized with the batch's statistics (biased variance), and the
    running statistics, when given, updated in place as PyTorch does (``momentum``,
    unbiased variance; ``td.ops.batch_norm_update_stats``); otherwise normalized with
    the running statistics."""
    channels, dtype = _shape(input)[1], _dtype(input)
    weight = weight if weight is not None else np.ones(channels, dtype)
    bias = bias if bias is not None else np.zeros(channels, dtype)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when "
                             "not training")
        return apply("batch_norm", input, weight, bias, running_mean, running_var, eps=eps)
    if running_mean is not None and running_var is not None:
        trace = active()
        with no_grad():
            new = apply("batch_norm_update_stats", input if trace else _values(input),
                        running_mean, running_var, momentum=momentum)
        if trace is not None:   # written after every run of the traced step
            trace.write(running_mean, _row(new, 0))
            trace.write(running_var, _row(new, 1))
        else:   # in place, as PyTorch updates its buffers
            np.copyto(_values(running_mean), new.data[0])
            np.copyto(_values(running_var), new.data[1])
    return apply("batch_norm", input, weight, bias, eps=eps)


def _row(stacked: Tensor, k: int):
    """Row ``k`` of a traced 2-d tensor, as an expression."""
    import tensordsl as td
    t = stacked.expr
    return td.compute(t.shape[1:], lambda c: t[k, c], name=f"{t.name}.row{k}")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dimensions (``td.ops.layer_norm``,
    whose ``gamma``/``beta`` are ``weight``/``bias``)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) \
        else tuple(normalized_shape)
    full, dtype = _shape(input), _dtype(input)
    if full[len(full) - len(shape):] != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} must end input's shape "
                         f"{full}")
    weight = weight if weight is not None else np.ones(shape, dtype)
    bias = bias if bias is not None else np.zeros(shape, dtype)
    axis = tuple(range(len(full) - len(shape), len(full)))
    return apply("layer_norm", input, weight, bias, axis=axis, eps=eps)


def embedding(input, weight) -> Tensor:
    """Rows of ``weight`` picked by the integer indices ``input`` (``td.ops.take``)."""
    return apply("take", weight, input, axis=0)


def reshape(input, shape) -> Tensor:
    """``input`` with ``shape`` (one size may be -1), a copy (``td.ops.reshape``)."""
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    return apply("reshape", input, shape=shape)


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Dimensions ``start_dim`` to ``end_dim`` merged into one (``torch.flatten``)."""
    shape = _shape(input)
    ndim = max(len(shape), 1)
    start, end = start_dim % ndim, end_dim % ndim
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                         f"for {len(shape)} dimensions")
    merged = math.prod(shape[start:end + 1])
    return reshape(input, shape[:start] + (merged,) + shape[end + 1:])
