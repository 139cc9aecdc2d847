"""What each system times in the nn suite (``nn.py``): one place, so both sides train
the same model on the same batch. Used by the worker processes.

Cases: ``mlp_step`` and ``cnn_step`` (one training step: forward, cross-entropy,
backward, the optimizer's update — ours ``nn.TrainStep``, PyTorch eager
``zero_grad(); loss.backward(); opt.step()``), ``linear`` and ``conv2d`` (a layer's
forward, and its forward and backward through the tape: ``part`` "forward" or
"backward"). Both sides start from the same weights (PyTorch's, copied) and allocate
their results on every call.
"""
from __future__ import annotations

import numpy as np

MLP = {"batch": 256, "layers": [64, 256, 256, 10]}
CNN = {"batch": 256}
LINEAR = {"batch": 256, "n_in": 256, "n_out": 256}
CONV = {"x": (64, 16, 8, 8), "out": 32}


def _torch_model(case: str, p: dict):
    import torch
    torch.manual_seed(0)
    if case == "mlp_step":
        sizes = p["layers"]
        layers = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])
    if case == "cnn_step":
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(32 * 2 * 2, 10))
    if case == "linear":
        return torch.nn.Linear(p["n_in"], p["n_out"])
    if case == "conv2d":
        return torch.nn.Conv2d(p["x"][1], p["out"], 3, padding=1)
    raise KeyError(case)


def _our_model(case: str, p: dict):
    import tensordsl.nn as nn
    if case == "mlp_step":
        sizes = p["layers"]
        layers = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
    elif case == "cnn_step":
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(32 * 2 * 2, 10))
    elif case == "linear":
        model = nn.Linear(p["n_in"], p["n_out"])
    elif case == "conv2d":
        model = nn.Conv2d(p["x"][1], p["out"], 3, padding=1)
    else:
        raise KeyError(case)
    # PyTorch's initial weights, so both sides compute the same numbers
    theirs = _torch_model(case, p)
    model.load_state_dict({k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()})
    return model


def inputs(case: str, p: dict):
    rng = np.random.default_rng(0)
    if case == "mlp_step":
        return (rng.standard_normal((p["batch"], p["layers"][0])).astype("float32"),
                rng.integers(0, p["layers"][-1], p["batch"]))
    if case == "cnn_step":
        return (rng.standard_normal((p["batch"], 1, 8, 8)).astype("float32"),
                rng.integers(0, 10, p["batch"]))
    if case == "linear":
        x = rng.standard_normal((p["batch"], p["n_in"])).astype("float32")
        return x, rng.standard_normal((p["batch"], p["n_out"])).astype("float32")
    if case == "conv2d":
        x = rng.standard_normal(p["x"]).astype("float32")
        n, _, h, w = p["x"]
        return x, rng.standard_normal((n, p["out"], h, w)).astype("float32")
    raise KeyError(case)


def tensordsl_fn(case: str, part: str, p: dict):
    import tensordsl.nn as nn
    import tensordsl.nn.functional as F
    model = _our_model(case, p)
    a, b = inputs(case, p)
    if case.endswith("_step"):
        step = nn.TrainStep(model, F.cross_entropy, nn.SGD(model.parameters(), lr=0.01,
                                                            momentum=0.9))
        return lambda: step(a, b)
    if part == "forward":
        return lambda: model(nn.Tensor(a))

    def forward_backward():
        model.zero_grad()
        model(nn.Tensor(a)).backward(b)
    return forward_backward


def torch_fn(case: str, part: str, p: dict):
    import torch
    model = _torch_model(case, p)
    a, b = (torch.from_numpy(v) for v in inputs(case, p))
    if case.endswith("_step"):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(a), b)
            loss.backward()
            opt.step()
            return loss.item()
        return step
    if part == "forward":
        def forward():
            with torch.no_grad():
                return model(a)
        return forward

    def forward_backward():
        model.zero_grad()
        model(a).backward(b)
    return forward_backward


def check(case: str, p: dict) -> float:
    """Largest relative difference of our losses from PyTorch's over 5 steps (the step
    cases), or of the layer's output and weight gradient (the layer cases)."""
    import torch
    if case.endswith("_step"):
        ours = tensordsl_fn(case, "backward", p)
        mine = [ours() for _ in range(5)]
        step = torch_fn(case, "backward", p)
        ref = [step() for _ in range(5)]
        return float(max(abs(m - r) / abs(r) for m, r in zip(mine, ref)))
    import tensordsl.nn as nn
    model, theirs = _our_model(case, p), _torch_model(case, p)
    a, b = inputs(case, p)
    y = model(nn.Tensor(a))
    y.backward(b)
    ta = torch.from_numpy(a)
    ty = theirs(ta)
    ty.backward(torch.from_numpy(b))
    err_y = np.abs(y.data - ty.detach().numpy()).max() / np.abs(ty.detach().numpy()).max()
    g, tg = model.weight.grad, theirs.weight.grad.numpy()
    return float(max(err_y, np.abs(g - tg).max() / np.abs(tg).max()))
