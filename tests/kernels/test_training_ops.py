"""The operators for training (kernels/dense.py: tanh, sigmoid, reshape, bias_add;
kernels/training.py: the losses, batch norm, dropout) through td.ops, against numpy in
float32, on odd shapes; their bad arguments; a kernel named like a C math function
(``tanh``) that works; their gradients are gathers."""
import math

import numpy as np
import pytest

import tensordsl as td


def rand(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_and_sigmoid(rng, dtype):
    # a vector tanh of float64 is a libm call by LLVM: the kernel named "tanh" must not
    # be the function it calls
    x = (rng.standard_normal((37, 19)) * 4).astype(dtype)
    rtol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(td.ops.tanh(x), np.tanh(x), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(td.ops.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("shape, new", [((3, 5, 7), (15, 7)), ((3, 5, 7), (-1,)),
                                        ((4, 6), (2, 3, 2, 2)), ((2, 1, 9), (9, 1, 2))])
def test_reshape(rng, shape, new):
    x = rand(rng, *shape)
    np.testing.assert_array_equal(td.ops.reshape(x, new), x.reshape(new))


def test_reshape_refuses_sizes_that_do_not_fit(rng):
    x = rand(rng, 3, 4)
    with pytest.raises(ValueError, match="cannot reshape 12 elements into \\(5, -1\\)"):
        td.ops.reshape(x, (5, -1))
    with pytest.raises(ValueError, match="one -1"):
        td.ops.reshape(x, (-1, -1))


def test_bias_add(rng):
    x, b = rand(rng, 2, 5, 3, 7), rand(rng, 5)
    np.testing.assert_allclose(td.ops.bias_add(x, b), x + b[:, None, None], rtol=1e-6)
    b7 = rand(rng, 7)
    np.testing.assert_allclose(td.ops.bias_add(x, b7, axis=-1), x + b7, rtol=1e-6)
    with pytest.raises(ValueError, match="bias must have shape \\(5,\\)"):
        td.ops.bias_add(x, rand(rng, 4))


@pytest.mark.parametrize("n, c", [(1, 1), (13, 10), (64, 37)])
def test_cross_entropy(rng, n, c):
    logits = rand(rng, n, c) * 5
    labels = rng.integers(0, c, n)
    z = logits.astype("float64")
    log_p = z - z.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    nll = -log_p[np.arange(n), labels]
    np.testing.assert_allclose(td.ops.cross_entropy(logits, labels), [nll.mean()], rtol=1e-5)
    np.testing.assert_allclose(td.ops.cross_entropy(logits, labels.astype("int32"),
                                                    reduction="none"), nll, rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        td.ops.cross_entropy(logits, labels.astype("float32"))


def test_mse_loss(rng):
    a, b = rand(rng, 9, 11), rand(rng, 9, 11)
    np.testing.assert_allclose(td.ops.mse_loss(a, b), [((a - b) ** 2).mean()], rtol=1e-5)
    np.testing.assert_allclose(td.ops.mse_loss(a, b, reduction="sum"),
                               [((a - b) ** 2).sum()], rtol=1e-5)
    with pytest.raises(ValueError, match="x and y must have one shape"):
        td.ops.mse_loss(a, b[:, :3])


@pytest.mark.parametrize("shape", [(5, 3, 7, 6), (8, 4)])
def test_batch_norm_training_and_inference(rng, shape):
    x = rand(rng, *shape) * 3 + 1
    c = shape[1]
    gamma, beta, mean, var = rand(rng, c), rand(rng, c), rand(rng, c), rand(rng, c) ** 2 + .5
    axes = (0,) + tuple(range(2, len(shape)))
    per_channel = (slice(None),) + (None,) * (len(shape) - 2)
    z = x.astype("float64")
    mu, sigma2 = z.mean(axes, keepdims=True), z.var(axes, keepdims=True)
    expected = (z - mu) / np.sqrt(sigma2 + 1e-5) * gamma[per_channel] + beta[per_channel]
    np.testing.assert_allclose(td.ops.batch_norm(x, gamma, beta), expected, rtol=1e-4,
                               atol=1e-4)
    expected = (z - mean[per_channel]) / np.sqrt(var[per_channel] + 1e-3) \
        * gamma[per_channel] + beta[per_channel]
    np.testing.assert_allclose(td.ops.batch_norm(x, gamma, beta, mean, var, eps=1e-3),
                               expected, rtol=1e-5, atol=1e-5)
    new = td.ops.batch_norm_update_stats(x, mean, var, momentum=0.3)
    np.testing.assert_allclose(new[0], 0.7 * mean + 0.3 * z.mean(axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new[1], 0.7 * var + 0.3 * z.var(axes, ddof=1), rtol=1e-5)
    with pytest.raises(ValueError, match="give both moving_mean and moving_var"):
        td.ops.batch_norm(x, gamma, beta, mean)


def test_dropout(rng):
    x = rand(rng, 17, 9)
    mask = rng.random((17, 9)) > 0.4
    np.testing.assert_allclose(td.ops.dropout(x, mask, p=0.4), x * mask / 0.6, rtol=1e-6)
    np.testing.assert_array_equal(td.ops.dropout(x, mask.astype("uint8"), p=1.0),
                                  np.zeros_like(x))
    with pytest.raises(ValueError, match="p must be a probability"):
        td.ops.dropout(x, mask, p=1.5)


def test_training_gradients_are_gathers():
    """The derived gradients of the training operators sum over no more terms per
    element than the forward reads (no accumulation over the whole domain): one for a
    reshape, a row for cross_entropy, a channel's N*H*W for batch_norm and a bias."""
    import kernels.dense as K
    import kernels.training as T
    from tensordsl.te.tensor import ACCUMULATE_TAG
    from tests.autodiff.fd import compute_ops
    x = td.placeholder((4, 3, 2, 5), "float32", "x")
    logits = td.placeholder((8, 10), "float32", "logits")
    labels = td.placeholder((8,), "int64", "labels")
    gamma = td.placeholder((3,), "float32", "gamma")
    beta = td.placeholder((3,), "float32", "beta")
    cases = [(K.reshape(x, (4, -1)), x, 1), (K.reshape(x, (6, 20)), x, 1),
             (T.cross_entropy(logits, labels), logits, 10),
             (T.batch_norm(x, gamma, beta), x, 40), (T.batch_norm(x, gamma, beta), gamma, 40),
             (K.bias_add(x, gamma), gamma, 40), (K.bias_add(x, gamma), x, 1)]
    for y, wrt, most in cases:
        (g,), _ = td.vjp(y, [wrt])
        for op in compute_ops(g):
            terms = math.prod(r.dom.extent.value for r in getattr(op, "reduce_axis", ()))
            assert terms <= most and op.tag != ACCUMULATE_TAG, (y.op.name, op.name, terms)
