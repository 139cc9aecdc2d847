"""What tuning a model's kernels buys (issue 19): ``tensordsl tune-model mlp`` spends one
trial budget over every kernel of the compiled training step (the task scheduler's
rounds by expected gain), then the step — the nn suite's MLP 64-256-256-10 at batch 256,
SGD with momentum — is timed with the records it wrote and with the templates' defaults
(``autotune.defaults_only``: no record read), each in its own fresh process, alternating
over ``ROUNDS`` rounds, best median of each. Also the tuning job's wall time.

    python -m benchmarks tune_model [--quick]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from .autodiff import MALLOC_ENV
from .harness import ROOT, bench_env, table, update_readme, write_results

THREADS = 2
ROUNDS = 3
TRIALS = 64
BATCH = 256

_TIME_STEP = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from benchmarks import nn_ops
from tensordsl.autotune import apply_history_best, defaults_only
db = {db!r}
with (apply_history_best(db) if db else defaults_only()):
    step = nn_ops.tensordsl_fn("mlp_step", "", dict(nn_ops.MLP, batch={batch}))
    for _ in range(5):
        step()                                  # (compiled within the block)
times = []
for _ in range(30):
    t = time.perf_counter()
    for _ in range(5):
        step()
    times.append((time.perf_counter() - t) / 5)
print(json.dumps({{"seconds": float(np.median(times))}}))
"""


def _env() -> dict:
    env = bench_env()
    env.update(MALLOC_ENV, OMP_NUM_THREADS=str(THREADS))
    return env


def _step_seconds(db: str | None) -> float:
    code = _TIME_STEP.format(root=str(ROOT), db=db, batch=BATCH)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def run(quick: bool = False) -> dict:
    rounds, trials = (1, 16) if quick else (ROUNDS, TRIALS)
    db = os.path.join(tempfile.mkdtemp(prefix="td-tune-model-"), "records.sqlite")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from tensordsl.cli import main; "
                    "sys.exit(main(sys.argv[1:]))", "tune-model", "mlp", "--trials",
                    str(trials), "--batch-size", str(BATCH), "--db", db], cwd=ROOT,
                   env=_env(), check=True, capture_output=True, text=True)
    tuning = time.perf_counter() - start
    best: dict = {}
    for _ in range(rounds):
        for system, source in (("defaults", None), ("tuned", db)):
            seconds = _step_seconds(source)
            best[system] = min(best.get(system, seconds), seconds)
    row = {"case": f"MLP 64-256-256-10 training step, batch {BATCH}",
           "trials": trials, "tuning_s": tuning, "defaults_ms": best["defaults"] * 1e3,
           "tuned_ms": best["tuned"] * 1e3, "speedup": best["defaults"] / best["tuned"]}
    print(row)
    path = write_results("tune-model", [row], {"threads": THREADS, "rounds": rounds})
    text = (f"{THREADS} threads. `tensordsl tune-model mlp --trials {trials} --batch-size "
            f"{BATCH}` into an empty database (tuning_s: its wall time), then the compiled "
            "training step timed with those records (tuned) and with the templates' "
            "defaults (no record read), each in its own process, best median of "
            f"{rounds} alternating rounds; speedup = defaults / tuned.\n\n"
            + table([row], ["case", "trials", "tuning_s", "defaults_ms", "tuned_ms",
                            "speedup"]))
    if not quick:
        update_readme("cpu-tune-model", text)
    print(text)
    print(f"\nwritten to {path}")
    return row
