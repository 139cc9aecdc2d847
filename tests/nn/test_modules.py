"""Modules and SGD: Linear against numpy, PyTorch's SGD rule (momentum, weight decay)
against numpy, a small regression that trains, and state_dict through .npz."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl.nn as nn
import tensordsl.nn.functional as F


def _mlp(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(6, 16, dtype="float64", rng=rng), nn.ReLU(),
                         nn.Linear(16, 1, dtype="float64", rng=rng))


def test_linear_forward_backward_and_default_initialization():
    layer = nn.Linear(50, 7, dtype="float64", rng=np.random.default_rng(0))
    assert np.abs(layer.weight.data).max() <= 1 / np.sqrt(50)
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    x = nn.Tensor(np.random.default_rng(1).standard_normal((4, 50)))
    y = layer(x)
    np.testing.assert_allclose(y.data, x.data @ layer.weight.data.T + layer.bias.data)
    F.reduce_sum(y).backward()
    np.testing.assert_allclose(layer.weight.grad, np.ones((4, 7)).T @ x.data)
    np.testing.assert_allclose(layer.bias.grad, np.full(7, 4.0))


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.01)])
def test_sgd_follows_pytorchs_rule(momentum, weight_decay):
    rng = np.random.default_rng(2)
    p = nn.Parameter(rng.standard_normal((3, 5)))
    opt = nn.SGD([p], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    expected, buf = p.data.copy(), None
    for step in range(3):
        g = rng.standard_normal((3, 5))
        p.grad = g.copy()
        opt.step()
        d = g + weight_decay * expected
        buf = d if buf is None or not momentum else momentum * buf + d
        expected = expected - 0.1 * buf
        np.testing.assert_allclose(p.data, expected, rtol=1e-12)


def test_a_small_regression_trains():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 6))
    y = np.sin(x.sum(1, keepdims=True))
    model = _mlp()
    opt = nn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        diff = F.subtract(model(nn.Tensor(x)), nn.Tensor(y))
        loss = F.reduce_mean(F.multiply(diff, diff))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_state_dict_round_trip_through_npz(tmp_path):
    model, other = _mlp(4), _mlp(5)
    x = nn.Tensor(np.random.default_rng(6).standard_normal((3, 6)))
    model.save(tmp_path / "m.npz")
    other.load_state_dict(tmp_path / "m.npz")
    np.testing.assert_array_equal(other(x).data, model(x).data)
    with pytest.raises(KeyError, match="expected parameters"):
        other.load_state_dict({"0.weight": np.zeros((16, 6))})


def test_a_cnn_with_batch_norm_saves_and_loads_to_identical_predictions(tmp_path):
    def cnn(seed):
        rng = np.random.default_rng(seed)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(4 * 3 * 3, 5, rng=rng))

    model, other = cnn(7), cnn(8)
    x = np.random.default_rng(9).standard_normal((4, 1, 6, 6)).astype("float32")
    model(nn.Tensor(x))                     # training: moves the running statistics
    model.eval()
    other.eval()
    model.save(tmp_path / "cnn.npz")
    other.load_state_dict(tmp_path / "cnn.npz")
    assert "1.running_var" in other.state_dict()
    np.testing.assert_array_equal(other(nn.Tensor(x)).data, model(nn.Tensor(x)).data)
    assert not np.array_equal(cnn(8).eval()(nn.Tensor(x)).data, model(nn.Tensor(x)).data)
    with pytest.raises(TypeError, match="a Parameter is trained"):
        model.register_buffer("w", nn.Parameter(np.zeros(2)))


def test_repr_and_named_modules_read_like_pytorchs():
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                          nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=1, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Flatten(start_dim=1, end_dim=-1)\n"
        "    (1): Linear(in_features=4, out_features=2, bias=True)\n"
        "  )\n"
        ")")
    assert [name for name, _ in model.named_modules()] == ["", "0", "1", "2", "2.0", "2.1"]
    assert len(model) == 3 and isinstance(model[2][1], nn.Linear)


def test_shared_weights_are_one_parameter_updated_once():
    layer = nn.Linear(3, 3, dtype="float64", rng=np.random.default_rng(0))
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    opt = nn.SGD(model.parameters(), lr=0.1)
    before = layer.weight.data.copy()
    layer.weight.grad, layer.bias.grad = np.ones((3, 3)), np.ones(3)
    opt.step()
    np.testing.assert_allclose(layer.weight.data, before - 0.1)
