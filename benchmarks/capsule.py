"""The capsule suite (issue 16): dynamic routing at the paper's sizes, forward and
forward + backward, beside numpy, PyTorch eager and ``torch.compile``
(``capsule_ops.py`` says what each side computes). Each system in its own fresh process,
the same thread count for all (``OMP_NUM_THREADS``, ``torch.set_num_threads``), the
systems alternating over ``ROUNDS`` rounds, each keeping its best median after warm-up.
"""
from __future__ import annotations

import os

from .harness import compare, measure, table, update_readme, write_results

THREADS = 2
ROUNDS = 2
CASES = [
    ("forward", ["tensordsl", "numpy", "torch", "torchcompile"],
     "vs_torch >= 5, vs_torchcompile >= 2"),
    ("backward", ["tensordsl", "torch", "torchcompile"], "vs_torch >= 3"),
]
COLUMNS = ["routing", "ours_ms", "numpy_ms", "vs_numpy", "torch_ms", "vs_torch",
           "torchcompile_ms", "vs_torchcompile", "max_rel_err", "goal"]


def run(quick: bool = False, only: str | None = None) -> list[dict]:
    from .capsule_ops import PAPER
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    rounds = 1 if quick else ROUNDS
    print(f"threads: {THREADS} (OMP_NUM_THREADS and torch.set_num_threads, every process)")
    err = measure("capsulecheck", "torch", params=PAPER, threads=THREADS)["error"]
    rows = []
    for part, systems, goal in CASES:
        if only and only != part:
            continue
        runs = compare("capsule", systems, rounds, part=part, params=PAPER, threads=THREADS)
        ours = runs["tensordsl"]["seconds"]
        row = {"routing": f"{part} (32 x 1152x8 -> 10x16, 3 iterations)",
               "ours_ms": ours * 1e3, "max_rel_err": err, "goal": goal}
        for system in systems[1:]:
            row[f"{system}_ms"] = runs[system]["seconds"] * 1e3
            row[f"vs_{system}"] = runs[system]["seconds"] / ours
        rows.append(row)
        print(row)
    path = write_results("capsule", rows, {"threads": THREADS})
    text = (f"{THREADS} threads for every runtime. vs_X = X's time / ours (above 1: we are "
            "faster), same run; backward = forward + the gradients of sum(v * head) w.r.t. "
            "u and W (ours: `td.ops.capsule_routing_backward`, derived by `td.vjp`; "
            "PyTorch: autograd). max_rel_err: our forward and gradients against PyTorch "
            "autograd in float64. Each system in its own process, best median of "
            f"{rounds} alternating rounds.\n\n" + table(rows, COLUMNS))
    update_readme("cpu-capsule", text)
    print(text)
    print(f"written to {path}")
    return rows
