"""What each system times in the capsule suite's training-step row (``capsule.py``): one
optimizer step of the CapsNet that ``tensordsl train capsnet`` trains, on a batch of
its digits, at its batch size, with its optimizer (``nn.train.DEFAULTS["capsnet"]``:
Adam, lr 0.01).

The model (``nn.train.build_model("capsnet")``): a 3x3 convolution 1 -> 32 with ReLU,
primary capsules (a 3x3 stride-2 convolution to 8 types of 8 dimensions, squashed: 128
capsules), digit capsules (10 of 16 dimensions, 3 routing iterations, predictions
included), the margin loss averaged over the batch.

- ours: ``nn.TrainStep`` (the compiled step the CLI runs by default: forward, margin
  loss, gradients by ``td.grad`` and Adam's update in one program);
- torch: the same model written the usual PyTorch way (``Conv2d``, ``view`` and
  ``transpose`` into capsules, the routing of ``capsule_ops.torch_routing``, the margin
  loss), our initial weights copied in, ``zero_grad(); loss.backward(); opt.step()``
  with ``torch.optim.Adam``; eager, or with the model and its loss under
  ``torch.compile`` (inductor compiles the forward and, through AOTAutograd, its
  backward; Adam's update stays eager).

Both sides start from the same weights and train on the same batch in float32.
"""
from __future__ import annotations

import numpy as np

from .capsule_ops import EPS, torch_routing

CAPSNET = {"batch": 64, "seed": 0}
MARGIN_EPS = 1e-12    # kernels/capsule.py margin_loss: |v| = sqrt(sum v^2 + eps)


def label(p: dict) -> str:
    return f"train step (CapsNet on digits, batch {p['batch']})"


def inputs(p: dict):
    """The first ``batch`` training images of the digits split, as the model reads them
    (N, 1, 8, 8), and their labels."""
    from tensordsl.nn.train import load_digits, model_input
    data = load_digits()
    n = p["batch"]
    return model_input("capsnet", data.x_train[:n]), data.y_train[:n]


def our_model(p: dict):
    """``tensordsl train capsnet``'s model and optimizer, weights drawn from ``seed``."""
    from tensordsl.nn.train import DEFAULTS, build_model, make_optimizer
    model = build_model("capsnet", np.random.default_rng(p["seed"]))
    return model, make_optimizer("capsnet", model.parameters(), DEFAULTS["capsnet"].lr)


def tensordsl_fn(p: dict):
    import tensordsl.nn as nn
    import tensordsl.nn.functional as F
    model, optimizer = our_model(p)
    step = nn.TrainStep(model, F.margin_loss, optimizer)
    x, y = inputs(p)
    return lambda: step(x, y)


# ---------------------------------------------------------------- PyTorch's side


def _squash(torch, s):
    n2 = (s * s).sum(-1, keepdim=True)
    return n2 / (1 + n2) * s / torch.sqrt(n2 + EPS)


def torch_model(torch, state: dict, dtype):
    """The CapsNet as a ``torch.nn.Module`` holding ``state`` (our parameter names:
    ``0`` the first convolution, ``2`` the primary capsules' convolution, ``3.weight``
    the routing weights (128, 10, 16, 8))."""
    class CapsNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 32, 3, padding=1)
            self.primary = torch.nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.W = torch.nn.Parameter(torch.zeros(128, 10, 16, 8))

        def forward(self, x):
            y = self.primary(torch.relu(self.conv(x)))
            n, _, h, w = y.shape
            # 8 types of 8 dimensions; capsules ordered by type, then position
            u = y.view(n, 8, 8, h * w).transpose(2, 3).reshape(n, -1, 8)
            return torch_routing(torch, _squash(torch, u), self.W, 3)

    model = CapsNet().to(dtype)
    names = {"conv.weight": "0.weight", "conv.bias": "0.bias",
             "primary.weight": "2.weight", "primary.bias": "2.bias", "W": "3.weight"}
    with torch.no_grad():
        for theirs, ours in names.items():
            model.get_parameter(theirs).copy_(torch.from_numpy(state[ours]))
    return model, names


def torch_margin_loss(torch, v, labels, m_plus=0.9, m_minus=0.1, lam=0.5):
    length = torch.sqrt((v * v).sum(-1) + MARGIN_EPS)
    t = torch.nn.functional.one_hot(labels, v.shape[1]).to(v.dtype)
    per = (t * torch.relu(m_plus - length) ** 2
           + lam * (1 - t) * torch.relu(length - m_minus) ** 2).sum(1)
    return per.mean()


def torch_fn(p: dict, compiled: bool = False):
    import torch
    from tensordsl.nn.train import DEFAULTS
    ours, _ = our_model(p)
    model, _ = torch_model(torch, ours.state_dict(), torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=DEFAULTS["capsnet"].lr)
    x, y = (torch.from_numpy(a) for a in inputs(p))

    def loss_of(a, b):
        return torch_margin_loss(torch, model(a), b)
    if compiled:
        loss_of = torch.compile(loss_of)

    def step():
        opt.zero_grad()
        loss = loss_of(x, y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


# ---------------------------------------------------------------- the check


def our_first_step(p: dict):
    """One ``nn.TrainStep`` from fresh weights: (initial state, loss, gradients by
    parameter name). The gradients are the program's own, read back from Adam's first
    moment: after the first step ``exp_avg = (1 - beta1) g`` exactly as PyTorch's lerp
    from 0 computes it (one float32 rounding), so ``g = exp_avg / (1 - beta1)``."""
    import tensordsl.nn as nn
    import tensordsl.nn.functional as F
    model, optimizer = our_model(p)
    initial = model.state_dict()
    loss = nn.TrainStep(model, F.margin_loss, optimizer)(*inputs(p))
    (beta1, _), = {g["betas"] for g in optimizer.param_groups}
    scale = float(np.float32(1.0 - beta1))      # the factor as the program holds it
    grads = {name: optimizer.state[param]["exp_avg"].astype("float64") / scale
             for name, param in model.named_parameters()}
    return initial, loss, grads


def torch_reference(initial: dict, p: dict):
    """PyTorch's loss and gradients from the same weights and batch, in float64."""
    import torch
    model, names = torch_model(torch, {k: v.astype("float64") for k, v in initial.items()},
                               torch.float64)
    x, y = inputs(p)
    loss = torch_margin_loss(torch, model(torch.from_numpy(x.astype("float64"))),
                             torch.from_numpy(y))
    loss.backward()
    return loss.item(), {ours: model.get_parameter(theirs).grad.numpy()
                         for theirs, ours in names.items()}


def errors(p: dict, first_step=None) -> dict:
    """Relative difference of our first step's loss and of each parameter's gradient
    (largest difference / largest PyTorch magnitude) from PyTorch's float64 autograd
    (``first_step``: what ``our_first_step(p)`` returned, if already run)."""
    initial, loss, grads = first_step or our_first_step(p)
    ref_loss, ref_grads = torch_reference(initial, p)
    out = {"loss": abs(loss - ref_loss) / abs(ref_loss)}
    for name, ref in ref_grads.items():
        out[name] = float(np.abs(grads[name] - ref).max() / np.abs(ref).max())
    return out


def check(p: dict) -> float:
    """The largest of ``errors``: our float32 step against PyTorch's float64."""
    return float(max(errors(p).values()))
