"""Each layer's forward and backward against float64 numpy references and central
finite differences; PyTorch's default initializations (their bounds and statistics)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import tensordsl.nn as nn
import tensordsl.nn.functional as F

from .gradcheck import check_gradients, weighted_sum


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _windows(x, k, stride, pad, value=0.0):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=value)
    return sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def _conv_reference(x, w, b, stride, pad):
    windows = _windows(x, w.shape[-1], stride, pad)
    return np.einsum("ncyxij,fcij->nfyx", windows, w) + b[None, :, None, None], windows


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_conv2d_forward_backward(rng, stride, padding):
    conv = nn.Conv2d(3, 4, 3, stride=stride, padding=padding, dtype="float64", rng=rng)
    x = nn.Tensor(rng.standard_normal((2, 3, 7, 7)), requires_grad=True)
    y = conv(x)
    expected, windows = _conv_reference(x.data, conv.weight.data, conv.bias.data, stride,
                                        padding)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    head = rng.standard_normal(y.shape)
    weighted_sum(y, head).backward()
    np.testing.assert_allclose(conv.weight.grad,
                               np.einsum("ncyxij,nfyx->fcij", windows, head), rtol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, head.sum((0, 2, 3)), rtol=1e-12)
    check_gradients(lambda: weighted_sum(conv(x), head), [x, conv.weight, conv.bias], rng)


def test_conv2d_initialization_is_pytorchs_default():
    conv = nn.Conv2d(4, 64, (3, 5), groups=2, rng=np.random.default_rng(1))
    bound = 1 / math.sqrt(2 * 3 * 5)           # fan_in = in/groups * kh * kw
    assert conv.weight.shape == (64, 2, 3, 5) and conv.weight.dtype == np.float32
    for p in (conv.weight, conv.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.9 * bound
    assert nn.Conv2d(1, 2, 3, bias=False).bias is None
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]


def test_max_pool2d_and_flatten(rng):
    x = nn.Tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten())
    y = model(x)
    expected = _windows(x.data, 2, 2, 0).max((-1, -2)).reshape(2, -1)
    np.testing.assert_array_equal(y.data, expected)
    head = rng.standard_normal(y.shape)
    weighted_sum(y, head).backward()
    # the gradient goes to each window's maximum
    windows = _windows(x.data, 2, 2, 0)
    is_max = windows == windows.max((-1, -2), keepdims=True)
    g = np.zeros_like(x.data)
    g4 = head.reshape(2, 3, 3, 3)
    for i in range(2):
        for j in range(2):
            g[:, :, i::2, j::2] = is_max[..., i, j] * g4
    np.testing.assert_array_equal(x.grad, g)
    assert nn.Flatten(0, -1)(x).shape == (2 * 3 * 6 * 6,)
    assert nn.Flatten(1, 2)(x).shape == (2, 18, 6)


@pytest.mark.parametrize("module, value, slope", [
    (nn.Tanh(), np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x)),
     lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    (nn.GELU(), lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
     lambda x: 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
     + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
])
def test_activations(rng, module, value, slope):
    x = nn.Tensor(rng.standard_normal((5, 7)) * 2, requires_grad=True)
    y = module(x)
    np.testing.assert_allclose(y.data, value(x.data), rtol=1e-12, atol=1e-15)
    head = rng.standard_normal(y.shape)
    weighted_sum(y, head).backward()
    np.testing.assert_allclose(x.grad, head * slope(x.data), rtol=1e-10, atol=1e-14)


def test_dropout_keeps_scales_and_is_the_identity_in_eval(rng):
    x = nn.Tensor(rng.standard_normal((40, 50)) + 3.0, requires_grad=True)
    drop = nn.Dropout(0.25, rng=np.random.default_rng(2))
    y = drop(x)
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.data[kept], x.data[kept] / 0.75, rtol=1e-12)
    F.reduce_sum(y).backward()
    np.testing.assert_allclose(x.grad, kept / 0.75, rtol=1e-12)
    assert drop.eval()(x) is x
    assert F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).data.any()
    with pytest.raises(ValueError, match="p must be a probability"):
        nn.Dropout(1.5)
    # the same generator state draws the same mask
    a = F.dropout(x, 0.5, rng=np.random.default_rng(3))
    b = F.dropout(x, 0.5, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.data, b.data)


def test_embedding(rng):
    emb = nn.Embedding(10, 4, dtype="float64", rng=rng)
    idx = np.array([[1, 3, 1], [9, 0, 3]])
    y = emb(idx)
    np.testing.assert_array_equal(y.data, emb.weight.data[idx])
    head = rng.standard_normal(y.shape)
    weighted_sum(y, head).backward()
    expected = np.zeros((10, 4))
    np.add.at(expected, idx, head)
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-12)
    big = nn.Embedding(1000, 64, rng=np.random.default_rng(4)).weight.data
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01   # N(0, 1), as PyTorch


def test_layer_norm(rng):
    norm = nn.LayerNorm((3, 4), dtype="float64")
    assert (norm.weight.data == 1).all() and (norm.bias.data == 0).all()
    norm.weight.data = rng.standard_normal((3, 4))
    norm.bias.data = rng.standard_normal((3, 4))
    x = nn.Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    y = norm(x)
    mu = x.data.mean((1, 2), keepdims=True)
    var = x.data.var((1, 2), keepdims=True)
    expected = (x.data - mu) / np.sqrt(var + 1e-5) * norm.weight.data + norm.bias.data
    np.testing.assert_allclose(y.data, expected, rtol=1e-10)
    head = rng.standard_normal(y.shape)
    check_gradients(lambda: weighted_sum(norm(x), head), [x, norm.weight, norm.bias], rng)


def _batch_norm_reference(x, gamma, beta, eps=1e-5):
    mu = x.mean((0, 2, 3), keepdims=True)
    var = x.var((0, 2, 3), keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return xhat * gamma[:, None, None] + beta[:, None, None], xhat, 1 / np.sqrt(var + eps)


def test_batch_norm2d_training_forward_backward_and_running_stats(rng):
    bn = nn.BatchNorm2d(3, dtype="float64")
    bn.weight.data = rng.standard_normal(3)
    bn.bias.data = rng.standard_normal(3)
    x = nn.Tensor(rng.standard_normal((4, 3, 5, 5)) * 2 + 1, requires_grad=True)
    y = bn(x)
    expected, xhat, rstd = _batch_norm_reference(x.data, bn.weight.data, bn.bias.data)
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-12)
    # PyTorch's update: momentum 0.1, the unbiased variance
    np.testing.assert_allclose(bn.running_mean.data, 0.1 * x.data.mean((0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data,
                               0.9 + 0.1 * x.data.var((0, 2, 3), ddof=1), rtol=1e-12)
    assert bn.num_batches_tracked.data == 1
    head = rng.standard_normal(y.shape)
    weighted_sum(y, head).backward()
    m = x.data.size / 3
    g = bn.weight.data[:, None, None]
    dx = g * rstd / m * (m * head - head.sum((0, 2, 3), keepdims=True)
                         - xhat * (head * xhat).sum((0, 2, 3), keepdims=True))
    np.testing.assert_allclose(x.grad, dx, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad, (head * xhat).sum((0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(bn.bias.grad, head.sum((0, 2, 3)), rtol=1e-12)
    check_gradients(lambda: weighted_sum(bn(x), head), [x, bn.weight, bn.bias], rng)


def test_batch_norm2d_eval_uses_running_stats_and_state_dict_holds_them(rng):
    bn = nn.BatchNorm2d(2, dtype="float64")
    for _ in range(3):
        bn(nn.Tensor(rng.standard_normal((3, 2, 4, 4))))
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"]
    assert bn.state_dict()["num_batches_tracked"] == 3
    x = nn.Tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    bn.eval()
    mean, var = bn.running_mean.data.copy(), bn.running_var.data.copy()
    y = bn(x)
    np.testing.assert_allclose(y.data, (x.data - mean[:, None, None])
                               / np.sqrt(var[:, None, None] + 1e-5), rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean.data, mean)   # eval updates nothing
    head = rng.standard_normal(y.shape)
    check_gradients(lambda: weighted_sum(bn(x), head), [x, bn.weight, bn.bias], rng)


def test_cross_entropy_and_mse_loss(rng):
    logits = nn.Tensor(rng.standard_normal((6, 5)) * 3, requires_grad=True)
    labels = rng.integers(0, 5, 6)
    shifted = logits.data - logits.data.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    nll = -log_p[np.arange(6), labels]
    for reduction, expected in (("mean", nll.mean()), ("sum", nll.sum()), ("none", nll)):
        got = F.cross_entropy(logits, labels, reduction=reduction).data
        np.testing.assert_allclose(got.reshape(np.shape(expected)), expected, rtol=1e-12)
    F.cross_entropy(logits, labels).backward()
    onehot = np.eye(5)[labels]
    np.testing.assert_allclose(logits.grad, (np.exp(log_p) - onehot) / 6, rtol=1e-10,
                               atol=1e-15)
    check_gradients(lambda: F.cross_entropy(logits, labels, reduction="sum"), [logits], rng)

    a = nn.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = nn.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    np.testing.assert_allclose(F.mse_loss(a, b).item(), ((a.data - b.data) ** 2).mean(),
                               rtol=1e-12)
    F.mse_loss(a, b, reduction="sum").backward()
    np.testing.assert_allclose(a.grad, 2 * (a.data - b.data), rtol=1e-12)
    np.testing.assert_allclose(b.grad, -2 * (a.data - b.data), rtol=1e-12)


def test_loss_arguments_are_checked():
    logits = nn.Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="target holds class 3, outside \\[0, 3\\)"):
        F.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be one of mean, sum, none"):
        F.mse_loss(logits, logits, reduction="avg")


def test_tensor_operators_and_reshape_go_through_kernels(rng):
    a = nn.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = nn.Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    y = ((a @ b) * 2.0 - 1.0) / 4.0 + (-(b.reshape(2, 3)) @ b).sum(axis=0, keepdims=True)
    assert y.record is not None and y.shape == (2, 2)
    ad, bd = a.data, b.data
    expected = (ad @ bd * 2 - 1) / 4 + (-(bd.reshape(2, 3)) @ bd).sum(0, keepdims=True)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12)
    check_gradients(lambda: (((a @ b) * 2.0 - 1.0) / 4.0 + (-(b.reshape(2, 3)) @ b)
                             .sum(axis=0, keepdims=True)).sum(), [a, b], rng)
    assert (nn.Tensor(np.ones(2, "float32")) + 1.0).dtype == np.float32   # weak scalar
