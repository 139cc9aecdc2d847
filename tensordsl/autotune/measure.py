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
    """``Runner(timeout).measure(workload, config) -> dict`` (see ``worker``)."""

    def __init__(self, timeout: float = 30.0, repeat: int = 5, min_time: float = 0.05):
        self.timeout, self.repeat, self.min_time = timeout, repeat, min_time
        self.proc: subprocess.Popen | None = None
        self._buffer = b""

    def _start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensordsl.autotune.worker"], stdin=subprocess.PIPE,
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

    def build(self, workload, config: dict) -> dict:
        """Compile only (into the disk cache): ``{"status": "built"}`` or a failure."""
        return self._request(workload, config, build_only=True)

    def measure(self, workload, config: dict) -> dict:
        return self._request(workload, config)

    def _request(self, workload, config: dict, build_only: bool = False) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        request = {"workload": workload.key, "scheduler": workload.scheduler,
                   "source": workload.source,
                   "config": config, "repeat": self.repeat, "min_time": self.min_time,
                   "build_only": build_only}
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
    """``n`` build workers compiling a batch of candidates at once (into the disk cache);
    the measuring ``Runner`` then only loads them. A candidate whose build crashes or
    hangs has its outcome right here."""

    def __init__(self, n: int, timeout: float):
        self.runners = [Runner(timeout=timeout) for _ in range(max(1, n))]

    def build_all(self, workload, configs: list) -> list[dict]:
        from concurrent.futures import ThreadPoolExecutor
        results: list = [None] * len(configs)

        def work(slot: int):
            runner = self.runners[slot]
            for k in range(slot, len(configs), len(self.runners)):
                results[k] = runner.build(workload, configs[k])

        with ThreadPoolExecutor(len(self.runners)) as pool:
            list(pool.map(work, range(min(len(self.runners), len(configs)))))
        return results

    def close(self):
        for r in self.runners:
            r.close()


class LocalExecutor:
    """How ``tune`` runs a batch on this machine: compiled in parallel by ``Builders``
    (``build_workers`` processes; 0: by the measuring worker itself), then timed one at a
    time by a ``Runner``. Another executor (``dask_backend.DaskExecutor``) has the same
    two methods: ``run(workload, configs, on_result)`` calls ``on_result(config, result)``
    once per config, as each finishes, and ``close()``."""

    def __init__(self, timeout: float = 30.0, build_workers: int | None = None,
                 runner: Runner | None = None):
        self._own_runner = runner is None
        self.runner = runner or Runner(timeout=timeout)
        self.builders = Builders(build_workers or os.cpu_count() or 1, timeout) \
            if build_workers != 0 else None

    def run(self, workload, configs: list, on_result):
        built = self.builders.build_all(workload, configs) if self.builders else \
            [{"status": "built"}] * len(configs)
        for config, b in zip(configs, built):
            on_result(config, self.runner.measure(workload, config)
                      if b["status"] == "built" else b)

    def close(self):
        if self._own_runner:
            self.runner.close()
        if self.builders is not None:
            self.builders.close()
