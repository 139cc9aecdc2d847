"""Capsule layers and the margin loss of tensordsl.nn: forwards against float64 numpy
references (the paper's equations written out), backwards against central finite
differences; the capsnet of ``tensordsl train`` trains, and a saved one predicts
exactly as the trained one."""
from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import tensordsl.nn as nn
import tensordsl.nn.functional as F
from tensordsl import cli

from .gradcheck import check_gradients, weighted_sum


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------- numpy references


def _squash(s, eps=1e-7):
    sq = (s * s).sum(-1, keepdims=True)
    return sq / (1 + sq) * s / np.sqrt(sq + eps)


def _primary_reference(x, w, b, caps_dim, stride, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(xp, w.shape[-2:], axis=(2, 3))[:, :, ::stride, ::stride]
    y = np.einsum("ncyxij,fcij->nfyx", windows, w) + b[None, :, None, None]
    n, f, oh, ow = y.shape
    # PyTorch's y.view(n, types, caps_dim, oh * ow).transpose(2, 3).reshape(n, -1, caps_dim)
    caps = y.reshape(n, f // caps_dim, caps_dim, oh * ow).transpose(0, 1, 3, 2)
    return _squash(caps.reshape(n, -1, caps_dim))


def _routing_reference(u, weight, iterations):
    u_hat = np.einsum("ijdk,bik->bijd", weight, u)
    logits = np.zeros(u_hat.shape[:3])
    for t in range(iterations):
        c = np.exp(logits - logits.max(2, keepdims=True))
        c /= c.sum(2, keepdims=True)
        v = _squash(np.einsum("bij,bijd->bjd", c, u_hat))
        if t < iterations - 1:
            logits = logits + np.einsum("bijd,bjd->bij", u_hat, v)
    return v


def _margin_reference(v, labels, m_plus=0.9, m_minus=0.1, lam=0.5):
    length = np.sqrt((v * v).sum(-1) + 1e-12)
    t = np.eye(v.shape[1])[labels]
    per = (t * np.maximum(0, m_plus - length) ** 2
           + lam * (1 - t) * np.maximum(0, length - m_minus) ** 2).sum(1)
    return per.mean()


# ---------------------------------------------------------------- layers


@pytest.mark.parametrize("stride, padding", [(2, 1), (1, 0)])
def test_primary_capsules_forward_and_gradients(rng, stride, padding):
    layer = nn.PrimaryCapsules(3, types=2, caps_dim=4, kernel_size=3, stride=stride,
                               padding=padding, dtype="float64", rng=rng)
    x = nn.Tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True)
    v = layer(x)
    expected = _primary_reference(x.data, layer.weight.data, layer.bias.data, 4, stride,
                                  padding)
    assert v.shape == expected.shape
    np.testing.assert_allclose(v.data, expected, rtol=1e-10, atol=1e-12)
    head = rng.standard_normal(v.shape)
    check_gradients(lambda: weighted_sum(layer(x), head), [x, layer.weight, layer.bias], rng)


def test_capsule_layer_forward_and_gradients(rng):
    layer = nn.CapsuleLayer(in_caps=6, in_dim=3, out_caps=4, out_dim=5, iterations=3,
                            dtype="float64", rng=rng)
    assert layer.weight.shape == (6, 4, 5, 3)
    u = nn.Tensor(0.5 * rng.standard_normal((2, 6, 3)), requires_grad=True)
    v = layer(u)
    np.testing.assert_allclose(v.data, _routing_reference(u.data, layer.weight.data, 3),
                               rtol=1e-10, atol=1e-12)
    head = rng.standard_normal(v.shape)
    check_gradients(lambda: weighted_sum(layer(u), head), [u, layer.weight], rng)


@pytest.mark.parametrize("iterations", [1, 2])
def test_capsule_layer_iterations(rng, iterations):
    layer = nn.CapsuleLayer(5, 2, 3, 4, iterations=iterations, dtype="float64", rng=rng)
    u = rng.standard_normal((3, 5, 2))
    np.testing.assert_allclose(layer(nn.Tensor(u)).data,
                               _routing_reference(u, layer.weight.data, iterations),
                               rtol=1e-10, atol=1e-12)


def test_margin_loss_forward_and_gradient(rng):
    # lengths on both sides of the margins, so both hinges are active somewhere
    v = nn.Tensor(0.4 * rng.standard_normal((6, 5, 4)), requires_grad=True)
    labels = np.array([0, 4, 2, 2, 1, 3])
    loss = F.margin_loss(v, labels)
    assert loss.shape == (1,)           # as F.cross_entropy's
    np.testing.assert_allclose(loss.item(), _margin_reference(v.data, labels), rtol=1e-12)
    check_gradients(lambda: F.margin_loss(v, labels), [v], rng)
    got = F.margin_loss(v, labels, m_plus=0.8, m_minus=0.2, lam=0.25).item()
    np.testing.assert_allclose(got, _margin_reference(v.data, labels, 0.8, 0.2, 0.25),
                               rtol=1e-12)


def test_a_small_capsnet_differentiates_end_to_end(rng):
    model = nn.Sequential(
        nn.PrimaryCapsules(2, types=2, caps_dim=3, kernel_size=3, stride=2, dtype="float64",
                           rng=rng),
        nn.CapsuleLayer(2 * 2 * 2, 3, 3, 4, dtype="float64", rng=rng))
    x = nn.Tensor(rng.standard_normal((3, 2, 5, 5)))
    labels = np.array([2, 0, 1])
    check_gradients(lambda: F.margin_loss(model(x), labels), model.parameters(), rng)


def test_bad_arguments_are_named(rng):
    with pytest.raises(ValueError, match=r"CapsuleLayer: input must have shape .*\(\?, 6, 3\)"):
        nn.CapsuleLayer(6, 3, 4, 5, rng=rng)(nn.Tensor(np.zeros((2, 6, 4), "float32")))
    with pytest.raises(ValueError, match="CapsuleLayer: iterations must be a positive int"):
        nn.CapsuleLayer(6, 3, 4, 5, iterations=0)
    with pytest.raises(ValueError, match="PrimaryCapsules: caps_dim must be a positive int"):
        nn.PrimaryCapsules(3, types=2, caps_dim=0, kernel_size=3)
    v = nn.Tensor(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"margin_loss: labels hold class 3, outside \[0, 3\)"):
        F.margin_loss(v, np.array([0, 3]))
    with pytest.raises(TypeError, match="margin_loss: labels must hold integer class"):
        F.margin_loss(v, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"margin_loss: labels must have shape \(batch,\)"):
        F.margin_loss(v, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="margin_loss: v must have shape"):
        F.margin_loss(nn.Tensor(np.zeros((2, 3), "float32")), np.array([0, 1]))


def test_traced_margin_loss_checks_its_labels_every_run(rng):
    model = nn.CapsuleLayer(4, 2, 3, 2, rng=rng)
    step = nn.TrainStep(model, F.margin_loss, nn.SGD(model.parameters(), lr=0.1))
    u = rng.standard_normal((2, 4, 2)).astype("float32")
    expected = _margin_reference(_routing_reference(u, model.weight.data, 3), [0, 2])
    assert step(u, np.array([0, 2])) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"margin_loss: labels hold class 3, outside \[0, 3\)"):
        step(u, np.array([3, 0]))


# ---------------------------------------------------------------- training


def test_compiled_and_eager_steps_agree_and_a_saved_capsnet_predicts_the_same(tmp_path):
    from tensordsl.nn.train import build_model, load_digits, model_input, train
    data = load_digits()
    runs = [train("capsnet", epochs=1, batch_size=32, train_size=96, seed=2, data=data,
                  step=step) for step in ("eager", "compiled")]
    np.testing.assert_allclose(runs[0].train_loss, runs[1].train_loss, rtol=1e-4)
    np.testing.assert_allclose(runs[0].test_loss, runs[1].test_loss, rtol=1e-4)

    trained = runs[1].model
    trained.save(tmp_path / "capsnet.npz")
    fresh = build_model("capsnet", np.random.default_rng(7))
    fresh.load_state_dict(tmp_path / "capsnet.npz")
    x = nn.Tensor(model_input("capsnet", data.x_test[:50]))
    with nn.no_grad():
        np.testing.assert_array_equal(fresh(x).data, trained(x).data)


def test_train_capsnet_prints_epochs_and_a_saved_model_predicts_the_same(tmp_path, capsys):
    from tensordsl.nn.train import build_model, load_digits, model_input, predictions
    saved = tmp_path / "capsnet.npz"
    assert cli.main(["train", "capsnet", "--epochs", "2", "--train-size", "384",
                     "--seed", "1", "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert ("train capsnet on digits: 384 training / 360 test images, batch 64, 2 epochs, "
            "Adam lr 0.01 (cosine), compiled step") in out
    epochs = re.findall(r"epoch +(\d)/2  train loss (\S+)  test loss (\S+)  test accuracy "
                        r"(\S+)", out)
    assert [e[0] for e in epochs] == ["1", "2"]
    (accuracy, right), = re.findall(r"test accuracy: (\S+) \((\d+)/360\)", out)
    assert float(accuracy) > 0.5            # chance is 0.1

    data = load_digits()
    model = build_model("capsnet", np.random.default_rng(99))
    model.load_state_dict(saved)
    x = nn.Tensor(model_input("capsnet", data.x_test))
    with nn.no_grad():
        first, again = model(x), model(x)
    np.testing.assert_array_equal(first.data, again.data)
    assert int((predictions(first) == data.y_test).sum()) == int(right)
