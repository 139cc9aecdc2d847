"""The capsule suite (issue 16): dynamic routing at the paper's sizes, forward and
forward + backward, beside numpy, PyTorch eager and ``torch.compile``
(``capsule_ops.py`` says what each side computes), and one training step of the CapsNet
that ``tensordsl train capsnet`` trains (``capsnet_ops.py``). Each system in its own
fresh process, the same thread count for all (``OMP_NUM_THREADS``,
``torch.set_num_threads``), the systems alternating over ``ROUNDS`` rounds, each keeping
its best median after warm-up. Before timing, each case's results are checked against
PyTorch's autograd in float64 (``max_rel_err``).
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
STEP_SYSTEMS = ["tensordsl", "torch", "torchcompile"]
COLUMNS = ["case", "ours_ms", "numpy_ms", "vs_numpy", "torch_ms", "vs_torch",
           "torchcompile_ms", "vs_torchcompile", "max_rel_err", "goal"]


def run(quick: bool = False, only: str | None = None) -> list[dict]:
    """``only``: "forward", "backward" or "step" (the CapsNet training step)."""
    from .capsule_ops import PAPER
    from .capsnet_ops import CAPSNET, label
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    rounds = 1 if quick else ROUNDS
    print(f"threads: {THREADS} (OMP_NUM_THREADS and torch.set_num_threads, every process)")
    routing = [case for case in CASES if not only or only == case[0]]
    rows = []
    if routing:
        err = measure("capsulecheck", "torch", params=PAPER, threads=THREADS)["error"]
    for part, systems, goal in routing:
        runs = compare("capsule", systems, rounds, part=part, params=PAPER, threads=THREADS)
        rows.append(_row(f"{part} (32 x 1152x8 -> 10x16, 3 iterations)", runs, systems,
                         err, goal))
        print(rows[-1])
    if not only or only == "step":
        err = measure("capsnetcheck", "torch", params=CAPSNET, threads=THREADS)["error"]
        runs = compare("capsnet", STEP_SYSTEMS, rounds, params=CAPSNET, threads=THREADS)
        rows.append(_row(label(CAPSNET), runs, STEP_SYSTEMS, err, "—"))
        print(rows[-1])
    path = write_results("capsule", rows, {"threads": THREADS})
    text = (f"{THREADS} threads for every runtime. vs_X = X's time / ours (above 1: we are "
            "faster), same run; backward = forward + the gradients of sum(v * head) w.r.t. "
            "u and W (ours: `td.ops.capsule_routing_backward`, derived by `td.vjp`; "
            "PyTorch: autograd). train step: one Adam step of the CapsNet of `tensordsl "
            "train capsnet` (conv 1->32, primary capsules 8x8 dims, 10x16 digit capsules "
            "with 3 routing iterations, margin loss) on its first digits batch, both sides "
            "from our initial weights; ours `nn.TrainStep`, PyTorch `zero_grad(); "
            "loss.backward(); opt.step()` with the model and loss eager or under "
            "`torch.compile` (Adam eager). max_rel_err: our forward and gradients (train "
            "step: loss and every parameter's gradient, float32) against PyTorch autograd "
            "in float64. Each system in its own process, best median of "
            f"{rounds} alternating rounds.\n\n" + table(rows, COLUMNS))
    if not only:
        update_readme("cpu-capsule", text)
    print(text)
    print(f"written to {path}")
    return rows


def _row(case: str, runs: dict, systems: list, err: float, goal: str) -> dict:
    """One table row; a system that could not run (``fails``) shows its reason."""
    ours = runs["tensordsl"]["seconds"]
    row = {"case": case, "ours_ms": ours * 1e3, "max_rel_err": err, "goal": goal}
    for system in systems[1:]:
        r = runs[system]
        if "fails" in r:
            row[f"{system}_ms"], row[f"vs_{system}"] = f"fails: {r['fails']}", "—"
        else:
            row[f"{system}_ms"] = r["seconds"] * 1e3
            row[f"vs_{system}"] = r["seconds"] / ours
    return row
