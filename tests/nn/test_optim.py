"""Optimizers against PyTorch's rules written in numpy (float64), one update kernel per
class of parameters, state that survives replaced parameters and state_dict."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl.nn as nn
import tensordsl.nn.optim as optim


def _params(rng, shapes=((3, 5), (7,), (2, 2, 3))):
    return [nn.Parameter(rng.standard_normal(s)) for s in shapes]


def _sgd_reference(p, g, state, lr, momentum, dampening, weight_decay, nesterov):
    d = g + weight_decay * p
    if momentum:
        b = state.get("b")
        b = d.copy() if b is None else momentum * b + (1 - dampening) * d
        state["b"] = b
        d = d + momentum * b if nesterov else b
    return p - lr * d


def _adam_reference(p, g, state, lr, betas, eps, weight_decay, decoupled):
    beta1, beta2 = betas
    t = state["t"] = state.get("t", 0) + 1
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = state["m"] = beta1 * state.get("m", 0.0) + (1 - beta1) * g
    v = state["v"] = beta2 * state.get("v", 0.0) + (1 - beta2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - beta2 ** t) + eps
    return p - lr / (1 - beta1 ** t) * m / denom


CASES = [
    (nn.SGD, dict(lr=0.1), _sgd_reference, dict(momentum=0, dampening=0, weight_decay=0,
                                                nesterov=False)),
    (nn.SGD, dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01), _sgd_reference,
     dict(nesterov=False)),
    (nn.SGD, dict(lr=0.05, momentum=0.8, nesterov=True), _sgd_reference,
     dict(dampening=0, weight_decay=0)),
    (nn.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1), _adam_reference,
     dict(eps=1e-8, decoupled=False)),
    (nn.Adam, dict(lr=0.01, betas=(0.3, 0.9)), _adam_reference,   # lerp's other branch
     dict(eps=1e-8, weight_decay=0, decoupled=False)),
    (nn.AdamW, dict(lr=0.01, weight_decay=0.1), _adam_reference,
     dict(betas=(0.9, 0.999), eps=1e-8, decoupled=True)),
]


@pytest.mark.parametrize("cls, options, reference, implied", CASES,
                         ids=["sgd", "sgd-momentum", "sgd-nesterov", "adam", "adam-beta",
                              "adamw"])
def test_rules_match_pytorchs_in_numpy(cls, options, reference, implied):
    rng = np.random.default_rng(0)
    params = _params(rng)
    opt = cls(params, **options)
    expected = [p.data.copy() for p in params]
    states = [{} for _ in params]
    for _ in range(4):
        opt.zero_grad()
        for k, p in enumerate(params):
            p.grad = rng.standard_normal(p.shape)
        grads = [p.grad.copy() for p in params]
        opt.step()
        for k, p in enumerate(params):
            expected[k] = reference(expected[k], grads[k], states[k], **options, **implied)
            np.testing.assert_allclose(p.data, expected[k], rtol=1e-12, atol=1e-15)


def test_one_kernel_call_updates_every_parameter_of_a_class(monkeypatch):
    rng = np.random.default_rng(1)
    params = _params(rng) + [nn.Parameter(rng.standard_normal(4).astype("float32"))]
    opt = nn.Adam(params, lr=0.1)
    calls = []
    kernel = optim._kernel

    def counted(*args, **kwargs):
        run = kernel(*args, **kwargs)

        def call(*arrays):
            calls.append(args[1])   # the dtype
            return run(*arrays)
        return call

    monkeypatch.setattr(optim, "_kernel", counted)
    for p in params:
        p.grad = np.ones(p.shape, p.dtype)
    opt.step()
    assert sorted(calls) == ["float32", "float64"]   # two dtypes: two classes, two calls
    assert all(p.dtype == p.grad.dtype for p in params)
    # a parameter without a gradient is left alone, as PyTorch leaves it
    before = params[0].data.copy()
    params[0].grad = None
    opt.step()
    np.testing.assert_array_equal(params[0].data, before)
    assert opt.state[params[0]]["step"] == 1 and opt.state[params[1]]["step"] == 2


def test_replaced_parameters_and_state_dict_round_trip():
    rng = np.random.default_rng(2)
    params = _params(rng)
    opt = nn.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    params[1].data = np.full(7, 5.0)             # as load_state_dict does
    opt.step()
    # b = 0.9 * 1 + 1 = 1.9 on the second step
    np.testing.assert_allclose(params[1].data, 5.0 - 0.1 * 1.9, rtol=1e-12)
    saved = opt.state_dict()
    assert saved["param_groups"][0]["params"] == [0, 1, 2]
    assert saved["state"][1]["step"] == 2
    other_params = [nn.Parameter(p.data) for p in params]
    other = nn.SGD(other_params, lr=0.5, momentum=0.9)
    other.load_state_dict(saved)
    assert other.param_groups[0]["lr"] == 0.1
    for a, b in zip(params, other_params):
        a.grad = b.grad = np.full(a.shape, 2.0)
    opt.step()
    other.step()
    for a, b in zip(params, other_params):
        np.testing.assert_array_equal(a.data, b.data)


def test_param_groups_have_their_own_hyperparameters():
    rng = np.random.default_rng(3)
    a, b = _params(rng, ((2,), (3,)))
    opt = nn.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a0, b0 = a.data.copy(), b.data.copy()
    a.grad, b.grad = np.ones(2), np.ones(3)
    opt.step()
    np.testing.assert_allclose(a.data, a0 - 0.1)
    np.testing.assert_allclose(b.data, b0 - 1.0)
    opt.param_groups[0]["lr"] = 0.5          # a schedule changes it between steps
    opt.step()
    np.testing.assert_allclose(a.data, a0 - 0.6)


def test_bad_hyperparameters_are_refused():
    p = [nn.Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="SGD: lr must be a number >= 0.0, got -1"):
        nn.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="Adam: betas\\[1\\] must be a number"):
        nn.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        nn.AdamW([])
    with pytest.raises(TypeError, match="unknown hyperparameters \\['momentum'\\]"):
        nn.Adam([{"params": p, "momentum": 0.9}])
