"""Against PyTorch (where installed), float32 on both sides, the same initial weights:
module outputs and gradients, BatchNorm2d's buffers, and the first 20 losses of an MLP
and a small CNN trained with SGD (momentum), Adam and AdamW."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl.nn as nn
import tensordsl.nn.functional as F
from tensordsl.nn.train import eager_step

torch = pytest.importorskip("torch")


def _same_weights(theirs, ours):
    ours.load_state_dict({k: v.detach().numpy().copy() for k, v in
                          theirs.state_dict().items()})


def _compare(theirs, ours, x, head, rtol=1e-5):
    """Outputs, input gradients and parameter gradients for the cotangent ``head``."""
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(head))
    ox = nn.Tensor(x, requires_grad=True)
    oy = ours(ox)
    oy.backward(head)
    np.testing.assert_allclose(oy.data, ty.detach().numpy(), rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(ox.grad, tx.grad.numpy(), rtol=rtol, atol=1e-6)
    mine = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(mine[name].grad, p.grad.numpy(), rtol=rtol, atol=1e-5,
                                   err_msg=name)


MODULES = {
    "conv2d": (lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
               lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 9, 9)),
    "conv2d-groups-dilation": (
        lambda: torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
        lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (1, 4, 7, 8)),
    "maxpool-flatten-linear": (
        lambda: torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                    torch.nn.Linear(3 * 4 * 4, 5)),
        lambda: nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)),
        (2, 3, 8, 8)),
    "gelu-tanh-sigmoid": (
        lambda: torch.nn.Sequential(torch.nn.GELU(), torch.nn.Tanh(), torch.nn.Sigmoid()),
        lambda: nn.Sequential(nn.GELU(), nn.Tanh(), nn.Sigmoid()), (4, 6)),
    "layernorm": (lambda: torch.nn.LayerNorm(6), lambda: nn.LayerNorm(6), (4, 6)),
    "batchnorm2d": (lambda: torch.nn.BatchNorm2d(3), lambda: nn.BatchNorm2d(3),
                    (4, 3, 5, 5)),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_module_outputs_and_gradients(name):
    make_theirs, make_ours, shape = MODULES[name]
    torch.manual_seed(0)
    theirs, ours = make_theirs(), make_ours()
    rng = np.random.default_rng(1)
    with torch.no_grad():   # affine parameters away from ones and zeros
        for p in theirs.parameters():
            p.add_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * .3))
    _same_weights(theirs, ours)
    x = rng.standard_normal(shape).astype("float32")
    out_shape = tuple(theirs(torch.tensor(x)).shape)
    head = rng.standard_normal(out_shape).astype("float32")
    _compare(theirs, ours, x, head)


def test_batchnorm2d_buffers_follow_pytorchs_in_training_and_eval():
    torch.manual_seed(0)
    theirs, ours = torch.nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = (rng.standard_normal((4, 3, 5, 5)) * 2 + 1).astype("float32")
        theirs(torch.tensor(x))
        ours(nn.Tensor(x))
    expected = theirs.state_dict()
    got = ours.state_dict()
    assert list(got) == list(expected)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k].numpy(), rtol=1e-6, err_msg=k)
    theirs.eval()
    ours.eval()
    x = rng.standard_normal((2, 3, 5, 5)).astype("float32")
    _compare(theirs, ours, x, rng.standard_normal(x.shape).astype("float32"))


def test_embedding_and_losses():
    torch.manual_seed(0)
    theirs, ours = torch.nn.Embedding(10, 4), nn.Embedding(10, 4)
    _same_weights(theirs, ours)
    idx = np.array([[1, 3, 1], [9, 0, 3]])
    head = np.random.default_rng(3).standard_normal((2, 3, 4)).astype("float32")
    theirs(torch.tensor(idx)).backward(torch.tensor(head))
    y = ours(idx)
    y.backward(head)
    np.testing.assert_allclose(y.data, theirs.weight.detach().numpy()[idx])
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-6)

    rng = np.random.default_rng(4)
    logits = rng.standard_normal((8, 5)).astype("float32") * 3
    labels = rng.integers(0, 5, 8)
    target = rng.standard_normal((8, 5)).astype("float32")
    for reduction in ("mean", "sum", "none"):
        for ours_fn, theirs_fn, second in (
                (F.cross_entropy, torch.nn.functional.cross_entropy, labels),
                (F.mse_loss, torch.nn.functional.mse_loss, target)):
            tx = torch.tensor(logits, requires_grad=True)
            tl = theirs_fn(tx, torch.tensor(second), reduction=reduction)
            tl.sum().backward()
            ox = nn.Tensor(logits, requires_grad=True)
            ol = ours_fn(ox, second, reduction=reduction)
            F.reduce_sum(ol).backward()
            np.testing.assert_allclose(ol.data.reshape(tl.shape), tl.detach().numpy(),
                                       rtol=1e-5)
            np.testing.assert_allclose(ox.grad, tx.grad.numpy(), rtol=1e-5, atol=1e-7)


def _mlp():
    return (torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10)),
            nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))


def _cnn():
    return (torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 4 * 4, 10)),
            nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 10)))


OPTIMIZERS = {
    "sgd-momentum": (lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
                     lambda ps: nn.SGD(ps, lr=0.05, momentum=0.9)),
    "adam": (lambda ps: torch.optim.Adam(ps, lr=1e-2), lambda ps: nn.Adam(ps, lr=1e-2)),
    "adamw": (lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
              lambda ps: nn.AdamW(ps, lr=1e-2, weight_decay=0.1)),
}


@pytest.mark.parametrize("step", ["eager", "traced"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_the_first_20_losses_match_pytorchs(model, optimizer, step):
    # eager: the tape and the optimizer's kernel; traced: the same as one nn.TrainStep
    torch.manual_seed(0)
    theirs, ours = {"mlp": _mlp, "cnn": _cnn}[model]()
    _same_weights(theirs, ours)
    make_theirs, make_ours = OPTIMIZERS[optimizer]
    their_opt, our_opt = make_theirs(theirs.parameters()), make_ours(ours.parameters())
    run = eager_step(ours, F.cross_entropy, our_opt) if step == "eager" else \
        nn.TrainStep(ours, F.cross_entropy, our_opt)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((64, 1, 8, 8)).astype("float32")
    if model == "mlp":
        X = X.reshape(64, 64)
    y = rng.integers(0, 10, 64)
    theirs_losses, our_losses = [], []
    loader = nn.DataLoader((X, y), batch_size=16, shuffle=True, seed=6)
    for epoch in range(5):
        for xb, yb in loader:
            their_opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(theirs(torch.tensor(xb)),
                                                     torch.tensor(yb))
            loss.backward()
            their_opt.step()
            theirs_losses.append(loss.item())
            our_losses.append(run(xb, yb))
    assert len(our_losses) == 20
    np.testing.assert_allclose(our_losses, theirs_losses, rtol=1e-4)
    # and it learns (memorizes the 64 random samples): the last epoch's mean loss
    assert np.mean(our_losses[-4:]) < 0.8 * np.mean(our_losses[:4])
