"""Each dense operator's inputs, and how each system computes it: one place, so every
system times exactly the same work. Used by the worker processes."""
from __future__ import annotations

import numpy as np


def inputs(op: str, p: dict) -> tuple[list[np.ndarray], dict]:
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype("float32")

    if op == "matmul":
        return [r(p["M"], p["K"]), r(p["K"], p["N"])], {}
    if op == "conv2d":
        x, w = r(*p["x"]), r(*p["w"]) * 0.1
        return [x, w], {"stride": 1, "padding": p["pad"], "groups": p.get("groups", 1)}
    if op in ("softmax", "layer_norm"):
        x = r(*p["shape"])
        if op == "layer_norm":
            return [x, r(p["shape"][-1]), r(p["shape"][-1])], {}
        return [x], {}
    if op == "chain":
        return [r(p["n"])], {}
    raise KeyError(op)


def flops(op: str, p: dict) -> float:
    if op == "matmul":
        return 2.0 * p["M"] * p["N"] * p["K"]
    if op == "conv2d":
        n, c, h, w = p["x"]
        f, cg, kh, kw = p["w"]
        return 2.0 * n * f * h * w * cg * kh * kw
    return 0.0


def tensordsl_fn(op: str, p: dict):
    import tensordsl as td
    arrays, attrs = inputs(op, p)
    if op == "matmul":
        out = np.empty((p["M"], p["N"]), "float32")
        return lambda: td.ops.matmul(*arrays, out=out)
    if op == "conv2d":
        return lambda: td.ops.conv2d_nchw(*arrays, **attrs)
    if op == "softmax":
        out = np.empty_like(arrays[0])
        return lambda: td.ops.softmax(arrays[0], axis=-1, out=out)
    if op == "layer_norm":
        out = np.empty_like(arrays[0])
        return lambda: td.ops.layer_norm(*arrays, out=out)
    if op == "chain":
        from schedules.examples import fused_chain, fused_relu_affine
        make = fused_chain if p.get("kind", "tanh") == "tanh" else fused_relu_affine
        f = td.build(*make(p["n"]))
        out = np.empty_like(arrays[0])
        return lambda: f(arrays[0], out)
    raise KeyError(op)


def chain_bytes(p: dict) -> float:
    return 8.0 * p["n"]  # one float read, one written per element (as STREAM counts)


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis as a numpy user writes it."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_fn(op: str, p: dict):
    arrays, attrs = inputs(op, p)
    if op == "matmul":
        out = np.empty((p["M"], p["N"]), "float32")
        return lambda: np.matmul(*arrays, out=out)
    if op == "softmax":
        return lambda: numpy_softmax(arrays[0])
    if op == "chain":
        x = arrays[0]
        out = np.empty_like(x)
        if p.get("kind", "tanh") == "tanh":
            return lambda: np.maximum(np.tanh(x * 0.5) * 1.5 + 0.25, 0.0, out=out)
        return lambda: np.maximum(x * 1.5 + 0.5, 0.0, out=out)
    raise KeyError(op)


def torch_fn(op: str, p: dict, channels_last: bool = False, compiled: bool = False):
    import torch
    arrays, attrs = inputs(op, p)
    t = [torch.from_numpy(a) for a in arrays]
    if op == "matmul":
        out = torch.empty(p["M"], p["N"])
        return lambda: torch.matmul(*t, out=out)
    if op == "conv2d":
        x, w = t
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            w = w.contiguous(memory_format=torch.channels_last)
        return lambda: torch.nn.functional.conv2d(x, w, stride=1, padding=attrs["padding"],
                                                  groups=attrs["groups"])
    if op == "softmax":
        return lambda: torch.softmax(t[0], -1)
    if op == "layer_norm":
        x, g, b = t
        return lambda: torch.nn.functional.layer_norm(x, (x.shape[-1],), g, b)
    if op == "chain":
        x = t[0]
        out = torch.empty_like(x)

        tanh = p.get("kind", "tanh") == "tanh"

        def chain(x, out):
            # written into a preallocated output, like ours
            if tanh:
                return out.copy_(torch.clamp_min(torch.tanh(x * 0.5) * 1.5 + 0.25, 0.0))
            return out.copy_(torch.clamp_min(x * 1.5 + 0.5, 0.0))
        fn = torch.compile(chain) if compiled else chain
        return lambda: fn(x, out)
    raise KeyError(op)
