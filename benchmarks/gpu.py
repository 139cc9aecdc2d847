"""The GPU suite: our CUDA templates beside PyTorch CUDA (cuBLAS, cuDNN) on the same GPU,
same run. Needs a GPU and a CUDA build of PyTorch; elsewhere it says so and stops.

Each system is timed in this one process (no CPU thread pools are involved): medians of
launches after warm-up, each call followed by a device synchronization, so the times
include launch overhead for both sides.
"""
from __future__ import annotations

import numpy as np

from .harness import table, timeit, update_readme, write_results

CASES = [
    ("matmul", "sgemm 1024^3", {"M": 1024, "N": 1024, "K": 1024, "dtype": "float32"}),
    ("matmul", "sgemm 4096^3", {"M": 4096, "N": 4096, "K": 4096, "dtype": "float32"}),
    ("matmul", "fp16 tensor cores 4096^3", {"M": 4096, "N": 4096, "K": 4096,
                                            "dtype": "float16"}),
    ("conv2d", "1x64x56x56 k3 p1", {"x": (1, 64, 56, 56), "w": (64, 64, 3, 3), "pad": 1}),
    ("conv2d_nhwc", "fp16 8x56x56x64 k3 p1 (tensor cores)",
     {"x": (8, 56, 56, 64), "w": (3, 3, 64, 64), "pad": 1, "dtype": "float16"}),
    ("softmax", "4096x1024", {"shape": (4096, 1024)}),
    ("layer_norm", "4096x1024", {"shape": (4096, 1024)}),
]


def _ours(op, p, rng):
    import tensordsl as td
    from kernels import dense
    from schedules.cuda import schedule_for
    if op == "matmul":
        dt = p["dtype"]
        A = td.placeholder((p["M"], p["K"]), dtype=dt, name="A")
        B = td.placeholder((p["K"], p["N"]), dtype=dt, name="B")
        out = dense.matmul(A, B, out_dtype="float32" if dt != "float32" else None)
        ins = [rng.standard_normal((p["M"], p["K"])).astype(dt),
               rng.standard_normal((p["K"], p["N"])).astype(dt)]
        phs = [A, B]
    elif op == "conv2d":
        X, W = td.placeholder(p["x"], name="X"), td.placeholder(p["w"], name="W")
        out = dense.conv2d_nchw(X, W, padding=p["pad"])
        ins = [rng.standard_normal(p["x"]).astype("float32"),
               (rng.standard_normal(p["w"]) * 0.1).astype("float32")]
        phs = [X, W]
    elif op == "conv2d_nhwc":       # the implicit-GEMM form: tensor cores in float16
        dt = p["dtype"]
        X = td.placeholder(p["x"], dtype=dt, name="X")
        W = td.placeholder(p["w"], dtype=dt, name="W")
        out = dense.conv2d_nhwc(X, W, padding=p["pad"], form="implicit_gemm")
        ins = [rng.standard_normal(p["x"]).astype(dt),
               (rng.standard_normal(p["w"]) * 0.1).astype(dt)]
        phs = [X, W]
    else:
        X = td.placeholder(p["shape"], name="X")
        if op == "softmax":
            out, phs, ins = dense.softmax(X), [X], [rng.standard_normal(p["shape"])
                                                   .astype("float32")]
        else:
            g = td.placeholder(p["shape"][-1:], name="g")
            b = td.placeholder(p["shape"][-1:], name="b")
            out, phs = dense.layer_norm(X, g, b), [X, g, b]
            ins = [rng.standard_normal(s).astype("float32")
                   for s in (p["shape"], p["shape"][-1:], p["shape"][-1:])]
    name = "conv2d_nchw" if op == "conv2d" else op
    f = td.build(schedule_for(name, out), phs + [out], target="cuda")
    args = [td.nd.array(a, device="cuda") for a in ins]
    y = td.nd.empty([int(d.value) for d in out.shape], out.dtype, device="cuda")
    return (lambda: f(*args, y)), ins, y


def _torch(op, p, ins):
    import torch
    t = [torch.from_numpy(a).cuda() for a in ins]
    if op == "matmul":
        fn = lambda: torch.matmul(*t)  # noqa: E731
    elif op == "conv2d":
        fn = lambda: torch.nn.functional.conv2d(t[0], t[1], padding=p["pad"])  # noqa: E731
    elif op == "conv2d_nhwc":
        # cuDNN's tensor-core path in its best layout: channels-last activations, the
        # weights (F, C, KH, KW) in channels-last too; the result viewed back as NHWC
        x = t[0].permute(0, 3, 1, 2)                       # NHWC memory, NCHW view
        w = t[1].permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
        def fn():
            return torch.nn.functional.conv2d(x, w, padding=p["pad"]).permute(0, 2, 3, 1)
    elif op == "softmax":
        fn = lambda: torch.softmax(t[0], -1)  # noqa: E731
    else:
        fn = lambda: torch.nn.functional.layer_norm(t[0], t[0].shape[-1:], t[1], t[2])  # noqa: E731

    def synced():
        fn()
        torch.cuda.synchronize()
    return synced, fn


def run() -> list[dict]:
    from targets.cuda import driver
    try:
        import torch
        has_torch_cuda = torch.cuda.is_available()
    except ImportError:
        has_torch_cuda = False
    if not driver.is_available() or not has_torch_cuda:
        raise SystemExit("python -m benchmarks gpu: needs an NVIDIA GPU and a CUDA build of "
                         "PyTorch (none here)")
    dev = driver.device(0)
    rng = np.random.default_rng(0)
    rows = []
    for op, label, p in CASES:
        ours, ins, y = _ours(op, p, rng)
        theirs, raw = _torch(op, p, ins)
        want = raw().float().cpu().numpy()
        ours()
        err = float(np.max(np.abs(y.numpy().astype("float32") - want)))
        t_ours, t_theirs = timeit(ours, repeat=30, warmup=5), timeit(theirs, repeat=30, warmup=5)
        row = {"operator": op, "shape": label, "ours_ms": t_ours * 1e3,
               "torch_ms": t_theirs * 1e3, "vs_torch": t_theirs / t_ours, "max_abs_err": err}
        if op == "matmul":
            row["TFLOP/s"] = 2.0 * p["M"] * p["N"] * p["K"] / t_ours / 1e12
        rows.append(row)
        print(row)
    header = (f"GPU: {dev.name} ({dev.arch}). vs_torch = PyTorch CUDA time / our time, same "
              "run, same process; every call synchronized.")
    text = header + "\n\n" + table(rows, ["operator", "shape", "ours_ms", "torch_ms",
                                          "vs_torch", "TFLOP/s", "max_abs_err"])
    print(text)
    update_readme("gpu", text)
    path = write_results("gpu", rows, {"gpu": dev.name, "arch": dev.arch})
    print(f"written to {path}")
    return rows
