"""nn.TrainStep: the traced training step computes what the eager tape and the
optimizer compute, step after step; its program fuses what it should; bad use is
refused with a clear error."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl.nn as nn
import tensordsl.nn.functional as F
from tensordsl.nn import train


def _model(seed, dtype="float32"):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(12, 16, dtype=dtype, rng=rng), nn.ReLU(),
                         nn.Linear(16, 16, dtype=dtype, rng=rng), nn.ReLU(),
                         nn.Linear(16, 5, dtype=dtype, rng=rng))


def _loss(out, target):
    # target holds -1 at each row's class: the mean of the picked log-probabilities
    return F.reduce_mean(F.multiply(F.log_softmax(out), target))


def _batches(dtype, steps=5, batch=24):
    rng = np.random.default_rng(9)
    for _ in range(steps):
        x = rng.standard_normal((batch, 12)).astype(dtype)
        target = -np.eye(5, dtype=dtype)[rng.integers(0, 5, batch)]
        yield x, target


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 1e-2)])
def test_train_step_matches_the_eager_tape_and_sgd(momentum, weight_decay):
    traced, eager = _model(0, "float64"), _model(0, "float64")
    opt_t = nn.SGD(traced.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    opt_e = nn.SGD(eager.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    step = nn.TrainStep(traced, _loss, opt_t)
    for x, target in _batches("float64"):
        got = step(x, target)
        loss = _loss(eager(nn.Tensor(x)), nn.Tensor(target))
        opt_e.zero_grad()
        loss.backward()
        opt_e.step()
        assert got == pytest.approx(loss.item(), rel=1e-12)
    for (name, p), (_, q) in zip(traced.named_parameters(), eager.named_parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-10, atol=1e-12, err_msg=name)


def test_train_step_compiles_once_per_shape_and_fuses_the_layers():
    model = _model(1)
    step = nn.TrainStep(model, _loss, nn.SGD(model.parameters(), lr=0.05, momentum=0.9))
    batches = list(_batches("float32", steps=3))
    losses = [step(x, t) for x, t in batches]
    assert len(step._compiled) == 1
    assert all(np.isfinite(losses))
    names = [k.writes[0].op.name for k in step.program(*batches[0]).kernels]
    # each layer's product, bias and relu in one kernel: no bias-add or relu kernels of
    # their own in the forward (dense's bias add is the stage named "dense")
    assert "dense.matmul" not in names and names.count("relu") == 2
    # a smaller last batch: a second program
    x, t = batches[0]
    step(x[:7], t[:7])
    assert len(step._compiled) == 2


def test_train_step_lowers_the_loss_on_a_fixed_batch():
    model = _model(2)
    step = nn.TrainStep(model, _loss, nn.SGD(model.parameters(), lr=1.0, momentum=0.9))
    x, target = next(_batches("float32"))
    losses = [step(x, target) for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]


def test_train_step_refuses_a_forward_that_reads_data_and_a_non_scalar_loss():
    class ReadsData(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(12, 5, rng=np.random.default_rng(0))

        def forward(self, x):
            return nn.Tensor(x.numpy() * 2)

    model = ReadsData()
    step = nn.TrainStep(model, _loss, nn.SGD(model.parameters(), lr=0.1))
    x, target = next(_batches("float32"))
    with pytest.raises(RuntimeError, match="traced tensor has no value"):
        step(x, target)
    model = _model(3)
    step = nn.TrainStep(model, lambda out, t: F.multiply(out, t),
                        nn.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="loss must have one element"):
        step(x, target)


def test_traced_dropout_and_batchnorm_follow_the_eager_step():
    # the same rng for the masks: the traced step draws a new mask every run, as the
    # eager forward does; BatchNorm's running statistics and counter advance every run
    def make():
        rng = np.random.default_rng(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype="float64", rng=rng),
                              nn.BatchNorm2d(4, dtype="float64"), nn.ReLU(),
                              nn.Flatten(), nn.Dropout(0.3, rng=np.random.default_rng(7)),
                              nn.Linear(4 * 6 * 6, 3, dtype="float64", rng=rng))
        return model, nn.SGD(model.parameters(), lr=0.1, momentum=0.9)

    (traced, opt_t), (eager, opt_e) = make(), make()
    step = nn.TrainStep(traced, F.cross_entropy, opt_t)
    eager_step = train.eager_step(eager, F.cross_entropy, opt_e)
    rng = np.random.default_rng(3)
    for _ in range(4):
        x = rng.standard_normal((5, 1, 6, 6))
        y = rng.integers(0, 3, 5)
        assert step(x, y) == pytest.approx(eager_step(x, y), rel=1e-10)
    t_state, e_state = traced.state_dict(), eager.state_dict()
    assert t_state["1.num_batches_tracked"] == 4
    for name in e_state:
        np.testing.assert_allclose(t_state[name], e_state[name], rtol=1e-9, err_msg=name)


def test_traced_labels_are_checked_every_run():
    model = _model(4)
    step = nn.TrainStep(model, F.cross_entropy, nn.SGD(model.parameters(), lr=0.1))
    x = np.zeros((3, 12), np.float32)
    step(x, np.array([0, 4, 2]))
    with pytest.raises(ValueError, match="target holds class 5, outside \\[0, 5\\)"):
        step(x, np.array([0, 5, 2]))


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_tensordsl_trains_models_first_20_losses_match_pytorchs(model_name):
    # the issue's measure: `tensordsl train`'s own models on the digits, batch 64, SGD
    # with momentum, the same initial weights and batches as PyTorch, compiled steps
    pytest.importorskip("sklearn")
    torch = pytest.importorskip("torch")
    from tensordsl.nn.train import build_model, load_digits, model_input
    ours = build_model(model_name, np.random.default_rng(0))
    layers = []
    for m in ours._modules.values():
        kind = type(m).__name__
        if kind == "Linear":
            layers.append(torch.nn.Linear(m.weight.shape[1], m.weight.shape[0]))
        elif kind == "Conv2d":
            layers.append(torch.nn.Conv2d(m.weight.shape[1], m.weight.shape[0], 3, padding=1))
        else:
            layers.append({"ReLU": torch.nn.ReLU(), "MaxPool2d": torch.nn.MaxPool2d(2),
                           "Flatten": torch.nn.Flatten()}[kind])
    theirs = torch.nn.Sequential(*layers)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    their_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    step = nn.TrainStep(ours, F.cross_entropy, nn.SGD(ours.parameters(), lr=0.1, momentum=0.9))
    data = load_digits()
    x = model_input(model_name, data.x_train)
    order = np.random.default_rng(1).permutation(len(x))
    mine, reference = [], []
    for k in range(20):
        batch = order[64 * k:64 * (k + 1)]
        mine.append(step(x[batch], data.y_train[batch]))
        their_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(theirs(torch.tensor(x[batch])),
                                                 torch.tensor(data.y_train[batch]))
        loss.backward()
        their_opt.step()
        reference.append(loss.item())
    np.testing.assert_allclose(mine, reference, rtol=1e-4)
