"""The nn suite (issue 14): a training step of the MLP and of the CNN that
``tensordsl train`` trains, and the forward and backward of Linear and Conv2d, beside
PyTorch eager on the CPU.

Each measurement runs in its own fresh process with the same thread count for both
runtimes (``OMP_NUM_THREADS``, ``torch.set_num_threads``), the systems alternating over
``ROUNDS`` rounds, each keeping its best median after warm-up. Both start from the same
weights and use the same optimizer (SGD, momentum 0.9); ours is ``nn.TrainStep`` (one
compiled program per step), theirs ``zero_grad(); loss.backward(); opt.step()``. Before
timing, our losses (or outputs and gradients) are compared with PyTorch's.
"""
from __future__ import annotations

import os

from .autodiff import MALLOC_ENV
from .harness import compare, measure, table, update_readme, write_results

THREADS = 2
ROUNDS = 3
CASES = [
    ("mlp_step", "", "MLP 64-256-256-10, batch 256, SGD momentum"),
    ("cnn_step", "", "CNN conv16-pool-conv32-pool-fc10 on 8x8, batch 256, SGD momentum"),
    ("linear", "forward", "Linear 256->256, batch 256: forward"),
    ("linear", "backward", "Linear 256->256, batch 256: forward + backward"),
    ("conv2d", "forward", "Conv2d 16->32 3x3 p1 on 64x16x8x8: forward"),
    ("conv2d", "backward", "Conv2d 16->32 3x3 p1 on 64x16x8x8: forward + backward"),
]


def _params(case: str) -> dict:
    from . import nn_ops
    return {"mlp_step": nn_ops.MLP, "cnn_step": nn_ops.CNN, "linear": nn_ops.LINEAR,
            "conv2d": nn_ops.CONV}[case]


def run(quick: bool = False, only: str | None = None) -> list[dict]:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    os.environ.update(MALLOC_ENV)
    rounds = 1 if quick else ROUNDS
    print(f"threads: {THREADS} (OMP_NUM_THREADS and torch.set_num_threads, every process)")
    rows = []
    for case, part, label in CASES:
        if only and only != case:
            continue
        params = _params(case)
        err = measure("nncheck", "torch", model=case, params=params, threads=THREADS)["error"]
        runs = compare("nn", ["tensordsl", "torch"], rounds, model=case, part=part,
                       params=params, threads=THREADS)
        best = {system: r["seconds"] for system, r in runs.items()}
        row = {"case": label, "tensordsl_ms": best["tensordsl"] * 1e3,
               "torch_ms": best["torch"] * 1e3,
               "speedup": best["torch"] / best["tensordsl"], "max_rel_err": err}
        rows.append(row)
        print(row)
    path = write_results("nn", rows, {"threads": THREADS})
    text = (f"{THREADS} threads for both runtimes. speedup = PyTorch eager's time / ours "
            "(above 1: we are faster; goals: MLP step >= 1.0, CNN step >= 0.8). Steps: ours "
            "`nn.TrainStep`, PyTorch `zero_grad(); cross_entropy(model(x), y).backward(); "
            "opt.step()`; layers: ours the eager tape (`nn.Linear`, `loss.backward`). "
            "max_rel_err: our losses (5 steps) or outputs and weight gradients against "
            f"PyTorch's. Each system in its own process, best median of {rounds} "
            "alternating rounds. No tuned records are used by these rows unless shipped "
            "ones match.\n\n"
            + table(rows, ["case", "tensordsl_ms", "torch_ms", "speedup", "max_rel_err"]))
    if not only:
        update_readme("cpu-nn", text)
    print(text)
    print(f"\nwritten to {path}")
    return rows
