"""nn.Tensor's tape: backward through td.ops' generated backward kernels, against
numpy and central finite differences in float64."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl.nn as nn
import tensordsl.nn.functional as F


def _directional_fd(loss_of, arrays, directions, eps=1e-6):
    plus = loss_of([a + eps * d for a, d in zip(arrays, directions)])
    minus = loss_of([a - eps * d for a, d in zip(arrays, directions)])
    return (plus - minus) / (2 * eps)


def test_dense_relu_chain_matches_numpy():
    rng = np.random.default_rng(0)
    x = nn.Tensor(rng.standard_normal((8, 5)))
    w = nn.Tensor(rng.standard_normal((3, 5)), requires_grad=True)
    b = nn.Tensor(rng.standard_normal(3), requires_grad=True)
    h = F.relu(F.dense(x, w, b))
    loss = F.reduce_sum(F.multiply(h, h))
    loss.backward()
    z = x.data @ w.data.T + b.data
    dz = 2 * np.maximum(z, 0) * (z > 0)
    np.testing.assert_allclose(loss.item(), (np.maximum(z, 0) ** 2).sum(), rtol=1e-12)
    np.testing.assert_allclose(w.grad, dz.T @ x.data, rtol=1e-10)
    np.testing.assert_allclose(b.grad, dz.sum(0), rtol=1e-10)
    assert x.grad is None                    # it did not ask for one


def test_a_tensor_used_twice_accumulates_and_grads_add_up_across_calls():
    rng = np.random.default_rng(1)
    a = nn.Tensor(rng.standard_normal((4, 4)), requires_grad=True)
    loss = F.reduce_sum(F.matmul(a, a))      # d/da sum(a @ a) = 1 a^T + a^T 1
    loss.backward()
    ones = np.ones((4, 4))
    expected = ones @ a.data.T + a.data.T @ ones
    np.testing.assert_allclose(a.grad, expected, rtol=1e-12)
    F.reduce_sum(F.matmul(a, a)).backward()
    np.testing.assert_allclose(a.grad, 2 * expected, rtol=1e-12)


def test_conv_pool_log_softmax_against_finite_differences():
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))]
    target = rng.standard_normal((2, 4 * 4 * 4))

    def forward(x, w):
        y = F.max_pool2d(F.relu(F.conv2d_nchw(x, w, padding=1)), kernel_size=2)
        flat = F.take(y, np.zeros(1, "int64"), axis=0)   # (1, 4, 4, 4): exercises take
        logp = F.log_softmax(F.multiply(F.reduce_sum(flat, axis=0), 0.5), axis=-1)
        return F.reduce_sum(F.multiply(logp, target[:1, :16].reshape(4, 4)))

    x, w = (nn.Tensor(a, requires_grad=True) for a in arrays)
    forward(x, w).backward()
    directions = [rng.standard_normal(a.shape) for a in arrays]
    with nn.no_grad():
        fd = _directional_fd(lambda v: forward(*map(nn.Tensor, v)).item(), arrays,
                             directions)
    got = (x.grad * directions[0]).sum() + (w.grad * directions[1]).sum()
    np.testing.assert_allclose(got, fd, rtol=1e-6)


def test_no_grad_records_nothing():
    w = nn.Tensor(np.ones((2, 2)), requires_grad=True)
    with nn.no_grad():
        y = F.add(w, 1.0)
    assert not y.requires_grad and y.record is None
    assert F.add(w, 1.0).requires_grad


def test_bad_backward_calls_are_refused_clearly():
    w = nn.Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(ValueError, match="cotangent is needed.*shape \\(2, 2\\)"):
        F.relu(w).backward()
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        nn.Tensor(np.ones(1)).backward()
    with pytest.raises(TypeError, match="requires_grad needs a floating-point"):
        nn.Tensor(np.ones(2, "int32"), requires_grad=True)
