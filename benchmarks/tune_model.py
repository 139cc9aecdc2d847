"""What tuning a model's kernels buys (issue 19): ``tensordsl tune-model mlp`` spends one
trial budget over every kernel of the compiled training step (the task scheduler's
rounds by expected gain), then the step — the nn suite's MLP 64-256-256-10, SGD with
momentum — is timed with the records it wrote (tuned) and with the templates' defaults
(``autotune.defaults_only``: no record read). Also the tuning job's wall time, and the
step's speedup as ``tune-model``'s own step check measured it (``autotune/in_step.py``).

    python -m benchmarks tune_model [--quick]

Both steps are compiled in one process and timed alternately there (``ROUNDS`` chunks of
``STEPS`` steps each, medians), in each of ``PROCESSES`` fresh processes. On this shared
machine a step's time moves by up to a quarter from one process to the next (3.7 ms in
one, 4.7 in the next), more than tuning changes it, so steps timed in separate processes
compare the processes as much as the kernels; side by side in one they see the same
placement and the same neighbours. Even so, two steps built alike (both with the
defaults) differ by up to 2% in one process, the one built first mostly the faster
(0.982-1.003 in four processes), so half the processes build the tuned step first. The
figure is the median over the processes of each one's defaults / tuned.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from .autodiff import MALLOC_ENV
from .harness import ROOT, bench_env, table, update_readme, write_results

THREADS = 2
TRIALS = 256
BATCHES = (256, 1024)
PROCESSES = 6
ROUNDS = 40
STEPS = 5

_TIME_STEPS = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from benchmarks import nn_ops
from tensordsl.autotune import apply_history_best, defaults_only
steps = {{}}
contexts = (("defaults", defaults_only), ("tuned", lambda: apply_history_best({db!r})))
for name, context in contexts[::{order}]:
    with context():
        step = nn_ops.tensordsl_fn("mlp_step", "", dict(nn_ops.MLP, batch={batch}))
        for _ in range(5):
            step()                              # (compiled within the block)
    steps[name] = step
times = {{name: [] for name in steps}}
for r in range({rounds}):
    for name in (("defaults", "tuned") if r % 2 == 0 else ("tuned", "defaults")):
        t = time.perf_counter()
        for _ in range({steps}):
            steps[name]()
        times[name].append((time.perf_counter() - t) / {steps})
print(json.dumps({{name: float(np.median(v)) for name, v in times.items()}}))
"""


def _env() -> dict:
    env = bench_env()
    env.update(MALLOC_ENV, OMP_NUM_THREADS=str(THREADS))
    return env


def _side_by_side(db: str, batch: int, rounds: int, tuned_first: bool) -> dict:
    """{"defaults": seconds, "tuned": seconds} of one fresh process (medians); the step
    built first there is ``tuned_first``'s."""
    code = _TIME_STEPS.format(root=str(ROOT), db=db, batch=batch, rounds=rounds,
                              steps=STEPS, order=-1 if tuned_first else 1)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def one_batch(batch: int, trials: int, processes: int, rounds: int) -> dict:
    db = os.path.join(tempfile.mkdtemp(prefix="td-tune-model-"), "records.sqlite")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import sys; from tensordsl.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", "tune-model", "mlp", "--trials",
                          str(trials), "--batch-size", str(batch), "--db", db], cwd=ROOT,
                         env=_env(), check=True, capture_output=True, text=True).stdout
    tuning = time.perf_counter() - start
    check = re.search(r"the step: .* tuned \(([\d.]+)x\)", out)
    runs = [_side_by_side(db, batch, rounds, tuned_first=k % 2 == 1)
            for k in range(processes)]
    speedups = [r["defaults"] / r["tuned"] for r in runs]
    middle = runs[speedups.index(statistics.median_low(speedups))]
    row = {"case": f"MLP 64-256-256-10 training step, batch {batch}", "trials": trials,
           "tuning_s": tuning, "check": float(check.group(1)) if check else None,
           "defaults_ms": middle["defaults"] * 1e3,
           "tuned_ms": middle["tuned"] * 1e3, "speedup": statistics.median(speedups),
           "per_process": ", ".join(f"{s:.3f}" for s in speedups)}
    print(row, flush=True)
    return row


def run(quick: bool = False) -> list:
    processes, rounds, trials = (1, 10, 16) if quick else (PROCESSES, ROUNDS, TRIALS)
    rows = [one_batch(batch, trials, processes, rounds) for batch in BATCHES]
    text = (f"{THREADS} threads. `tensordsl tune-model mlp --trials {trials} --batch-size "
            "B` into an empty database (tuning_s: its wall time, the local process pool, "
            "with its step check, which keeps for each kernel the configuration faster "
            "inside the step; check: the step's speedup as the check measured it), "
            "then the compiled training step built with those records (tuned) and with "
            "the templates' defaults (no record read) in one process, timed alternately "
            f"({rounds} chunks of {STEPS} steps each, medians), in {processes} fresh "
            "processes (half of them build the tuned step first); speedup = defaults / tuned, the median over the processes "
            "(per_process: each one's); defaults_ms and tuned_ms: the median process's.\n\n"
            + table(rows, ["case", "trials", "tuning_s", "check", "defaults_ms", "tuned_ms",
                           "speedup", "per_process"]))
    print(text)
    if not quick:   # (a quick run's figures replace neither the results nor the table)
        update_readme("cpu-tune-model", text)
        path = write_results("tune-model", rows, {"threads": THREADS, "processes": processes,
                                                  "rounds": rounds, "steps": STEPS})
        print(f"\nwritten to {path}")
    return rows


def main():
    import argparse
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune_model",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
