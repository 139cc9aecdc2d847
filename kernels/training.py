"""Training operators as tensor expressions: the losses (``cross_entropy``, ``mse_loss``)
and the layers whose behaviour differs in training (``batch_norm``,
``batch_norm_update_stats``, ``dropout``). Compute definitions only, with the
conventions of ``dense.py`` (whose helpers and reductions they build on); ``td.ops``
serves them like the dense operators.
"""
from __future__ import annotations

import math

import tensordsl as td

from .dense import (_check, _dim, _pin_many, _same_extent, _shape, _stability_shift,
                    reduce_mean, reduce_sum)


_REDUCTIONS = ("mean", "sum", "none")


def _reduction(per_element, reduction: str, what: str, name: str):
    """A loss's elements reduced as PyTorch's ``reduction``: "mean" and "sum" give a
    one-element tensor (shape (1,)), "none" the elements."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{what}: reduction must be one of {', '.join(_REDUCTIONS)}, "
                         f"got {reduction!r}")
    if reduction == "none":
        return per_element
    return (reduce_mean if reduction == "mean" else reduce_sum)(per_element, name=name)


def cross_entropy(logits, labels, reduction: str = "mean", name: str = "cross_entropy"):
    """PyTorch's ``cross_entropy`` for class indices: ``log_softmax`` and the negative
    log-likelihood in one definition, per row ``max + log(sum(exp(x - max))) -
    x[label]``. ``logits`` (N, C), ``labels`` (N,) integers in [0, C).

    The label's logit is picked by a masked sum over the classes (``j == label``), not
    read at a data-dependent index, so the derived gradient is a gather (softmax minus
    the one-hot row), never a scatter. The max is the stop-gradient stability shift of
    ``softmax``.

    >>> loss = td.ops.cross_entropy(logits, labels)    # (N, C), (N,) -> (1,)
    """
    _check(logits.ndim == 2, f"cross_entropy: expected logits of shape (N, C), got "
                             f"{_shape(logits)}")
    if not labels.dtype.startswith(("int", "uint")):
        raise TypeError(f"cross_entropy: labels must be integer class indices, got "
                        f"{labels.dtype}")
    _check(labels.ndim == 1 and _same_extent(_dim(labels.shape[0]), _dim(logits.shape[0])),
           f"cross_entropy: labels must have shape ({_dim(logits.shape[0])},) for logits "
           f"of shape {_shape(logits)}, got {_shape(labels)}")
    m = _stability_shift(logits, 1, name)
    r = td.reduce_axis((0, logits.shape[1]), "r")
    lse = td.compute((logits.shape[0],), lambda i: td.sum(td.exp(logits[i, r] - m[i, 0]),
                                                          axis=r), name=f"{name}.sum")
    c = td.reduce_axis((0, logits.shape[1]), "c")
    zero = td.const(0, logits.dtype)
    picked = td.compute((logits.shape[0],), lambda i: td.sum(
        td.if_then_else(labels[i].astype("int32") == c, logits[i, c], zero), axis=c),
        name=f"{name}.picked")
    nll = td.compute((logits.shape[0],), lambda i: m[i, 0] + td.log(lse[i]) - picked[i],
                     name=f"{name}.nll" if reduction != "none" else name)
    return _reduction(nll, reduction, "cross_entropy", name)


def mse_loss(x, y, reduction: str = "mean", name: str = "mse_loss"):
    """PyTorch's ``mse_loss``: ``(x - y)**2``, reduced by ``reduction`` (PyTorch's
    ``input`` and ``target``; ``target`` is a keyword of every ``td.ops`` call).

    >>> loss = td.ops.mse_loss(x, y)
    """
    _check(_shape(x) == _shape(y), f"mse_loss: x and y must have one shape, got "
                                   f"{_shape(x)} and {_shape(y)}")
    sq = td.compute(x.shape, lambda *i: (x[i] - y[i]) * (x[i] - y[i]),
                    name=f"{name}.sq" if reduction != "none" else name)
    return _reduction(sq, reduction, "mse_loss", name)


def _channel_axes(x, gamma, what):
    """The axes a batch norm reduces over (all but the channel axis 1) and its size."""
    _check(x.ndim >= 2, f"{what}: expected x of shape (N, C, ...), got {_shape(x)}")
    C = _dim(x.shape[1])
    _check(gamma.ndim == 1 and _same_extent(_dim(gamma.shape[0]), C),
           f"{what}: per-channel tensors must have shape ({C},), got {_shape(gamma)}")
    return tuple(d for d in range(x.ndim) if d != 1)


def batch_norm(x, gamma, beta, moving_mean=None, moving_var=None, eps: float = 1e-5,
               name: str = "batch_norm"):
    """Batch normalization over the channel axis 1 of ``x`` (N, C, ...), scaled by
    ``gamma`` and shifted by ``beta`` (per channel; PyTorch's ``weight`` and ``bias``).
    Without ``moving_mean``/``moving_var`` (training): the batch's statistics over every
    axis but 1, with the biased variance, as PyTorch normalizes; with them (inference):
    those.

    >>> y = td.ops.batch_norm(x, gamma, beta)                      # training
    >>> y = td.ops.batch_norm(x, gamma, beta, mean, var)           # inference
    """
    axes = _channel_axes(x, gamma, "batch_norm")
    _check(_shape(beta) == _shape(gamma), f"batch_norm: beta must have shape "
                                          f"{_shape(gamma)}, got {_shape(beta)}")
    if (moving_mean is None) != (moving_var is None):
        raise ValueError("batch_norm: give both moving_mean and moving_var, or neither")
    if moving_mean is None:
        mean = reduce_mean(x, axis=axes, keepdims=True, name=f"{name}.mean")
        sq = td.compute(x.shape, lambda *i: (x[i] - mean[_pin_many(i, axes)]) *
                        (x[i] - mean[_pin_many(i, axes)]), name=f"{name}.sq")
        var = reduce_mean(sq, axis=axes, keepdims=True, name=f"{name}.var")
        center = lambda i: mean[_pin_many(i, axes)]  # noqa: E731
        spread = lambda i: var[_pin_many(i, axes)]   # noqa: E731
    else:
        for t, what in ((moving_mean, "moving_mean"), (moving_var, "moving_var")):
            _check(_shape(t) == _shape(gamma), f"batch_norm: {what} must have shape "
                                               f"{_shape(gamma)}, got {_shape(t)}")
        center = lambda i: moving_mean[i[1]]  # noqa: E731
        spread = lambda i: moving_var[i[1]]   # noqa: E731
    # one reciprocal square root per channel, then multiplies
    rstd = td.compute(gamma.shape, lambda c: 1.0 / td.sqrt(
        spread((0, c) + (0,) * (x.ndim - 2)) + eps), name=f"{name}.rstd")
    return td.compute(x.shape, lambda *i: (x[i] - center(i)) * rstd[i[1]] * gamma[i[1]]
                      + beta[i[1]], name=name)


def batch_norm_update_stats(x, moving_mean, moving_var, momentum: float = 0.1,
                            name: str = "batch_norm_update_stats"):
    """The moving statistics after one training batch, as PyTorch updates them:
    ``(1 - momentum) * moving + momentum * batch`` with the batch's mean and its
    *unbiased* variance over every axis of ``x`` but 1. The result (2, C) holds the new
    mean (row 0) and variance (row 1).

    >>> new = td.ops.batch_norm_update_stats(x, mean, var, momentum=0.1)
    """
    axes = _channel_axes(x, moving_mean, "batch_norm_update_stats")
    _check(_shape(moving_var) == _shape(moving_mean),
           f"batch_norm_update_stats: moving_var must have shape {_shape(moving_mean)}, "
           f"got {_shape(moving_var)}")
    count = math.prod(_dim(x.shape[d]) for d in axes)
    _check(count > 1, f"batch_norm_update_stats: more than one value per channel is "
                      f"needed for a variance, got input of shape {_shape(x)}")
    mean = reduce_mean(x, axis=axes, name=f"{name}.mean")
    sq = td.compute(x.shape, lambda *i: (x[i] - mean[i[1]]) * (x[i] - mean[i[1]]),
                    name=f"{name}.sq")
    total = reduce_sum(sq, axis=axes, name=f"{name}.sum")
    keep = 1.0 - momentum
    return td.compute((2,) + tuple(moving_mean.shape), lambda k, c: td.if_then_else(
        k == 0, keep * moving_mean[c] + momentum * mean[c],
        keep * moving_var[c] + (momentum / (count - 1)) * total[c]), name=name)


def dropout(x, mask, p: float = 0.5, name: str = "dropout"):
    """``x * mask / (1 - p)``: ``mask`` (x's shape, bool or integer 0/1) says which
    elements are kept; PyTorch's dropout, the mask drawn by the caller.

    >>> y = td.ops.dropout(x, mask, p=0.5)
    """
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    _check(_shape(mask) == _shape(x), f"dropout: mask must have x's shape {_shape(x)}, "
                                      f"got {_shape(mask)}")
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return td.compute(x.shape, lambda *i: x[i] * (mask[i].astype(x.dtype) * scale),
                      name=name)
