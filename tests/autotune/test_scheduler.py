"""The task scheduler: one budget over many workloads, spent in rounds by expected gain.
The allocation is driven with made-up times (no measurement), so it is exact."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensordsl as td
from tensordsl.autotune import layers
from tensordsl.autotune.records import RecordDB
from tensordsl.autotune.scheduler import (MIN_IMPROVEMENT, GainSchedule, ShareSchedule, Task,
                                          share, tune_tasks)
from tensordsl.autotune.workload import Workload

ROOT = Path(__file__).resolve().parents[2]


def drive(schedule, improve):
    """Run ``schedule`` to its end; ``improve(task, best) -> new best`` plays a round.
    Returns the names of the tasks in round order."""
    order = []
    while (step := schedule.next()) is not None:
        task, trials = step
        before = task.best if task.best is not None else task.workload_default
        after = improve(task, before)
        schedule.done(task, trials, before, after, asked=trials)
        order.append(task.workload)
    return order


def tasks(*specs):
    """Tasks named by their workload strings, each with a default time (seconds)."""
    out = []
    for name, default, weight in specs:
        t = Task(name, weight=weight)
        t.workload_default = default
        out.append(t)
    return out


def test_every_task_gets_a_first_round_in_order_then_the_largest_gain():
    a, b, c = tasks(("a", 1.0, 1), ("b", 10.0, 1), ("c", 1.0, 3))
    plan = GainSchedule([a, b, c], budget=8 * 5, round_trials=8)
    # first rounds halve every time; after that nothing improves
    order = drive(plan, lambda t, best: best / 2 if t.rounds == 0 else best)
    assert order[:3] == ["a", "b", "c"]
    # after the first rounds: improvement 0.5 each, shares 0.5 : 5 : 1.5 -> b, then
    # b has stopped improving (gain 5/7 x MIN_IMPROVEMENT < c's 1.5/7 x 0.5) -> c
    assert order[3:] == ["b", "c"]
    assert plan.left == 0 and sum(t.trials for t in (a, b, c)) == 40


def test_the_gain_is_time_share_times_recent_improvement():
    a, b = tasks(("a", 4.0, 1), ("b", 4.0, 2))
    plan = GainSchedule([a, b], budget=100)
    plan.done(a, 8, 4.0, 2.0)       # a: best 2, improved by half
    plan.done(b, 8, 4.0, 3.9)       # b: weight 2 x 3.9, improved by 2.5 %
    share_a, share_b = 2.0 / 9.8, 7.8 / 9.8
    assert plan.gains() == pytest.approx([share_a * 0.5, share_b * 0.025])
    assert plan.next()[0] is a
    plan.done(b, 8, 3.9, 3.9)       # no improvement: the floor, never zero
    assert plan.gains()[1] == pytest.approx(7.8 / 9.8 * MIN_IMPROVEMENT)


def test_no_task_starves_and_the_budget_is_spent_exactly():
    big, small = tasks(("big", 100.0, 1), ("small", 1e-6, 1))
    plan = GainSchedule([big, small], budget=8 * 20 + 3, round_trials=8, patience=4)
    order = drive(plan, lambda t, best: best * 0.9)   # big keeps improving 10 % a round
    rounds_of_small = [k for k, name in enumerate(order) if name == "small"]
    assert len(rounds_of_small) >= 4        # patience 4: at least every 5th round
    assert all(b - a <= 5 for a, b in zip(rounds_of_small, rounds_of_small[1:]))
    assert big.trials + small.trials == 163 and plan.next() is None
    assert order.count("big") > 3 * order.count("small")


def test_an_exhausted_task_is_not_chosen_again():
    a, b = tasks(("a", 1.0, 1), ("b", 1.0, 1))
    plan = GainSchedule([a, b], budget=80)
    plan.done(a, 3, 1.0, 0.5, asked=8)      # a's space had 3 configurations left
    plan.done(b, 8, 1.0, 0.9, asked=8)
    assert a.exhausted and plan.next()[0] is b
    plan.done(b, 5, 0.9, 0.9, asked=8)
    assert plan.next() is None              # every space measured: the budget stays


def test_the_share_schedule_is_the_static_split_in_one_round_each():
    big, small = Task("big", work=1e6), Task("small", work=1e3)
    plan = ShareSchedule([small, big], budget=20)
    steps = []
    while (step := plan.next()) is not None:
        steps.append((step[0].workload, step[1]))
        plan.done(step[0], step[1], None, None)
    assert steps == [(s.workload, s.trials) for s in share([small, big], 20)]
    assert steps[0][0] == "big" and sum(n for _, n in steps) == 20


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="round_trials: expected a positive number, got 0"):
        GainSchedule([], 10, round_trials=0)
    with pytest.raises(ValueError, match="--schedule: expected one of gain, share, got 'x'"):
        tune_tasks([], 10, RecordDB(":memory:"), schedule="x")


def test_collect_notes_each_td_ops_kernel_once_as_td_ops_files_it():
    x, w, b = (np.ones(s, np.float32) for s in ((8, 16), (4, 16), (4,)))
    with td.autotune.collect() as kernels:
        h = td.ops.dense(x, w, b)
        td.ops.relu(h)
        td.ops.dense(x, w, b)
    assert [k.op for k in kernels] == ["dense", "relu"]
    assert kernels[0].key == td.ops.call_workload("dense", [x, w, b], {}, "test")[0].key


def test_a_workload_list_file_round_trips_with_weights(tmp_path):
    x, w, b = (np.empty(s, np.float32) for s in ((8, 16), (4, 16), (4,)))
    calls = [("dense", [x, w, b], {}), ("relu", [x], {}), ("dense", [x, w, b], {})]
    found = layers.weighted(calls)
    assert [(repr(k), n) for k, n in found] == [("dense(8x16, 4x16, 4)", 2), ("relu(8x16)", 1)]
    path = tmp_path / "kernels.json"
    layers.save(path, [k for k, _ in found], [n for _, n in found])
    again = layers.weighted(layers.load(str(path)))
    assert [(k.key, n) for k, n in again] == [(k.key, n) for k, n in found]
    (tmp_path / "bad.json").write_text('[{"kee": 1}]')
    with pytest.raises(ValueError, match="bad.json: expected a list of"):
        layers.load(str(tmp_path / "bad.json"))


def dense(n):
    return Workload("dense", [("array", (n, n), "float32"), ("array", (n, n), "float32"),
                              ("array", (n,), "float32")])


def test_tune_tasks_spends_the_budget_and_resume_counts_what_is_stored(tmp_path):
    db = RecordDB(tmp_path / "r.sqlite")
    small, large = dense(16), dense(32)
    results = tune_tasks([small, large], 6, db, round_trials=3, timeout=20)
    assert [t.workload.key for t, _ in results] == [large.key, small.key]  # largest first
    assert [t.trials for t, _ in results] == [3, 3]
    assert all(best is not None and best["status"] == "ok" for _, best in results)
    # the job killed after its budget and restarted: nothing is left to do
    again = tune_tasks([small, large], 6, db, round_trials=3, timeout=20, resume=True)
    assert len(db.trials()) == 6 and [t.trials for t, _ in again] == [3, 3]
    tune_tasks([small, large], 8, db, round_trials=3, timeout=20, resume=True)
    assert len(db.trials()) == 8


def test_the_local_job_imports_no_dask():
    code = ("import sys, tensordsl.nn.cli, tensordsl.autotune.scheduler; "
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
