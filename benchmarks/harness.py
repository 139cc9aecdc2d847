"""One harness for every benchmark.

Each measurement runs in its own fresh Python process (two runtimes' thread pools in one
process slow each other down, DESIGN.md), with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` removed from that process's environment only. Systems are measured
alternately (A B A B) and each reports the median of its timed runs after warm-up;
ratios are only ever taken between numbers from the same run.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn, repeat: int = 15, warmup: int = 3, min_time: float = 0.0) -> float:
    """Median seconds of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_env() -> dict:
    from tensordsl.autotune.measure import reference_env
    return reference_env()


def measure(case: str, system: str, **params) -> dict:
    """Run one ``workers.<case>_<system>`` in a fresh process; returns its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.workers", case, system, json.dumps(params)]
    out = subprocess.run(cmd, env=bench_env(), cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark {case}/{system} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(case: str, systems: list[str], rounds: int = 2, **params) -> dict:
    """Alternate the systems ``rounds`` times; keep each system's best median."""
    best: dict = {}
    for _ in range(rounds):
        for system in systems:
            r = measure(case, system, **params)
            if system not in best or r["seconds"] < best[system]["seconds"]:
                best[system] = r
    return best


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}


def write_results(name: str, rows: list[dict], extra: dict):
    RESULTS.mkdir(exist_ok=True)
    host = platform.node().split(".")[0] or "machine"
    path = RESULTS / f"{name}-{host}.json"
    path.write_text(json.dumps({"machine": machine(), **extra, "rows": rows}, indent=2) + "\n")
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def update_readme(section: str, text: str):
    """Replace the block between ``<!-- section -->`` markers in benchmarks/README.md."""
    readme = Path(__file__).resolve().parent / "README.md"
    body = readme.read_text() if readme.exists() else "# Benchmarks\n"
    start, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    block = f"{start}\n{text}\n{end}"
    if start in body and end in body:
        body = body[:body.index(start)] + block + body[body.index(end) + len(end):]
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    readme.write_text(body)
