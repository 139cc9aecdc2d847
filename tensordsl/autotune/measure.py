"""Measuring candidates in an isolated worker process, with a time limit each.

A segfault in generated code, an infinite loop, or a wrong result is a trial outcome
(``crash``, ``timeout``, ``wrong``), never the end of the tuner: the worker is a separate
process, and a dead or silent one is replaced by a fresh one.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def reference_env() -> dict:
    """The environment of a measuring process: this source tree importable, and
    OpenBLAS without the variables that slow it on this machine (a library a user would
    compare with runs without them; see benchmarks/)."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Runner:
    """``Runner(timeout).measure(workload, config) -> dict`` (see ``worker``).
    ``nice``: the child's scheduling priority, raised for one that only builds on a
    machine where another process measures, so that compiling never slows a candidate
    being timed (the kernel's threads take the cores first)."""

    def __init__(self, timeout: float = 30.0, repeat: int = 5, min_time: float = 0.05,
                 nice: int = 0):
        self.timeout, self.repeat, self.min_time = timeout, repeat, min_time
        self.nice = nice
        self.proc: subprocess.Popen | None = None
        self._buffer = b""

    def _start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensordsl.autotune.worker",
             *(["--nice", str(self.nice)] if self.nice else [])], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=reference_env(), cwd=ROOT)
        self._buffer = b""

    def _stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self):
        self._stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def build(self, workload, config: dict, ship: bool = False) -> dict:
        """Compile only (into the disk cache): ``{"status": "built"}`` or a failure;
        ``ship``: with the compiled kernel (``"artifact"``), for another process's
        ``measure``."""
        return self._request(workload, config, build_only=True, ship=ship)

    def measure(self, workload, config: dict, artifact: str | None = None,
                min_time: float | None = None) -> dict:
        """Time ``config`` (loading ``artifact``, another process's build, if given) for
        at least ``min_time`` seconds or ``worker.MAX_RUNS`` runs, whichever comes first
        (None: this runner's)."""
        return self._request(workload, config, artifact=artifact, min_time=min_time)

    def _request(self, workload, config: dict, build_only: bool = False, ship: bool = False,
                 artifact: str | None = None, min_time: float | None = None) -> dict:
        request = {"workload": workload.key, "scheduler": workload.scheduler,
                   "source": workload.source,
                   "config": config, "repeat": self.repeat,
                   "min_time": self.min_time if min_time is None else min_time,
                   "build_only": build_only, "ship": ship, "artifact": artifact}
        return self.exchange(request)

    def exchange(self, request: dict) -> dict:
        """Send one request to the worker and wait for its answer (or its death, or
        the time limit)."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died()
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._stop()
                return {"status": "timeout", "error": f"no answer within {self.timeout:g} s"}
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return self._died()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _died(self) -> dict:
        code = self.proc.wait() if self.proc is not None else None
        self.proc = None
        what = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return {"status": "crash", "error": f"the worker died ({what})"}


class Builders:
    """``n`` build workers compiling a batch of candidates at once; the measuring
    ``Runner`` then only loads them (``Runner.build(..., ship=True)``). A candidate whose
    build crashes or hangs has its outcome right here."""

    def __init__(self, n: int, timeout: float):
        self.runners = [Runner(timeout=timeout) for _ in range(max(1, n))]

    def build_all(self, candidates: list) -> list[dict]:
        """Compile ``candidates`` ((workload, config) pairs), ``n`` at a time."""
        from concurrent.futures import ThreadPoolExecutor
        results: list = [None] * len(candidates)

        def work(slot: int):
            runner = self.runners[slot]
            for k in range(slot, len(candidates), len(self.runners)):
                results[k] = runner.build(*candidates[k], ship=True)

        with ThreadPoolExecutor(len(self.runners)) as pool:
            list(pool.map(work, range(min(len(self.runners), len(candidates)))))
        return results

    def close(self):
        for r in self.runners:
            r.close()


class LocalExecutor:
    """How ``tune`` runs a batch on this machine: compiled in parallel by ``Builders``
    (``build_workers`` processes; 0: by the measuring worker itself), then timed one at a
    time by a ``Runner``. Another executor (``dask_backend.DaskExecutor``) has the same
    methods: ``run(workload, configs, on_result)`` calls ``on_result(config, result)``
    once per config, as each finishes; ``run_groups([(workload, configs, on_result),
    ...], built=False, min_time=None)`` does so for several workloads' batches at once
    (here: all compiled in one parallel pass, then timed; ``built``: configurations
    built before, timed by the measuring worker, which builds any it no longer holds;
    ``min_time``: each timed that long, or ``worker.MAX_RUNS`` runs, instead of the
    runner's ``min_time``); and
    ``close()``."""

    def __init__(self, timeout: float = 30.0, build_workers: int | None = None,
                 runner: Runner | None = None):
        self._own_runner = runner is None
        self.runner = runner or Runner(timeout=timeout)
        self.builders = Builders(build_workers or os.cpu_count() or 1, timeout) \
            if build_workers != 0 else None

    def run(self, workload, configs: list, on_result):
        self.run_groups([(workload, configs, on_result)])

    def run_groups(self, groups: list, built: bool = False, min_time: float | None = None):
        candidates = [(workload, config) for workload, configs, _ in groups
                      for config in configs]
        outcomes = iter(self.builders.build_all(candidates) if self.builders and not built
                        else [{"status": "built"}] * len(candidates))
        for workload, configs, on_result in groups:
            for config in configs:
                b = next(outcomes)
                on_result(config, self.runner.measure(workload, config, b.get("artifact"),
                                                      min_time)
                          if b["status"] == "built" else b)

    def close(self):
        if self._own_runner:
            self.runner.close()
        if self.builders is not None:
            self.builders.close()
