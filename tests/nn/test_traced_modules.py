"""The modules, losses and optimizers under nn.TrainStep: a traced CNN step computes what
the eager tape and the flat-buffer optimizers compute, and an eager step continues from
the traced state."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl.nn as nn
import tensordsl.nn.functional as F
from tensordsl.nn import train


def _cnn(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype="float64", rng=rng), nn.Tanh(),
                         nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 5, dtype="float64", rng=rng))


@pytest.mark.parametrize("make_optimizer", [
    lambda ps: nn.Adam(ps, lr=0.01, weight_decay=1e-3),
    lambda ps: nn.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)], ids=["adam", "sgd"])
def test_a_traced_cnn_step_matches_the_eager_tape(make_optimizer):
    traced, eager = _cnn(0), _cnn(0)
    opt_t, opt_e = make_optimizer(traced.parameters()), make_optimizer(eager.parameters())
    step = nn.TrainStep(traced, F.cross_entropy, opt_t)
    eager_step = train.eager_step(eager, F.cross_entropy, opt_e)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((6, 1, 6, 6))
        y = rng.integers(0, 5, 6)
        assert step(x, y) == pytest.approx(eager_step(x, y), rel=1e-10)
    for (name, p), q in zip(traced.named_parameters(), eager.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-9, atol=1e-12, err_msg=name)
    assert opt_t.state[traced[0].weight]["step"] == 3
    # an eager step after traced ones continues from the traced state
    x, y = rng.standard_normal((6, 1, 6, 6)), rng.integers(0, 5, 6)
    for model, opt in ((traced, opt_t), (eager, opt_e)):
        opt.zero_grad()
        F.cross_entropy(model(nn.Tensor(x)), y).backward()
        opt.step()
    for p, q in zip(traced.parameters(), eager.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-9, atol=1e-12)
