"""Builds and measurements on a Dask cluster (``dask.distributed``): ``--cluster``.

    executor = DaskExecutor("local:2")                 # a LocalCluster of 2 processes here
    executor = DaskExecutor("tcp://10.0.0.5:8786")    # a running ``dask scheduler``
    tune_tasks(workloads, budget=300, executor=executor)

``DaskExecutor.run`` is ``measure.LocalExecutor.run`` spread over the cluster. Each
candidate is two tasks: a build (compile into the worker's disk cache; a lowering error,
a crash or a hang is the candidate's outcome right there), which runs on any worker, and
a measurement, which depends on the build and runs only on a worker holding the
resource ``cpu-<its CPU>`` (``resource=``; e.g. ``cpu-znver3``: what records are filed
under, ``-mcpu=znver3``). Start one measuring worker per machine (``dask worker ...
--nworkers 1 --resources "cpu-znver3=1"``): a resource of 1 runs one task at a time, so
candidates never time each other; more workers without the resource only build.
``local:N`` does this on one machine: worker 0 measures and builds, the others build.

Inside a worker, both run in a ``measure.Runner`` (a child process with a time limit):
a segfaulting or hanging candidate is a result, never the end of the worker. The
coordinator writes every record to its SQLite database the moment the measurement
ends (``on_result``), with the worker's address (``RecordDB.workers``).

Faults:
- a worker that dies: Dask runs its tasks again elsewhere (``allowed-failures`` times,
  then ``KilledWorker``: the candidate is recorded as ``crash``, "lost with its
  worker"). A result arrives once per candidate, so nothing is recorded twice.
- a hung worker: when no candidate of a batch has ended for ``deadline`` seconds (the
  tuner's timeout x 4 + 60 s), those left are cancelled and recorded as ``timeout``.
- the scheduler going away: ``ClusterLost``, naming the scheduler; every record so far
  is in the database, and ``--resume`` continues.

A worker that only builds sends the compiled kernel with its answer (``worker.ship``:
the lowered function and the object) and runs at a lower priority (``BUILDER_NICE``) so
that its compiling never slows a measurement on the same machine; the measuring worker
loads that kernel instead of lowering it again if it was compiled by the same
toolchain for the same CPU, and compiles it itself otherwise. Security: Dask runs
what the coordinator sends (pickled tasks of this module, and kernels built from the
workload's definition on the worker), and the measuring worker loads the kernels the
builders send (pickled too): every worker is trusted, as Dask itself requires; use
Dask's TLS (``tls://`` addresses, with
``distributed.comm.tls`` certificates) on a network you do not trust.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from .measure import ROOT, Runner

DEADLINE_FACTOR = 4       # a measurement's build and run, each up to the tuner's timeout
DEADLINE_SLACK = 60.0     # seconds: a worker's start-up, a slow network
BUILDER_NICE = 10         # a worker that only builds yields its core to a measurement


class ClusterLost(ConnectionError):
    """The Dask scheduler went away during a tuning job."""


@dataclass(frozen=True)
class WorkloadRef:
    """What a worker's ``Runner`` needs of a workload (it rebuilds it from the key)."""
    key: str
    scheduler: str
    source: str | None


def measure_resource(target: str = "llvm") -> str:
    """``cpu-<the CPU records are filed under>`` (``cpu-znver3``)."""
    from .records import record_target
    filed = record_target(target)
    if "-mcpu=" not in filed:
        raise ValueError(f"--resources: name the resource of the workers that measure "
                         f"{target!r} kernels (e.g. gpu-sm90)")
    return "cpu-" + filed.split("-mcpu=")[1].split()[0]


# ------------------------------------------------------------ on a worker
_RUNNERS: dict = {}
_RUNNERS_LOCK = threading.Lock()


def _runner(timeout: float, nice: int = 0) -> tuple[Runner, threading.Lock]:
    """This worker process's ``Runner`` (one child process, kept warm between tasks)."""
    with _RUNNERS_LOCK:
        if (timeout, nice) not in _RUNNERS:
            _RUNNERS[timeout, nice] = (Runner(timeout=timeout, nice=nice), threading.Lock())
        return _RUNNERS[timeout, nice]


def _worker_address() -> str:
    from distributed import get_worker
    return get_worker().address


def build_task(ref: WorkloadRef, config: dict, timeout: float, resource: str) -> dict:
    # the measuring worker builds in the child that then times the candidate (it keeps
    # the kernel it built: ``worker.Kernels``); any other builds at a lower priority
    from distributed import get_worker
    measures = get_worker().state.total_resources.get(resource, 0) > 0
    runner, lock = _runner(timeout, 0 if measures else BUILDER_NICE)
    with lock:
        result = runner.build(ref, config, ship=not measures)
    return {**result, "worker": _worker_address()}


def measure_task(ref: WorkloadRef, config: dict, timeout: float, built: dict,
                 min_time: float | None = None) -> dict:
    if built.get("status") != "built":
        return built          # the build's failure is the outcome
    runner, lock = _runner(timeout)
    with lock:
        result = runner.measure(ref, config, built.get("artifact"), min_time)
    return {**result, "worker": _worker_address()}


# ------------------------------------------------------------ on the coordinator
class DaskExecutor:
    """Runs candidates on the cluster at ``address`` (``local:N`` or a scheduler's
    ``tcp://HOST:PORT`` / ``tls://...``); see the module docstring."""

    def __init__(self, address: str, timeout: float = 30.0, resource: str | None = None,
                 target: str = "llvm"):
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("--cluster: needs dask.distributed (pip install "
                             "'tensordsl[dask]')") from None
        self.address, self.timeout = address, timeout
        self.resource = resource or measure_resource(target)
        self.deadline = timeout * DEADLINE_FACTOR + DEADLINE_SLACK
        self.cluster = None
        if address.startswith("local:"):
            self.cluster = _local_cluster(_count(address), self.resource)
            address = self.cluster.scheduler_address
        elif "://" not in address:
            raise ValueError(f"--cluster: expected local:N or tcp://HOST:PORT, got "
                             f"{address!r}")
        try:
            self.client = Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as err:
            self._close_cluster(alive=False)
            raise ValueError(f"--cluster: no Dask scheduler answers at {address} "
                             f"({err})") from None
        if not self.measurers():
            self.close()
            raise ValueError(f"--cluster: no worker of {address} holds the resource "
                             f"{self.resource!r}, so none may measure (start one with "
                             f"dask worker {address} --resources \"{self.resource}=1\")")

    def measurers(self) -> list[str]:
        """Addresses of the workers that may measure."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return [a for a, w in workers.items() if w.get("resources", {}).get(self.resource)]

    def describe(self) -> str:
        n = len(self.client.scheduler_info(n_workers=-1)["workers"])
        return (f"Dask cluster {self.client.scheduler.address}: {n} workers, "
                f"{len(self.measurers())} measuring ({self.resource})")

    def run(self, workload, configs: list, on_result):
        self.run_groups([(workload, configs, on_result)])

    def run_groups(self, groups: list, built: bool = False, min_time: float | None = None):
        """Every candidate of ``groups`` ((workload, configs, on_result) triples) at
        once: while the measuring worker times one, the others build the next.
        ``built``: configurations built before (measured again), with no build task;
        ``min_time``: each timed that long, or ``worker.MAX_RUNS`` runs (None: the
        ``Runner``'s default)."""
        from distributed import as_completed
        pending = {}
        try:
            for workload, configs, on_result in groups:
                ref = WorkloadRef(workload.key, workload.scheduler, workload.source)
                for config in configs:
                    build = None if built else self.client.submit(
                        build_task, ref, config, self.timeout, self.resource, pure=False)
                    # (a measuring worker that also builds takes a ready measurement first)
                    measured = self.client.submit(
                        measure_task, ref, config, self.timeout,
                        {"status": "built"} if build is None else build, min_time,
                        resources={self.resource: 1}, pure=False, priority=1)
                    pending[measured] = (config, build, on_result)
            self._collect(pending, as_completed)
        except ClusterLost:
            raise
        except (OSError, TimeoutError) as err:
            raise self._lost(err) from None

    def _collect(self, pending: dict, as_completed):
        """Record each candidate once, as it ends; give up on those past the deadline
        (measurements queue one at a time, so each one's clock starts when the one
        before it ended)."""
        from distributed import CancelledError
        from distributed.scheduler import KilledWorker
        futures, ready = as_completed(list(pending), loop=self.client.loop,
                                      with_results=False), []
        last = time.monotonic()
        while pending:
            if not ready:
                self._check_scheduler()
                ready = futures.next_batch(block=False)
                if not ready:
                    if time.monotonic() - last > self.deadline:   # a hung worker
                        self._give_up(pending)
                        return
                    time.sleep(0.02)
                    continue
            last = time.monotonic()
            done = ready.pop(0)
            config, _, on_result = pending.pop(done)
            try:
                result = done.result()
            except KilledWorker as err:
                result = {"status": "crash", "error": f"lost with its worker ({err})"}
            except CancelledError:
                self._check_scheduler(settle=5.0)
                result = {"status": "crash", "error": "lost: its task was cancelled"}
            except Exception as err:  # the task itself failed on the worker (an import)
                result = {"status": "error", "error": f"on the cluster: {type(err).__name__}: "
                                                      f"{err}"[:2000]}
            on_result(config, result)

    def _give_up(self, pending: dict):
        for future, (config, build, on_result) in pending.items():
            future.cancel()
            if build is not None:
                build.cancel()
            on_result(config, {"status": "timeout",
                               "error": f"no answer from the cluster within {self.deadline:g} s"})
        pending.clear()

    def _check_scheduler(self, settle: float = 0.0):
        """Raise ``ClusterLost`` if the client lost its scheduler; ``settle``: first give
        it that long to notice (a cancelled task is most often the scheduler closing)."""
        end = time.monotonic() + settle
        while self.client.status == "running" and time.monotonic() < end:
            time.sleep(0.05)
        if self.client.status != "running":
            raise self._lost(f"client {self.client.status}")

    def _lost(self, err) -> ClusterLost:
        return ClusterLost(f"the Dask scheduler at {self.address} went away ({err}); "
                           "every record measured so far is in the database: start the "
                           "cluster again and rerun with --resume to continue")

    def close(self):
        client = getattr(self, "client", None)
        alive = client is not None and client.status == "running"
        if client is not None:
            try:
                client.close(timeout=10 if alive else 2)
            except Exception:   # a scheduler that is gone: nothing left to close
                pass
        self._close_cluster(alive)

    def _close_cluster(self, alive: bool = True):
        cluster, self.cluster = self.cluster, None
        if cluster is None:
            return
        if alive:
            cluster.close(timeout=20)
            return
        # its scheduler is gone: stop the worker processes one by one
        for worker in list(cluster.workers.values()):
            try:
                cluster.sync(worker.close, timeout=5)
            except Exception:
                pass
        try:
            cluster.close(timeout=2)
        except Exception:
            pass


def _count(address: str) -> int:
    n = address.partition(":")[2]
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"--cluster: expected local:N with N a positive number of worker "
                         f"processes, got {address!r}")
    return int(n)


# What Dask's nanny sets in the environment of the worker processes it spawns (and, as
# it spawns them, in this process's): one OpenMP/BLAS thread each, which would build and
# time every candidate single-threaded, and leave this process's later builds so too.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# What a LocalCluster's processes do besides running tasks (Dask's defaults: a profiler
# sampling every thread each 10 ms, an event-loop check each 20 ms, psutil each 500 ms,
# work stealing, a memory check each 100 ms) took a core-second in 10 idle ones on
# this 2-core machine, 0.1 with these: on a machine whose cores build candidates, that
# is compile time lost. (Tasks go to workers as they free up, so nothing needs stealing.)
QUIET = {"distributed.worker.profile.enabled": False,
         "distributed.admin.tick.interval": "1s",
         "distributed.admin.system-monitor.interval": "2s",
         "distributed.admin.system-monitor.gil.enabled": False,
         "distributed.worker.memory.monitor-interval": "1s",
         "distributed.scheduler.work-stealing": False}


def _local_cluster(n: int, resource: str):
    """A cluster on loopback: worker 0 holds ``resource`` (measures and builds), the
    other ``n - 1`` build. One Dask thread per worker process, each kernel with as many
    OpenMP threads as this process's (a local run's); this source tree importable; Dask's
    housekeeping slowed down (``QUIET``)."""
    import dask
    from distributed import Nanny, Scheduler, SpecCluster
    from schedules.cpu.target import num_threads
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")   # (the workers' chatter)
    threads = str(num_threads())
    workers = {f"tensordsl-{k}": {"cls": Nanny, "options": {
        "nthreads": 1, "host": "127.0.0.1", "resources": {resource: 1} if k == 0 else {},
        "dashboard": False}} for k in range(n)}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False,
                                               "dashboard_address": ":0"}}
    kept = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    spawn = {f"distributed.nanny.pre-spawn-environ.{name}": threads
             for name in THREAD_VARIABLES}
    try:
        with dask.config.set({**spawn, **QUIET}):
            return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40)
    finally:
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
