"""The autodiff suite (issue 13): derived backward kernels beside their forward and
beside PyTorch CPU's autograd, and ``td.hvp`` of a 2-layer MLP beside one gradient and
beside ``torch.func.jvp(torch.func.grad(loss))``.

Each measurement runs in its own fresh process with the same thread count for every
runtime (``OMP_NUM_THREADS``, ``torch.set_num_threads``), systems alternating, each
keeping its best median after warm-up over ``ROUNDS`` rounds; every side allocates its
results on each call. Before timing, our gradients are compared with PyTorch's (a fast
wrong kernel never reaches the table).
"""
from __future__ import annotations

import os

from .harness import measure, table, update_readme, write_results

THREADS = 2
# glibc: blocks up to 32 MiB come from the heap and freed memory stays there, for every
# system alike: both sides allocate their results on every call, and neither pays the
# first-touch page faults of a fresh mapping each time (~7 ms for softmax's 16 MiB here,
# more than the kernels themselves, DESIGN.md)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
CASES = [
    ("matmul", "1024^3", {"M": 1024, "N": 1024, "K": 1024}),
    ("matmul", "512^3", {"M": 512, "N": 512, "K": 512}),
    ("conv2d", "1x64x56x56 k3 p1", {"x": (1, 64, 56, 56), "w": (64, 64, 3, 3), "pad": 1}),
    ("softmax", "4096x1024", {"shape": (4096, 1024)}),
]
MLP_LABEL = "MLP 256x784-256-10 tanh, hvp wrt w1"
ROUNDS = 5



def _row(case, shape, err, best, parts, ratios) -> dict:
    """A table row: each part's best median in ms, and each ratio ``a / b`` of two."""
    row = {"case": case, "shape": shape, "max_rel_err": err}
    for s in parts:
        if s in best:
            row[f"{s}_ms"] = best[s] * 1e3
    for name, (a, b) in ratios.items():
        if a in best and b in best:
            row[name] = best[a] / best[b]
    return row

def _best(case, systems, params, rounds) -> dict:
    best: dict = {}
    for _ in range(rounds):
        for system, part in systems:
            kind = "torch" if system.startswith("torch") else "tensordsl"
            try:
                r = measure("grad", kind, op=case, part=part, params=params,
                            threads=THREADS)
            except RuntimeError as err:
                print(f"{case} {part}: failed ({str(err).splitlines()[-1][:160]})")
                continue
            if system not in best or r["seconds"] < best[system]:
                best[system] = r["seconds"]
    return best


def run(quick: bool = False, only: str | None = None) -> list[dict]:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)   # inherited by every worker process
    os.environ.update(MALLOC_ENV)
    rounds = 1 if quick else ROUNDS
    print(f"threads: {THREADS} (OMP_NUM_THREADS and torch.set_num_threads, every process); "
          f"{' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}")
    rows = []
    for case, label, params in CASES:
        if only and only != case:
            continue
        err = measure("gradcheck", "torch", op=case, params=params,
                      threads=THREADS)["error"]
        systems = [("forward", "forward"), ("backward", "backward"),
                   ("torch_backward", "torch_backward"), ("torch_forward", "torch_forward")]
        best = _best(case, systems, params, rounds)
        rows.append(_row(case, label, err, best, ("forward", "backward", "torch_forward",
                                                  "torch_backward"),
                         {"bwd/fwd": ("backward", "forward"),
                          "vs_torch_bwd": ("torch_backward", "backward")}))
        row = rows[-1]
        print(row)
    if not only or only == "mlp":
        params = dict(_mlp_params())
        err = measure("gradcheck", "torch", op="mlp", params=params,
                      threads=THREADS)["error"]
        systems = [("grad", "grad"), ("hvp", "hvp"), ("torch_grad", "torch_grad"),
                   ("torch_hvp", "torch_hvp")]
        best = _best("mlp", systems, params, rounds)
        rows.append(_row("hvp", MLP_LABEL, err, best, ("grad", "hvp", "torch_grad",
                                                       "torch_hvp"),
                         {"hvp/grad": ("hvp", "grad"), "vs_torch_hvp": ("torch_hvp", "hvp")}))
        row = rows[-1]
        print(row)
    path = write_results("autodiff", rows, {"threads": THREADS})
    ops_cols = ["case", "shape", "forward_ms", "backward_ms", "bwd/fwd", "torch_forward_ms",
                "torch_backward_ms", "vs_torch_bwd", "max_rel_err"]
    hvp_cols = ["case", "shape", "grad_ms", "hvp_ms", "hvp/grad", "torch_grad_ms",
                "torch_hvp_ms", "vs_torch_hvp", "max_rel_err"]
    text = (f"{THREADS} threads for every runtime. backward = our derived gradients of every "
            "input (`td.ops.<op>_backward`), bwd/fwd = our backward time / our forward "
            "time (goal: <= 3); vs_torch_bwd = PyTorch's `autograd.grad` time / ours (above "
            "1: we are faster; goals: conv2d >= 1.0, matmul >= 0.9); max_rel_err = our "
            "gradients against PyTorch's. Each system in its own process, best median of "
            f"{rounds} alternating rounds, both sides allocating their results (from the "
            "heap: glibc's mmap threshold 32 MiB, for every process).\n\n"
            + table([r for r in rows if r["case"] != "hvp"], ops_cols) + "\n\n"
            "hvp/grad = one `td.hvp` evaluation / one `td.grad` evaluation (goal: <= 4); "
            "vs_torch_hvp = `torch.func.jvp(torch.func.grad(loss))` time / ours.\n\n"
            + table([r for r in rows if r["case"] == "hvp"], hvp_cols))
    if not only:
        update_readme("cpu-autodiff", text)
    print(text)
    print(f"\nwritten to {path}")
    return rows


def _mlp_params() -> dict:
    from .autodiff_ops import MLP
    return MLP
