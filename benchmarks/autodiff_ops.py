"""What each system times in the autodiff suite (``autodiff.py``): one place, so both
sides compute exactly the same thing on the same tensors. Used by the worker processes.

Parts: ``forward`` (our operator), ``backward`` (our derived gradients of every input,
``td.ops.<op>_backward``), ``torch_backward`` (``torch.autograd.grad`` of the same
output for the same cotangent, the forward run once outside the timer and its graph
retained), and for the MLP: ``grad`` (one ``td.grad`` evaluation), ``hvp`` (``td.hvp``),
``torch_grad`` and ``torch_hvp`` (``torch.func.jvp(torch.func.grad(loss), (w,), (v,))``).
Every side allocates its results on each call (td.ops and torch both return new arrays).
"""
from __future__ import annotations

import numpy as np

MLP = {"batch": 256, "n_in": 784, "n_hidden": 256, "n_out": 10}


def _r(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


def inputs(case: str, p: dict):
    """(operands, attrs, cotangent) of an operator case; the MLP's arrays for ``mlp``."""
    rng = np.random.default_rng(0)
    if case == "matmul":
        return [_r(rng, p["M"], p["K"]), _r(rng, p["K"], p["N"])], {}, _r(rng, p["M"], p["N"])
    if case == "conv2d":
        n, c, h, w = p["x"]
        f, _, kh, kw = p["w"]
        pad = p["pad"]
        out = (n, f, h + 2 * pad - kh + 1, w + 2 * pad - kw + 1)
        return [_r(rng, *p["x"]), _r(rng, *p["w"], scale=0.1)], {"padding": pad}, _r(rng, *out)
    if case == "softmax":
        return [_r(rng, *p["shape"])], {"axis": -1}, _r(rng, *p["shape"])
    if case == "mlp":
        b, i, h, o = p["batch"], p["n_in"], p["n_hidden"], p["n_out"]
        return {"x": _r(rng, b, i), "w1": _r(rng, h, i, scale=i ** -0.5),
                "b1": _r(rng, h, scale=0.1), "w2": _r(rng, o, h, scale=h ** -0.5),
                "b2": _r(rng, o, scale=0.1), "t": _r(rng, b, o), "v": _r(rng, h, i)}
    raise KeyError(case)


_FORWARD = {"matmul": "matmul", "conv2d": "conv2d_nchw", "softmax": "softmax"}


def mlp_loss(batch=256, n_in=784, n_hidden=256, n_out=10):
    """The hvp row's model: ``loss = sum((tanh(x w1^T + b1) w2^T + b2 - t)^2)``, a 2-layer
    MLP with a squared-error loss, as tensor expressions. Returns ``(inputs, loss)``
    with ``inputs = [x, w1, b1, w2, b2, t]``; the Hessian is taken with respect to
    ``w1`` (the 256 x 784 weight)."""
    import tensordsl as td
    from kernels.dense import dense
    x = td.placeholder((batch, n_in), name="x")
    w1 = td.placeholder((n_hidden, n_in), name="w1")
    b1 = td.placeholder((n_hidden,), name="b1")
    w2 = td.placeholder((n_out, n_hidden), name="w2")
    b2 = td.placeholder((n_out,), name="b2")
    t = td.placeholder((batch, n_out), name="t")
    z = dense(x, w1, b1, name="z")
    h = td.compute(z.shape, lambda i, j: td.tanh(z[i, j]), name="h")
    o = dense(h, w2, b2, name="o")
    i, j = td.reduce_axis((0, batch), "i"), td.reduce_axis((0, n_out), "j")
    loss = td.compute((1,), lambda _: td.sum((o[i, j] - t[i, j]) * (o[i, j] - t[i, j]),
                                             axis=[i, j]), name="loss")
    return [x, w1, b1, w2, b2, t], loss


def mlp_torch_loss(a: dict):
    import torch
    x, b1, w2, b2, t = (torch.from_numpy(a[k]) for k in ("x", "b1", "w2", "b2", "t"))

    def loss(w1):
        return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - t) ** 2).sum()
    return loss


def tensordsl_fn(case: str, part: str, p: dict):
    import tensordsl as td
    if case == "mlp":
        a = inputs("mlp", p)
        ins, loss = mlp_loss(**p)
        w1 = ins[1]
        arrays = [a["x"], a["w1"], a["b1"], a["w2"], a["b2"], a["t"]]
        if part == "grad":
            g = td.grad(loss, w1)
            f = td.build(ins + [g])
            out = np.empty_like(a["w1"])
            return lambda: f(*arrays, out)
        hv, v = td.hvp(loss, w1)
        f = td.build(ins + [v, hv])
        out = np.empty_like(a["w1"])
        return lambda: f(*arrays, a["v"], out)
    operands, attrs, g = inputs(case, p)
    op = _FORWARD[case]
    if part == "forward":
        return lambda: getattr(td.ops, op)(*operands, **attrs)
    backward = getattr(td.ops, f"{op}_backward")
    return lambda: backward(*operands, g, **attrs)


def torch_fn(case: str, part: str, p: dict):
    import torch
    if case == "mlp":
        a = inputs("mlp", p)
        loss = mlp_torch_loss(a)
        w1, v = torch.from_numpy(a["w1"]), torch.from_numpy(a["v"])
        if part == "torch_grad":
            g = torch.func.grad(loss)
            return lambda: g(w1)
        hvp = torch.func.grad(loss)
        return lambda: torch.func.jvp(hvp, (w1,), (v,))
    operands, attrs, g = inputs(case, p)
    ts = [torch.from_numpy(x).requires_grad_() for x in operands]
    if case == "matmul":
        y = ts[0] @ ts[1]
    elif case == "conv2d":
        y = torch.nn.functional.conv2d(*ts, padding=attrs["padding"])
    else:
        y = torch.softmax(ts[0], -1)
    if part == "torch_forward":
        fn = {"matmul": lambda: ts[0] @ ts[1],
              "conv2d": lambda: torch.nn.functional.conv2d(*ts, padding=attrs.get("padding")),
              "softmax": lambda: torch.softmax(ts[0], -1)}[case]
        return lambda: fn().detach()
    gt = torch.from_numpy(g)
    return lambda: torch.autograd.grad(y, ts, gt, retain_graph=True)


def check(case: str, p: dict) -> float:
    """Largest relative difference between our gradients and PyTorch's (run before the
    suite, so that a fast wrong kernel cannot show in the table)."""
    import torch
    import tensordsl as td
    if case == "mlp":
        a = inputs("mlp", p)
        ins, loss = mlp_loss(**p)
        hv, v = td.hvp(loss, ins[1])
        f = td.build(ins + [v, hv])
        out = np.empty_like(a["w1"])
        f(a["x"], a["w1"], a["b1"], a["w2"], a["b2"], a["t"], a["v"], out)
        _, ref = torch.func.jvp(torch.func.grad(mlp_torch_loss(a)),
                                (torch.from_numpy(a["w1"]),), (torch.from_numpy(a["v"]),))
        return _rel(out, ref.numpy())
    ours = tensordsl_fn(case, "backward", p)()
    refs = torch_fn(case, "torch_backward", p)()
    return max(_rel(a, b.numpy()) for a, b in zip(ours, refs))


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(1e-30, float(np.abs(b).max())))
