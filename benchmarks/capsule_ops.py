"""What each system times in the capsule suite (``capsule.py``): the routing of Sabour
et al. at the paper's sizes — ``u`` (batch, 1152 input capsules, 8 dims), ``W`` (1152,
10, 16, 8), 3 iterations, predictions included — forward, and forward + backward
(the gradients of ``sum(v * head)`` with respect to ``u`` and ``W``).

- ours: ``td.ops.capsule_routing`` (the fused CPU template) and
  ``td.ops.capsule_routing_backward`` (the gradients ``td.vjp`` derives, both operands);
- numpy: the same routing with ``einsum`` and broadcasting (forward only: numpy has no
  autodiff);
- torch: the usual PyTorch implementation (``einsum`` predictions, a softmax, a weighted
  sum, squash, the agreement), eager, and under ``torch.compile`` (inductor) — its
  backward by autograd.

Every side allocates its results on each call.
"""
from __future__ import annotations

import numpy as np

PAPER = {"batch": 32, "in_caps": 1152, "in_dim": 8, "out_caps": 10, "out_dim": 16,
         "iterations": 3}
EPS = 1e-7


def inputs(p: dict):
    rng = np.random.default_rng(0)
    u = (rng.standard_normal((p["batch"], p["in_caps"], p["in_dim"])) * 0.5).astype("float32")
    W = (rng.standard_normal((p["in_caps"], p["out_caps"], p["out_dim"], p["in_dim"]))
         * 0.05).astype("float32")
    head = rng.standard_normal((p["batch"], p["out_caps"], p["out_dim"])).astype("float32")
    return u, W, head


def numpy_routing(u, W, iterations):
    u_hat = np.einsum("ijdk,bik->bijd", W, u, optimize=True)
    logits = np.zeros(u_hat.shape[:3], u.dtype)
    for t in range(iterations):
        c = np.exp(logits - logits.max(2, keepdims=True))
        c /= c.sum(2, keepdims=True)
        s = np.einsum("bij,bijd->bjd", c, u_hat, optimize=True)
        n2 = (s * s).sum(-1, keepdims=True)
        v = n2 / (1 + n2) * s / np.sqrt(n2 + EPS)
        if t < iterations - 1:
            logits = logits + np.einsum("bijd,bjd->bij", u_hat, v, optimize=True)
    return v


def torch_routing(torch, u, W, iterations):
    u_hat = torch.einsum("ijdk,bik->bijd", W, u)
    logits = torch.zeros(u_hat.shape[:3], dtype=u.dtype)
    for t in range(iterations):
        c = torch.softmax(logits, dim=2)
        s = (c.unsqueeze(-1) * u_hat).sum(1)
        n2 = (s * s).sum(-1, keepdim=True)
        v = n2 / (1 + n2) * s / torch.sqrt(n2 + EPS)
        if t < iterations - 1:
            logits = logits + (u_hat * v.unsqueeze(1)).sum(-1)
    return v


def tensordsl_fn(part: str, p: dict):
    import tensordsl as td
    u, W, head = inputs(p)
    it = p["iterations"]
    if part == "forward":
        return lambda: td.ops.capsule_routing(u, W, iterations=it)

    def both():
        td.ops.capsule_routing(u, W, iterations=it)
        return td.ops.capsule_routing_backward(u, W, head, iterations=it)
    return both


def numpy_fn(part: str, p: dict):
    if part != "forward":
        raise KeyError("numpy has no backward of its own")
    u, W, _ = inputs(p)
    return lambda: numpy_routing(u, W, p["iterations"])


def torch_fn(part: str, p: dict, compiled: bool = False):
    import torch
    u, W, head = (torch.from_numpy(a) for a in inputs(p))
    it = p["iterations"]
    routing = (lambda a, b: torch_routing(torch, a, b, it))
    if compiled:
        routing = torch.compile(routing)
    if part == "forward":
        def forward():
            with torch.no_grad():
                return routing(u, W)
        return forward
    u.requires_grad_(True)
    W.requires_grad_(True)

    def both():
        u.grad = W.grad = None
        (routing(u, W) * head).sum().backward()
        return u.grad, W.grad
    return both


def check(p: dict) -> float:
    """Our forward and gradients against PyTorch's autograd in float64: the largest
    relative difference."""
    import torch
    import tensordsl as td
    u, W, head = inputs(p)
    it = p["iterations"]
    v = td.ops.capsule_routing(u, W, iterations=it)
    gu, gW = td.ops.capsule_routing_backward(u, W, head, iterations=it)
    tu, tW = (torch.from_numpy(a.astype("float64")).requires_grad_(True) for a in (u, W))
    tv = torch_routing(torch, tu, tW, it)
    (tv * torch.from_numpy(head.astype("float64"))).sum().backward()
    errors = [np.abs(a - b.detach().numpy()).max() / np.abs(b.detach().numpy()).max()
              for a, b in ((v, tv), (gu, tu.grad), (gW, tW.grad))]
    return float(max(errors))
