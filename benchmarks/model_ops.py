"""The layers of real models at their shapes (issue 17), and how each system computes
one: ResNet-50's distinct convolutions, MobileNetV2's depthwise and pointwise ones,
BERT-base's matmuls, softmax and layer_norm (sequence 128). Used by ``models.py`` and
the worker processes.

A layer is ``(kind, params)``:

- ``conv``: ``x`` (N, C, H, W), ``w`` (F, C / groups, KH, KW), ``stride``, ``pad``,
  ``groups``; ours ``td.ops.conv2d_nchw``, PyTorch ``F.conv2d`` on NCHW tensors or on
  channels_last ones (its fastest layout on CPU, oneDNN underneath).
- ``dense``: ``x`` (M, K) times ``w`` (N, K) transposed plus ``b`` (N,) — a linear
  layer; ours ``td.ops.dense``, PyTorch ``F.linear``, numpy ``x @ w.T + b``.
- ``batch_matmul``: ``a`` (B, M, K) and ``b`` (B, K, N), or (B, N, K) with
  ``transpose_b`` (attention's scores Q·Kᵀ); ours ``td.ops.batch_matmul``, PyTorch
  ``torch.bmm``, numpy ``np.matmul``.
- ``softmax`` over the last axis, ``layer_norm`` over the last axis with a gain and a
  bias.

Every system allocates its result on every call, as a model's forward does.
"""
from __future__ import annotations

import numpy as np


def _conv(n, c, f, hw, k, stride=1, groups=1):
    return ("conv", {"x": (n, c, hw, hw), "w": (f, c // groups, k, k), "stride": stride,
                     "pad": k // 2, "groups": groups})


def resnet50(batch: int) -> list[tuple[str, str, tuple]]:
    """(name, kind, params) of every distinct convolution of ResNet-50 (torchvision's
    v1.5: the stride on the 3x3 of a stage's first block), input 224x224."""
    n = batch
    layers = [("stem 7x7/2 3->64 @224", *_conv(n, 3, 64, 224, 7, 2))]
    # (stage input width, channels in, bottleneck width, channels out, spatial size in)
    stages = [(64, 64, 256, 56, 1), (256, 128, 512, 56, 2), (512, 256, 1024, 28, 2),
              (1024, 512, 2048, 14, 2)]
    for c_in, width, c_out, size, stride in stages:
        out = size // stride
        layers += [
            (f"1x1 {c_in}->{width} @{size}", *_conv(n, c_in, width, size, 1)),
            (f"3x3/{stride} {width}->{width} @{size}", *_conv(n, width, width, size, 3, stride)),
            (f"1x1 {width}->{c_out} @{out}", *_conv(n, width, c_out, out, 1)),
            (f"proj 1x1/{stride} {c_in}->{c_out} @{size}",
             *_conv(n, c_in, c_out, size, 1, stride)),
            # the stage's other blocks
            (f"1x1 {c_out}->{width} @{out}", *_conv(n, c_out, width, out, 1)),
        ]
        if stride != 1:
            layers.append((f"3x3 {width}->{width} @{out}", *_conv(n, width, width, out, 3)))
    return _distinct(layers)


def mobilenet_v2(batch: int = 1) -> list[tuple[str, str, tuple]]:
    """MobileNetV2's distinct depthwise 3x3 and pointwise 1x1 convolutions (Sandler et
    al. 2018, table 2: the inverted residual stages after the 3x3/2 stem), input
    224x224."""
    n = batch
    # expansion t, channels out c, blocks, first block's stride
    stages = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1)]
    layers, c_in, size = [], 32, 112
    for t, c_out, blocks, first_stride in stages:
        for block in range(blocks):
            stride = first_stride if block == 0 else 1
            hidden, out = c_in * t, size // stride
            if t != 1:
                layers.append((f"pw 1x1 {c_in}->{hidden} @{size}",
                               *_conv(n, c_in, hidden, size, 1)))
            layers.append((f"dw 3x3/{stride} {hidden} @{size}",
                           *_conv(n, hidden, hidden, size, 3, stride, groups=hidden)))
            layers.append((f"pw 1x1 {hidden}->{c_out} @{out}",
                           *_conv(n, hidden, c_out, out, 1)))
            c_in, size = c_out, out
    layers.append(("pw 1x1 320->1280 @7", *_conv(n, 320, 1280, 7, 1)))
    return _distinct(layers)


def bert_base(seq: int = 128, batch: int = 1) -> list[tuple[str, str, tuple]]:
    """BERT-base's layer at sequence ``seq``: 768 hidden, 12 heads of 64, FFN 3072."""
    m, heads, d = batch * seq, 12, 64
    return [
        ("QKV / attention output dense 768->768", "dense", {"x": (m, 768), "w": (768, 768)}),
        ("FFN up dense 768->3072", "dense", {"x": (m, 768), "w": (3072, 768)}),
        ("FFN down dense 3072->768", "dense", {"x": (m, 3072), "w": (768, 3072)}),
        ("attention scores Q K^T", "batch_matmul",
         {"a": (batch * heads, seq, d), "b": (batch * heads, seq, d), "transpose_b": True}),
        ("attention context P V", "batch_matmul",
         {"a": (batch * heads, seq, seq), "b": (batch * heads, seq, d)}),
        ("attention softmax", "softmax", {"shape": (batch * heads, seq, seq)}),
        ("layer_norm", "layer_norm", {"shape": (m, 768)}),
    ]


MODELS = {
    "resnet50": lambda: [(f"b1 {name}", kind, p) for name, kind, p in resnet50(1)]
    + [(f"b8 {name}", kind, p) for name, kind, p in resnet50(8)],
    "mobilenetv2": lambda: mobilenet_v2(1),
    "bert": lambda: bert_base(128),
}


def _distinct(layers):
    seen, out = set(), []
    for name, kind, p in layers:
        key = (kind, tuple(sorted((k, str(v)) for k, v in p.items())))
        if key not in seen:
            seen.add(key)
            out.append((name, kind, p))
    return out


def flops(kind: str, p: dict) -> float:
    if kind == "conv":
        n, c, h, w = p["x"]
        f, cg, kh, kw = p["w"]
        s = p["stride"]
        ho, wo = (h + 2 * p["pad"] - kh) // s + 1, (w + 2 * p["pad"] - kw) // s + 1
        return 2.0 * n * f * ho * wo * cg * kh * kw
    if kind == "dense":
        (m, k), (nn, _) = p["x"], p["w"]
        return 2.0 * m * nn * k
    if kind == "batch_matmul":
        b, m, k = p["a"]
        nn = p["b"][1] if p.get("transpose_b") else p["b"][2]
        return 2.0 * b * m * nn * k
    return 0.0


def operand_shapes(kind: str, p: dict) -> list[tuple[tuple, float]]:
    """``(shape, scale)`` of each operand: its shape and the spread of its values."""
    if kind == "conv":
        return [(p["x"], 1.0), (p["w"], 0.1)]
    if kind == "dense":
        return [(p["x"], 1.0), (p["w"], 0.05), ((p["w"][0],), 1.0)]
    if kind == "batch_matmul":
        return [(p["a"], 1.0), (p["b"], 1.0)]
    if kind == "softmax":
        return [(p["shape"], 1.0)]
    if kind == "layer_norm":
        return [(p["shape"], 1.0), ((p["shape"][-1],), 1.0), ((p["shape"][-1],), 1.0)]
    raise KeyError(kind)


def inputs(kind: str, p: dict) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(shape) * scale).astype("float32")
            for shape, scale in operand_shapes(kind, p)]


def ops_call(kind: str, p: dict, arrays: list) -> tuple[str, list, dict]:
    """``(operator, arrays, options)``: the ``td.ops`` call ours makes for the layer."""
    if kind == "conv":
        return "conv2d_nchw", arrays, {"stride": p["stride"], "padding": p["pad"],
                                       "groups": p["groups"]}
    if kind == "batch_matmul":
        return "batch_matmul", arrays, {"transpose_b": p.get("transpose_b", False)}
    if kind == "softmax":
        return "softmax", arrays, {"axis": -1}
    if kind in ("dense", "layer_norm"):
        return kind, arrays, {}
    raise KeyError(kind)


def tensordsl_fn(kind: str, p: dict):
    import tensordsl as td
    op, arrays, options = ops_call(kind, p, inputs(kind, p))
    fn = getattr(td.ops, op)
    return lambda: fn(*arrays, **options)


def tuned(kind: str, p: dict) -> bool:
    """Whether our call compiles with a tuning record (shipped or local)."""
    import tensordsl as td
    op, arrays, options = ops_call(kind, p, inputs(kind, p))
    return td.ops.tuned_config(op, *arrays, **options) is not None


def layer_calls(model: str) -> list[tuple[str, list, dict]]:
    """Each distinct layer of ``model`` (``MODELS``) as its ``td.ops`` call, on unfilled
    arrays of its shapes: what ``tensordsl tune-layers benchmarks/models.py:<model>``
    tunes."""
    return [ops_call(kind, p, [np.empty(shape, np.float32)
                               for shape, _ in operand_shapes(kind, p)])
            for _, kind, p in MODELS[model]()]


def numpy_fn(kind: str, p: dict):
    arrays = inputs(kind, p)
    if kind == "dense":
        x, w, b = arrays
        return lambda: x @ w.T + b
    if kind == "batch_matmul":
        a, b = arrays
        if p.get("transpose_b"):
            return lambda: np.matmul(a, b.transpose(0, 2, 1))
        return lambda: np.matmul(a, b)
    if kind == "softmax":
        from .dense_ops import numpy_softmax
        return lambda: numpy_softmax(arrays[0])
    if kind == "layer_norm":
        x, g, b = arrays

        def layer_norm():
            mean = x.mean(-1, keepdims=True)
            var = x.var(-1, keepdims=True)
            return (x - mean) / np.sqrt(var + 1e-5) * g + b
        return layer_norm
    return None          # no numpy convolution


def torch_fn(kind: str, p: dict, channels_last: bool = False):
    import torch
    t = [torch.from_numpy(a) for a in inputs(kind, p)]
    F = torch.nn.functional
    if kind == "conv":
        x, w = t
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            w = w.contiguous(memory_format=torch.channels_last)
        return lambda: F.conv2d(x, w, stride=p["stride"], padding=p["pad"],
                                groups=p["groups"])
    if kind == "dense":
        return lambda: F.linear(*t)
    if kind == "batch_matmul":
        a, b = t
        if p.get("transpose_b"):
            return lambda: torch.bmm(a, b.transpose(1, 2))
        return lambda: torch.bmm(a, b)
    if kind == "softmax":
        return lambda: torch.softmax(t[0], -1)
    if kind == "layer_norm":
        x, g, b = t
        return lambda: F.layer_norm(x, (x.shape[-1],), g, b)
    raise KeyError(kind)


def check(kind: str, p: dict) -> float:
    """Our result against PyTorch's in float64: largest difference / largest magnitude."""
    import torch
    ours = np.asarray(tensordsl_fn(kind, p)(), dtype="float64")
    arrays = inputs(kind, p)
    with torch.no_grad():
        t = [torch.from_numpy(a.astype("float64")) for a in arrays]
        F = torch.nn.functional
        if kind == "conv":
            ref = F.conv2d(*t, stride=p["stride"], padding=p["pad"], groups=p["groups"])
        elif kind == "dense":
            ref = F.linear(*t)
        elif kind == "batch_matmul":
            a, b = t
            ref = torch.bmm(a, b.transpose(1, 2) if p.get("transpose_b") else b)
        elif kind == "softmax":
            ref = torch.softmax(t[0], -1)
        else:
            x, g, b = t
            ref = F.layer_norm(x, (x.shape[-1],), g, b)
    ref = ref.numpy()
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))
