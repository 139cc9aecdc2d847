"""The models suite (issue 17): every distinct layer of ResNet-50 (batch 1 and 8),
MobileNetV2 and BERT-base at its shape (``model_ops.py``), ours beside PyTorch CPU (NCHW
and channels_last for the convolutions) and numpy where it has the operation.

Each system times all of a model's layers in one fresh process of its own (a process
per layer would spend the suite starting PyTorch), the systems alternating over
``ROUNDS`` rounds, each layer keeping each system's best median after warm-up. Ours runs
twice: with the templates' default configurations (``autotune.defaults_only()``: what a
shape nobody tuned gets) and with the records in force (shipped or local; the "tuned"
column says whether one applied). Before timing, each layer's result is checked against
PyTorch in float64.
"""
from __future__ import annotations

import math
import os

from .autodiff import MALLOC_ENV
from .harness import measure, table, update_readme, write_results

THREADS = 2
ROUNDS = 5
# system name -> (worker system, options)
SYSTEMS = {
    "ours_default": ("tensordsl", {"records": False}),
    "ours": ("tensordsl", {"records": True}),
    "torch": ("torch", {}),
    "torch_cl": ("torch", {"channels_last": True}),
    "numpy": ("numpy", {}),
}
COLUMNS = ["model", "layer", "GFLOP", "ours_default_ms", "ours_ms", "tuned", "torch_ms",
           "vs_torch_default", "vs_torch", "torch_cl_ms", "vs_torch_cl_default",
           "vs_torch_cl", "numpy_ms", "vs_numpy", "max_rel_err"]
# the goals: (model, layer kinds, against, ours, threshold)
GOALS = [
    ("resnet50", ("conv",), "torch", "ours_default", 1.0),
    ("resnet50", ("conv",), "torch_cl", "ours_default", 0.9),
    ("resnet50", ("conv",), "torch_cl", "ours", 1.1),
    ("bert", ("dense", "batch_matmul", "softmax", "layer_norm"), "torch", "ours_default", 1.0),
]


def run(quick: bool = False, only: str | None = None) -> list[dict]:
    from .model_ops import MODELS
    os.environ["OMP_NUM_THREADS"] = str(THREADS)   # inherited by every worker process
    os.environ.update(MALLOC_ENV)   # for every system alike: see benchmarks/autodiff.py
    rounds = 1 if quick else ROUNDS
    print(f"threads: {THREADS} (OMP_NUM_THREADS and torch.set_num_threads, every process); "
          "glibc keeps freed blocks up to 32 MiB in the heap (MALLOC_ENV), every process")
    rows = []
    for model, layers in MODELS.items():
        if only and only != model:
            continue
        rows += _model_rows(model, layers(), rounds)
    summary = _summary(rows)
    path = write_results("models", rows, {"threads": THREADS, "summary": summary})
    text = (f"{THREADS} threads for every runtime. vs_X = X's time / ours (above 1: we are "
            "faster), same run; `_default`: ours with the templates' default "
            "configurations (no record read); `tuned`: whether a record (shipped in "
            "`schedules/records/` or local) applied to our tuned run. Each system times "
            f"all of a model's layers in its own process, best median of {rounds} "
            "alternating rounds; every side allocates its result, from the heap (glibc's "
            "mmap threshold 32 MiB, every process). max_rel_err: ours against PyTorch in "
            "float64.\n\n" + _summary_text(summary) + "\n\n"
            + table(rows, COLUMNS))
    if not only:
        update_readme("cpu-models", text)
    print(text)
    print(f"written to {path}")
    return rows


def _model_rows(model: str, layers: list, rounds: int) -> list[dict]:
    from .model_ops import flops
    convs = any(kind == "conv" for _, kind, _ in layers)
    names = ["ours_default", "ours", "torch"] + (["torch_cl"] if convs else []) + \
        (["numpy"] if not all(kind == "conv" for _, kind, _ in layers) else [])
    spec = [(kind, p) for _, kind, p in layers]
    errors = measure("layercheck", "torch", layers=spec, threads=THREADS)["errors"]
    best: dict = {}
    tuned = None
    for _ in range(rounds):
        for name in names:
            system, options = SYSTEMS[name]
            result = measure("layers", system, layers=spec, options=options, threads=THREADS)
            for k, seconds in enumerate(result["seconds"]):
                if seconds is not None:
                    best[name, k] = min(best.get((name, k), math.inf), seconds)
            if name == "ours":
                tuned = result["tuned"]
    rows = []
    for k, (label, kind, p) in enumerate(layers):
        row = {"model": model, "layer": label, "kind": kind, "GFLOP": flops(kind, p) / 1e9,
               "tuned": "yes" if tuned and tuned[k] else "", "max_rel_err": errors[k]}
        for name in names:
            if (name, k) in best:
                row[f"{name}_ms"] = best[name, k] * 1e3
        for name in names[2:]:
            theirs = row.get(f"{name}_ms")
            if theirs is None:
                continue
            row[f"vs_{name}"] = theirs / row["ours_ms"]
            if name.startswith("torch"):
                row[f"vs_{name}_default"] = theirs / row["ours_default_ms"]
        rows.append(row)
        print({k: v for k, v in row.items() if k in COLUMNS})
    return rows


def _summary(rows: list[dict]) -> list[dict]:
    """Per goal: the geometric mean of the ratios and the smallest one."""
    out = []
    for model, kinds, against, ours, threshold in GOALS:
        column = f"vs_{against}" + ("_default" if ours == "ours_default" else "")
        ratios = [r[column] for r in rows if r["model"] == model and r["kind"] in kinds
                  and column in r]
        if not ratios:
            continue
        geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        out.append({"model": model, "against": against, "ours": ours, "layers": len(ratios),
                    "geomean": geomean, "min": min(ratios), "goal": threshold,
                    "met": geomean >= threshold})
    return out


def _summary_text(summary: list[dict]) -> str:
    lines = ["| model | ours | against | layers | geometric mean | smallest | goal |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['ours']} | {s['against']} | {s['layers']} | "
                     f"{s['geomean']:.2f} | {s['min']:.2f} | >= {s['goal']} "
                     f"({'met' if s['met'] else 'not met'}) |")
    return "\n".join(lines)


# ``tensordsl tune-layers benchmarks/models.py:resnet50``: a model's layers as td.ops calls
def resnet50():
    from .model_ops import layer_calls
    return layer_calls("resnet50")


def resnet50_batch1():
    """Batch 1's layers alone: a budget over the whole model goes mostly to batch 8's
    (ten times the time share), while each layer counts once in the geometric mean."""
    return [call for call in resnet50() if call[1][0].shape[0] == 1]


def mobilenetv2():
    from .model_ops import layer_calls
    return layer_calls("mobilenetv2")


def bert():
    from .model_ops import layer_calls
    return layer_calls("bert")
