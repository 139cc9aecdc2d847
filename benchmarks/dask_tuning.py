"""Tuning throughput on a Dask LocalCluster: the wall time of one tuning job with one
worker process and with two (issue 19's line: two workers take at most 0.7x the time
of one), beside the local process pool (no cluster).

    python -m benchmarks dask [--quick]
    python -m benchmarks.dask_tuning [--rounds 3]

Two jobs: ``mlp``, what ``tensordsl tune-model mlp --trials 192`` tunes (the 23 distinct
kernels of the MLP's compiled training step, batch 256: a first round of 8 trials each,
the rest by expected gain), and ``kernels``, four small
kernels of an MLP and an attention block for 48 trials (its rounds after the first go
two tasks at a time, by expected gain). Each job runs in its own fresh process
(``--one JOB CLUSTER``), with the same seed and budget, an empty record database and an
empty compile cache (so every candidate is really compiled); the systems alternate
(1 2 local 1 2 local ...) and each one's figure is its best wall time, the cluster's
start and close included (the model's kernels are collected before the clock starts).
With two workers, worker 0 measures (and builds when no measurement is ready) while
worker 1 builds and sends each kernel it compiled to worker 0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from .harness import RESULTS, ROOT, bench_env, table, update_readme

# a small model's distinct kernels: products of the sizes an MLP and an attention
# block have, and an elementwise pass (builds dominate: about 0.1-0.5 s each)
KERNELS = [("dense", [(64, 256), (256, 256), (256,)]),
           ("dense", [(64, 256), (128, 256), (128,)]),
           ("matmul", [(128, 128), (128, 128)]),
           ("softmax", [(64, 256)])]
JOBS = {"mlp": 192, "kernels": 48}     # job: trials
SYSTEMS = ("local:1", "local:2", "local")


def job_workloads(job: str) -> list:
    if job == "mlp":
        from tensordsl.nn.tune_model import step_workloads
        return [w[0] if isinstance(w, tuple) else w
                for w in step_workloads("mlp", 256, "compiled")]
    from tensordsl.autotune.workload import Workload
    return [Workload(op, [("array", s, "float32") for s in shapes]) for op, shapes in KERNELS]


def one_job(job: str, cluster: str, trials: int) -> dict:
    """Tune ``job``'s workloads for ``trials`` on ``cluster`` (``local``: the process
    pool); the wall time and the trials done."""
    from tensordsl.autotune.records import RecordDB
    from tensordsl.autotune.scheduler import tune_tasks
    workloads = job_workloads(job)
    db = RecordDB(os.path.join(tempfile.mkdtemp(prefix="td-dask-bench-"), "r.sqlite"))
    start = time.perf_counter()
    executor = None
    if cluster != "local":
        from tensordsl.autotune.dask_backend import DaskExecutor
        executor = DaskExecutor(cluster, timeout=60)
    try:
        tune_tasks(workloads, trials, db, executor=executor, timeout=60, seed=0)
    finally:
        if executor is not None:
            executor.close()
    return {"seconds": time.perf_counter() - start, "trials": len(db.trials()),
            "kernels": len(workloads)}


def run(quick: bool = False, rounds: int = 3) -> dict:
    rounds = 1 if quick else rounds
    jobs = {job: (16 if quick else trials) for job, trials in JOBS.items()}
    best: dict = {}
    runs: dict = {}       # (job, system) -> seconds of each round
    for _ in range(rounds):
        for job, trials in jobs.items():
            for system in SYSTEMS:
                env = bench_env()
                env["TENSORDSL_CACHE_DIR"] = tempfile.mkdtemp(prefix="td-dask-cache-")
                out = subprocess.run([sys.executable, "-m", "benchmarks.dask_tuning",
                                      "--one", job, system, "--trials", str(trials)],
                                     cwd=ROOT, env=env, check=True, capture_output=True,
                                     text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                runs.setdefault((job, system), []).append(result["seconds"])
                if (job, system) not in best or \
                        result["seconds"] < best[job, system]["seconds"]:
                    best[job, system] = result
    ratios = {job: best[job, "local:2"]["seconds"] / best[job, "local:1"]["seconds"]
              for job in jobs}
    # each round's two runs were next to each other in time: their ratio, round by round,
    # shows how far the machine's noise moves the figure
    paired = {job: [two / one for one, two in zip(runs[job, "local:1"], runs[job, "local:2"])]
              for job in jobs}
    summary = {"jobs": jobs, "rounds": rounds, "kernels": repr(KERNELS),
               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "seconds": {f"{job} {system}": r["seconds"] for (job, system), r in best.items()},
               "runs": {f"{job} {system}": times for (job, system), times in runs.items()},
               "two_workers_over_one": ratios, "round_by_round": paired}
    rows = []
    for job in jobs:
        for system in SYSTEMS:
            r = best[job, system]
            print(f"{job:>8} {system:>8}: {r['seconds']:7.1f} s  ({r['trials']} trials)")
            rows.append({"job": job, "kernels": r["kernels"], "system": system,
                         "seconds": r["seconds"], "trials": r["trials"],
                         "over_one_worker": r["seconds"] / best[job, "local:1"]["seconds"]})
        print(f"{job:>8}: two workers / one: {ratios[job]:.2f} (issue 19 asks for <= 0.7); "
              f"round by round: {', '.join(f'{x:.2f}' for x in paired[job])}")
    if not quick:   # (a quick run's figures replace neither the results nor the table)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "dask-tuning.json").write_text(json.dumps(summary, indent=1) + "\n")
        update_readme("cpu-dask", f"{os.cpu_count()} cores; each job in a fresh process "
                      f"with empty caches, best wall time of {rounds} alternating rounds. "
                      "Two workers / one: "
                      + ", ".join(f"{job} **{ratios[job]:.3f}**" for job in jobs)
                      + "; round by round (the two runs of a round next to each other): "
                      + "; ".join(f"{job} " + ", ".join(f"{x:.2f}" for x in paired[job])
                                  for job in jobs) + ".\n\n"
                      + table(rows, ["job", "kernels", "system", "seconds", "trials",
                                     "over_one_worker"]))
    return summary


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_tuning",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=48, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("JOB", "CLUSTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_job(*args.one, args.trials)))
    else:
        run(args.quick, args.rounds)


if __name__ == "__main__":
    main()
