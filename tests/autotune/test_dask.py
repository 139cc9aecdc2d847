"""Tuning on a Dask cluster (``--cluster``): a LocalCluster of two worker processes on
loopback — worker 0 holds the measuring resource, worker 1 only builds."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tensordsl import cli
from tensordsl.autotune import tune
from tensordsl.autotune.records import RecordDB, canonical
from tensordsl.autotune.workload import Workload

pytest.importorskip("distributed", reason="the Dask backend needs pip install "
                                          "'tensordsl[dask]' (in the test extra)")
from tensordsl.autotune.dask_backend import ClusterLost, DaskExecutor  # noqa: E402


def dense32():
    return Workload("dense", [("array", (32, 32), "float32"), ("array", (32, 32), "float32"),
                              ("array", (32,), "float32")])


@pytest.fixture(scope="module")
def cluster():
    executor = DaskExecutor("local:2", timeout=20)
    yield executor
    executor.close()


_THREADS_BEFORE = os.environ.get("OMP_NUM_THREADS")   # (before any cluster started)


def test_workers_build_with_this_process_threads_and_leave_its_environment(cluster):
    # Dask's nanny gives each worker process one OpenMP thread (and, as it spawns them,
    # set OMP_NUM_THREADS=1 here too): candidates were built and timed single-threaded,
    # and this process's own builds afterwards too
    from schedules.cpu.target import num_threads
    assert set(cluster.client.run(num_threads).values()) == {num_threads()}
    assert os.environ.get("OMP_NUM_THREADS") == _THREADS_BEFORE


def quiet_settings() -> dict:
    import dask
    from tensordsl.autotune.dask_backend import QUIET
    return {key: dask.config.get(key) for key in QUIET}


def test_the_local_clusters_housekeeping_leaves_the_cores_to_the_builds(cluster):
    # Dask's defaults (a profiler sampling each 10 ms, an event-loop check each 20 ms,
    # ...) took a core-second in every 10 idle ones from a 2-core machine's builds
    from tensordsl.autotune.dask_backend import QUIET
    assert list(cluster.client.run(quiet_settings).values()) == [QUIET, QUIET]
    assert not cluster.client.run_on_scheduler(
        lambda dask_scheduler: "stealing" in dask_scheduler.extensions)


def worker_pids(executor) -> dict:
    return executor.client.run(os.getpid)


def configs(db) -> list[str]:
    return [canonical(r["config"]) for r in db.trials()]


def test_only_the_worker_holding_the_resource_measures(cluster, tmp_path):
    db = RecordDB(tmp_path / "r.sqlite")
    best = tune(dense32(), trials=6, db=db, executor=cluster)
    assert best is not None and best["status"] == "ok"
    (measurer,) = cluster.measurers()
    workers = db.workers()
    # every measurement, the confirming rounds' too, by the worker holding the resource
    assert len(db.trials()) == 6 and \
        set(workers) == {r["uid"] for r in db.trials(confirming=True)}
    assert set(workers.values()) == {measurer}
    assert len(worker_pids(cluster)) == 2     # the other worker is there, and never measures


def test_the_same_seed_and_budget_measure_the_same_configurations(cluster, tmp_path):
    # below the search's random start (12 trials) the proposals depend on the seed only;
    # past it the cost model ranks by measured times, which differ between any two runs
    local, dask = RecordDB(tmp_path / "local.sqlite"), RecordDB(tmp_path / "dask.sqlite")
    tune(dense32(), trials=8, db=local, seed=3, build_workers=0)
    tune(dense32(), trials=8, db=dask, seed=3, executor=cluster)
    assert sorted(configs(local)) == sorted(configs(dask)) and len(set(configs(dask))) == 8
    assert {r["status"] for r in local.trials()} == {r["status"] for r in dask.trials()} == \
        {"ok"}


def test_no_worker_with_the_resource_is_refused(cluster):
    address = cluster.client.scheduler.address
    with pytest.raises(ValueError, match="no worker of .* holds the resource 'gpu-sm90'"):
        DaskExecutor(address, resource="gpu-sm90")
    with pytest.raises(ValueError, match="expected local:N with N a positive number"):
        DaskExecutor("local:zero")


def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path):
    executor = DaskExecutor("local:2", timeout=20)
    try:
        (measurer,) = executor.measurers()
        pid = worker_pids(executor)[measurer]
        db = RecordDB(tmp_path / "r.sqlite")
        killed = []

        def kill_once(report):
            if report.done == 2 and not killed:   # mid-batch: others built or in flight
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        tune(dense32(), trials=8, db=db, executor=executor, progress=kill_once)
        assert killed
        rows = db.trials()
        assert len(rows) == 8 and len(set(configs(db))) == 8    # each candidate once
        # the nanny restarts the worker (same resource): its candidates ran again there,
        # or, past Dask's allowed failures, are recorded as lost
        assert all(r["status"] == "ok" or "lost" in r["error"] for r in rows)
        assert worker_pids(executor)[executor.measurers()[0]] != pid
    finally:
        executor.close()


def test_a_hung_worker_times_out(tmp_path):
    executor = DaskExecutor("local:1", timeout=20)
    try:
        (measurer,) = executor.measurers()
        pid = worker_pids(executor)[measurer]
        executor.deadline = 3.0
        db = RecordDB(tmp_path / "r.sqlite")
        os.kill(pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            tune(dense32(), trials=3, db=db, executor=executor)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert time.monotonic() - start < 30
        rows = db.trials()
        assert [r["status"] for r in rows] == ["timeout"] * 3
        assert "no answer from the cluster within 3 s" in rows[0]["error"]
    finally:
        executor.close()


def test_the_scheduler_going_away_keeps_every_record_and_resume_continues(tmp_path):
    executor = DaskExecutor("local:2", timeout=20)
    db = RecordDB(tmp_path / "r.sqlite")

    def stop_scheduler(report):
        if report.done == 2:
            executor.cluster.sync(executor.cluster.scheduler.close)

    try:
        with pytest.raises(ClusterLost, match="went away .*every record measured so far "
                                              "is in the database.*--resume"):
            tune(dense32(), trials=8, db=db, executor=executor, progress=stop_scheduler)
    finally:
        executor.close()
    kept = len(db.trials())
    assert 2 <= kept < 8
    again = DaskExecutor("local:2", timeout=20)
    try:
        tune(dense32(), trials=8, db=db, executor=again, resume=True)
    finally:
        again.close()
    assert len(db.trials()) == 8 and len(set(configs(db))) == 8


def test_tune_layers_on_a_cluster(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    layers = tmp_path / "layers.py"
    layers.write_text("import numpy as np\n"
                      "x = np.empty((32, 32), np.float32)\n"
                      "CALLS = [('dense', [x, x, np.empty(32, np.float32)], {}), "
                      "('relu', [x], {})]\n")
    assert cli.main(["tune-layers", f"{layers}:CALLS", "--trials", "4", "--db", str(db),
                     "--cluster", "local:2"]) == 0
    out = capsys.readouterr().out
    assert "4 trials, gain schedule, on the Dask cluster local:2" in out
    assert "2 workers, 1 measuring (cpu-" in out
    records = RecordDB(db)
    assert len(records.trials()) == 4
    assert len(records.workers()) == len(records.trials(confirming=True)) > 4
