"""A measuring process: ``python -m tensordsl.autotune.worker``.

Reads one JSON request per line on stdin — ``{"workload": key, "config": {...},
"repeat": n, "min_time": s}`` (``"build_only": true``: compile into the disk cache and
answer ``{"status": "built"}``) — builds that schedule, runs it on reproducible random
inputs, checks the output against the template's default schedule (computed once per
workload in this process), times it, and answers one JSON line on stdout:
``{"status": "ok", "seconds": median, "build_seconds": ...}`` or ``{"status": "error" |
"wrong", "error": text}``. A candidate that crashes the process or never answers is
caught by the parent (``measure.Runner``), which starts a fresh worker.
"""
from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np


def _run(workload, config, repeat: int, min_time: float, references: dict) -> dict:
    t0 = time.perf_counter()
    f, shape, dtype = workload.build(config)
    build = time.perf_counter() - t0
    ins = workload.arrays(seed=0)
    out = np.full(shape, np.nan, dtype)
    f(*ins, out)
    ref = references.get(workload.key)
    if ref is None:
        if config:
            ref = np.full(shape, np.nan, dtype)
            workload.build(None)[0](*ins, ref)
        else:
            ref = out.copy()
        references[workload.key] = ref
    scale = max(1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0)
    if out.shape != ref.shape or not np.allclose(out, ref, rtol=1e-3, atol=1e-3 * scale,
                                                  equal_nan=True):
        bad = np.nanmax(np.abs(out - ref)) if out.size else 0.0
        return {"status": "wrong", "error": f"differs from the default schedule by {bad:.3g}",
                "build_seconds": build}
    for _ in range(2):
        f(*ins, out)
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        f(*ins, out)
        times.append(time.perf_counter() - t)
    flops = workload.flops(shape)
    med = float(np.median(times))
    return {"status": "ok", "seconds": med, "build_seconds": build,
            "gflops": flops / med / 1e9 if flops else None}


def _build(workload, config) -> dict:
    """Compile only: the object lands in the disk cache, where the measuring worker
    finds it (builds run in parallel, measurements one at a time)."""
    t0 = time.perf_counter()
    workload.build(config)
    return {"status": "built", "build_seconds": time.perf_counter() - t0}


def main() -> int:
    from .workload import Workload
    references: dict = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            workload = Workload.from_key(req["workload"], req.get("scheduler", "template"),
                                         req.get("source"))
            if req.get("build_only"):
                reply = _build(workload, req.get("config") or {})
            else:
                reply = _run(workload, req.get("config") or {}, int(req.get("repeat", 5)),
                             float(req.get("min_time", 0.05)), references)
        except Exception as err:  # a candidate's failure is a result, not the end
            reply = {"status": "error",
                     "error": f"{type(err).__name__}: {err}".strip()[:2000],
                     "trace": traceback.format_exc()[-2000:]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
