"""The sparse suite (issue 15): SpMM, SpMV, SDDMM and sparse + sparse on CPU, ours
(``td.ops``) beside scipy.sparse, numpy and torch.sparse (CSR), on the matrices of
``sparse_matrices`` (uniform random, power-law, and graphs of real data and of documented
generators).

Each measurement runs in its own fresh process with the same thread count for every
runtime that has threads (``OMP_NUM_THREADS``, ``torch.set_num_threads``; scipy.sparse's
kernels and numpy's gather are single-threaded), systems alternating over ``ROUNDS``
rounds, each keeping its best median after warm-up; every side allocates its result on
each call. Before timing, every side's result is compared with scipy's in float64: a
competitor off by more than ``COMPETITOR_TOL`` is a bug in this suite and stops it; our
side off by more than ``OURS_TOL`` is reported and not timed.

A case may list several option dicts for our side (``SKEWED``: the row-split and the
nonzero-balanced schedule); each becomes a row beside the same competitor timings, its
``schedule`` column naming the option, "(ignored)" where ``td.ops`` did not take it, and
``vs_rows`` comparing it with the row split.
"""
from __future__ import annotations

import os

from .autodiff import MALLOC_ENV
from .harness import measure, table, update_readme, write_results

THREADS = 2
ROUNDS = 3
OURS_TOL = 1e-3
COMPETITOR_TOL = 1e-4
DEFAULT = [{}]
SKEWED = [{"schedule": "rows"}, {"schedule": "nonzeros"}]
# SpMV's three schedules: the row split, the nonzero split and sliced rows (its default)
SPMV_ALL = [*SKEWED, {"schedule": "sliced"}]
SPMV_UNIFORM = [{}, *SKEWED]
UNIFORM = {"matrix": "uniform", "f": 64}
# (op, matrix label, params, our options, competitors, goal)
CASES = [
    ("spmm", "uniform 4096^2 1%", UNIFORM, DEFAULT, ["scipy", "torch"],
     "vs_scipy >= 3, vs_torch >= 1.5"),
    ("spmv", "uniform 4096^2 1%", {"matrix": "uniform"}, SPMV_UNIFORM, ["scipy", "torch"],
     "vs_scipy >= 1.5, vs_torch >= 1.2"),
    ("sddmm", "uniform 4096^2 1%", UNIFORM, DEFAULT, ["numpy", "torch"],
     ">= 2 x the best"),
    ("sparse_add", "uniform + uniform_b", {"matrix": "uniform", "matrix_b": "uniform_b"},
     DEFAULT, ["scipy", "torch"], "vs_scipy >= 1"),
    ("spmm", "rmat 16384^2 (power law)", {"matrix": "rmat", "f": 64}, SKEWED,
     ["scipy", "torch"], "nonzeros faster than rows"),
    ("spmv", "rmat 16384^2 (power law)", {"matrix": "rmat"}, SPMV_ALL, ["scipy", "torch"],
     "nonzeros faster than rows"),
    ("spmm", "barabasi 16384^2", {"matrix": "barabasi", "f": 64}, SKEWED,
     ["scipy", "torch"], ""),
    ("spmv", "barabasi 16384^2", {"matrix": "barabasi"}, SPMV_ALL, ["scipy", "torch"], ""),
    ("spmm", "grid2d 65536^2", {"matrix": "grid2d", "f": 64}, DEFAULT, ["scipy", "torch"],
     ""),
    ("spmv", "grid2d 65536^2", {"matrix": "grid2d"}, SPMV_ALL, ["scipy", "torch"], ""),
    ("spmm", "digits_knn 1797^2", {"matrix": "digits_knn", "f": 64}, DEFAULT,
     ["scipy", "torch"], ""),
    ("spmv", "digits_knn 1797^2", {"matrix": "digits_knn"}, SPMV_ALL, ["scipy", "torch"],
     ""),
]
COLUMNS = ["op", "matrix", "f", "schedule", "ours_ms", "vs_rows", "scipy_ms", "vs_scipy",
           "numpy_ms", "vs_numpy", "torch_ms", "vs_torch", "max_rel_err", "goal"]


def _schedule_label(options: dict, applied: dict | None) -> str:
    if not options:
        return "default"
    applied = applied or {}
    return ", ".join(str(v) if k in applied else f"{v} (ignored)" for k, v in options.items())


def _check(op: str, params: dict, system: str, options: dict | None = None) -> dict:
    return measure("sparsecheck", "any", op=op, params=params, side=system,
                   options=options, threads=THREADS)


def _ours_checked(op: str, params: dict, variants: list[dict]) -> list[dict]:
    """For each option dict: its check (``error``, ``applied``) or why it failed."""
    checked = []
    for options in variants:
        try:
            r = _check(op, params, "tensordsl", options)
        except RuntimeError as err:
            r = {"failed": str(err).strip().splitlines()[-1][:160]}
        checked.append({"options": options, **r})
    return checked


def _best_times(op, label, params, jobs, rounds) -> dict:
    """``jobs``: (key, system, options); each key's best median over the rounds."""
    best: dict = {}
    for _ in range(rounds):
        for key, system, options in jobs:
            try:
                r = measure("sparse", system, op=op, params=params, options=options,
                            threads=THREADS)
            except RuntimeError as err:
                print(f"{op} {label} {key}: failed ({str(err).splitlines()[-1][:160]})")
                continue
            best[key] = min(best.get(key, r["seconds"]), r["seconds"])
    return best


def _case(op, label, params, variants, others, goal, rounds) -> list[dict]:
    for system in others:
        err = _check(op, params, system)["error"]
        if err > COMPETITOR_TOL:
            raise AssertionError(f"{op} {label}: {system}'s result is off scipy's by {err:.3g}"
                                 " (a bug in benchmarks/sparse_ops.py)")
    ours = _ours_checked(op, params, variants)
    jobs = [(f"tensordsl{k}", "tensordsl", v["options"]) for k, v in enumerate(ours)
            if "failed" not in v and v["error"] <= OURS_TOL] + [(s, s, None) for s in others]
    best = _best_times(op, label, params, jobs, rounds)
    row_split = next((best.get(f"tensordsl{k}") for k, v in enumerate(ours)
                      if v["options"] == {"schedule": "rows"}), None)
    rows = []
    for k, v in enumerate(ours):
        row = {"op": op, "matrix": label, "f": params.get("f", ""),
               "schedule": _schedule_label(v["options"], v.get("applied")), "goal": goal,
               "max_rel_err": f"failed: {v['failed']}" if "failed" in v else v["error"]}
        mine = best.get(f"tensordsl{k}")
        if mine:
            row["ours_ms"] = mine * 1e3
            if row_split:
                row["vs_rows"] = row_split / mine
        for system in others:
            if system in best:
                row[f"{system}_ms"] = best[system] * 1e3
                if mine:
                    row[f"vs_{system}"] = best[system] / mine
        rows.append(row)
    return rows


def run(quick: bool = False, only: str | None = None) -> list[dict]:
    from .sparse_matrices import matrix, stats
    os.environ["OMP_NUM_THREADS"] = str(THREADS)   # inherited by every worker process
    os.environ.update(MALLOC_ENV)
    rounds = 1 if quick else ROUNDS
    print(f"threads: {THREADS} (OMP_NUM_THREADS and torch.set_num_threads, every process; "
          "scipy.sparse single-threaded)")
    rows = []
    for op, label, params, variants, others, goal in CASES:
        if only and only not in (op, params["matrix"]):
            continue
        for row in _case(op, label, params, variants, others, goal, rounds):
            rows.append(row)
            print(row)
    used = sorted({p["matrix"] for _, _, p, *_ in CASES} | {"uniform_b"})
    path = write_results("sparse", rows, {"threads": THREADS,
                                          "matrices": {m: stats(matrix(m)) for m in used}})
    text = (f"{THREADS} threads for ours and torch.sparse (MKL); scipy.sparse and numpy's "
            "gather run on one thread (they have no other). vs_X = X's time / ours (above 1: "
            "we are faster), same run; sddmm's numpy side is the chunked gather of "
            "benchmarks/sparse_ops.py, torch's `sampled_addmm` scaled by S's values. "
            "max_rel_err: our result against scipy's in float64 (largest difference / "
            "largest magnitude). schedule: the option passed to `td.ops` (\"(ignored)\": it "
            "did not take it; \"default\": sliced rows for SpMV, the row split for the others); "
            "vs_rows = the row-split schedule's time / this row's. Each "
            f"system in its own process, best median of {rounds} "
            "alternating rounds, every side allocating its result.\n\n" + table(rows, COLUMNS))
    if not only:
        update_readme("cpu-sparse", text)
    print(text)
    print(f"\nwritten to {path}")
    return rows
