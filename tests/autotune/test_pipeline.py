"""How a tuning job keeps its workers busy: batches of several workloads at once
(``run_side_by_side``), the measuring process keeping what it built (``Kernels``),
kernels compiled in one process and loaded in another (``ship``), builders that yield
the cores to a measurement (``Runner(nice=...)``)."""
from __future__ import annotations

import json
import os
import pickle
import base64
import zlib

import numpy as np
import pytest

from tensordsl.autotune import Runner
from tensordsl.autotune import worker
from tensordsl.autotune.records import RecordDB, canonical
from tensordsl.autotune.scheduler import GainSchedule, ShareSchedule, Task, tune_tasks
from tensordsl.autotune.tuner import BATCH, CONFIRM_MIN_TIME, Tuning
from tensordsl.autotune.workload import Workload


def dense(n):
    return Workload("dense", [("array", (n, n), "float32"), ("array", (n, n), "float32"),
                              ("array", (n,), "float32")])


def made_up_seconds(config) -> float:
    """A time for ``config`` that is the same in every run (no measurement)."""
    return 1e-3 * (1 + zlib.crc32(canonical(config).encode()) % 997 / 997)


class RunOnly:
    """An executor of one workload's batch at a time (``run`` only)."""

    def __init__(self):
        self.calls = []

    def run(self, workload, configs, on_result):
        self.calls.append([(workload.key, canonical(c)) for c in configs])
        for c in configs:
            on_result(c, {"status": "ok", "seconds": made_up_seconds(c)})


class Grouped(RunOnly):
    """An executor of several workloads' batches at once (``run_groups``)."""

    def __init__(self):
        super().__init__()
        self.group_calls = []

    def run_groups(self, groups, built=False, min_time=None):
        self.group_calls.append(([w.key for w, _, _ in groups], built, min_time))
        for workload, configs, on_result in groups:
            self.run(workload, configs, on_result)


def trials_by_workload(db) -> dict:
    out: dict = {}
    for r in db.trials():
        out.setdefault(r["workload"], []).append(canonical(r["config"]))
    return out


def test_first_rounds_and_confirmations_run_side_by_side_and_choose_as_one_at_a_time(
        tmp_path):
    workloads = [dense(16), dense(24), dense(32)]
    grouped, alone = Grouped(), RunOnly()
    db_grouped, db_alone = RecordDB(tmp_path / "g.sqlite"), RecordDB(tmp_path / "a.sqlite")
    tune_tasks(workloads, 40, db_grouped, executor=grouped, seed=5)
    tune_tasks(workloads, 40, db_alone, executor=alone, seed=5)
    # the same configurations, in the same order per workload, as batches one at a time
    assert trials_by_workload(db_grouped) == trials_by_workload(db_alone)
    assert len(db_grouped.trials()) == 40
    first, *rest = grouped.group_calls
    # every task's first round in one call, largest first, each a batch of BATCH trials
    # with the default first
    assert first == ([w.key for w in reversed(workloads)], False, None)
    for (key, config), w in zip([c[0] for c in grouped.calls[:3]], reversed(workloads)):
        assert config == canonical(w.default_config())
    assert [len(c) for c in grouped.calls[:3]] == [BATCH] * 3
    # then the two tasks of the largest expected gain side by side (the rest of the
    # budget), then every confirmation at once, timed briefly and without a build of
    # its own
    assert len(rest) == 2 and len(rest[0][0]) == 2 and rest[0][1:] == (False, None)
    keys, built, min_time = rest[1]
    assert (sorted(keys), built, min_time) == (sorted(w.key for w in workloads), True,
                                               CONFIRM_MIN_TIME)


def test_a_tuning_batch_starts_with_the_default_and_never_repeats_a_configuration(
        tmp_path):
    w = dense(16)
    tuning = Tuning(w, trials=20, db=RecordDB(tmp_path / "r.sqlite"), seed=1)
    seen = []
    while batch := tuning.next_batch():
        assert len(batch) <= BATCH
        seen += [canonical(c) for c in batch]
        for c in batch:
            tuning.record(c, {"status": "ok", "seconds": made_up_seconds(c)})
    assert seen[0] == canonical(w.default_config())
    assert len(seen) == 20 == len(set(seen))
    assert tuning.next_batch() == []        # done stays done


def test_next_rounds_are_every_fresh_task_within_the_budget_then_two():
    a, b, c = Task("a"), Task("b"), Task("c")
    plan = GainSchedule([a, b, c], budget=26, round_trials=8)
    assert [(t.workload, n) for t, n in plan.next_rounds()] == [("a", 8), ("b", 8), ("c", 8)]
    plan.done(a, 8, 1.0, 0.5, asked=8)
    plan.done(b, 8, 1.0, 0.9, asked=8)
    plan.done(c, 8, 1.0, 1.0, asked=8)
    assert [(t.workload, n) for t, n in plan.next_rounds()] == [("a", 2)]   # by gain
    plan.done(a, 2, 0.5, 0.5, asked=2)
    assert plan.next_rounds() == []         # the budget is spent
    plan = GainSchedule([a, b, c], budget=100, round_trials=8)
    # no fresh task left: the two of the largest gain (b improved by 10 %, then c: of
    # the two that did not, the larger share of the time)
    assert [(t.workload, n) for t, n in plan.next_rounds()] == [("b", 8), ("c", 8)]
    plan = GainSchedule([a, b, c], budget=100, round_trials=8, side_by_side=1)
    assert [(t.workload, n) for t, n in plan.next_rounds()] == [("b", 8)]
    plan = GainSchedule([a, b, c], budget=11, round_trials=8)
    assert [(t.workload, n) for t, n in plan.next_rounds()] == [("b", 8), ("c", 3)]
    share = ShareSchedule([Task("x", work=1e6), Task("y", work=1e3)], budget=20)
    assert sum(n for _, n in share.next_rounds()) == 20 and share.next_rounds() == []


def test_a_budget_short_of_full_first_rounds_is_shared_by_every_task():
    """Regression: with more kernels than the budget had full first rounds for (a whole
    model's, in ``tune-model --trials 64``), the last kernels got no trial at all."""
    tasks = [Task(name) for name in "abcde"]
    plan = GainSchedule(tasks, budget=17, round_trials=8)
    assert [(t.workload, n) for t, n in plan.next_rounds()] == \
        [("a", 3), ("b", 3), ("c", 3), ("d", 3), ("e", 3)]
    one_at_a_time = GainSchedule([Task(name) for name in "abcde"], budget=17, round_trials=8)
    trials = []
    while (step := one_at_a_time.next()) is not None:
        task, n = step
        trials.append((task.workload, n))
        one_at_a_time.done(task, n, 1.0, 1.0, asked=n)
    assert trials == [("a", 3), ("b", 3), ("c", 3), ("d", 3), ("e", 3), ("a", 2)]
    tiny = GainSchedule([Task(name) for name in "abc"], budget=2, round_trials=8)
    assert [(t.workload, n) for t, n in tiny.next_rounds()] == [("a", 1), ("b", 1)]
    # resumed after three first rounds: what is left is shared by the other two
    resumed = [Task(name) for name in "abcde"]
    for task in resumed[:3]:
        task.rounds, task.trials = 1, 3
    plan = GainSchedule(resumed, budget=8, round_trials=8)
    assert [(t.workload, n) for t, n in plan.next_rounds()] == [("d", 4), ("e", 4)]


class Counting:
    """A workload whose builds are counted (``Kernels``' view of one)."""
    key, scheduler, source = "counting", "template", None

    def __init__(self):
        self.builds = []

    def build(self, config):
        self.builds.append(dict(config))
        return ("kernel", json.dumps(config)), (1,), "float32"

    def default_config(self):
        return {"a": 0}


def test_the_measuring_process_keeps_the_kernels_it_built():
    w, kernels = Counting(), worker.Kernels(size=2)
    first = kernels.build(w, {"a": 1})
    assert kernels.build(w, {"a": 1}) is first and len(w.builds) == 1
    kernels.build(w, {"a": 2})
    kernels.build(w, {"a": 3})              # {"a": 1} is the oldest of three: dropped
    kernels.build(w, {"a": 1})
    assert w.builds == [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 1}]


def test_the_measuring_process_keeps_each_workloads_default_and_fastest():
    """Regression: a job of more candidates than ``KEPT`` (the MLP's 192) had pushed the
    defaults and fastest configurations out by its end, and the confirming rounds, which
    measure exactly these again, built them anew (5 of the job's 28 seconds)."""
    w, kernels = Counting(), worker.Kernels(size=2, pinned=1)
    for a, seconds in [(0, 3.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (5, 6.0)]:
        kernels.build(w, {"a": a})
        kernels.timed(w, {"a": a}, seconds)
    for a in (0, 1):                        # the default, the fastest: kept
        kernels.build(w, {"a": a})
    kernels.build(w, {"a": 2})              # neither, and not among the last two built
    assert w.builds == [{"a": a} for a in range(6)] + [{"a": 2}]
    assert len(kernels.built) <= 2 * 2


def test_a_shipped_kernel_runs_in_another_process_as_built_there(tmp_path):
    w = dense(16)
    config = w.default_config()
    artifact = worker.ship(w, config)
    f, shape, dtype = worker.unship(artifact)
    x, wt, b = w.arrays(seed=3)
    out = np.full(shape, np.nan, dtype)
    f(x, wt, b, out)
    np.testing.assert_allclose(out, x @ wt.T + b, rtol=1e-5, atol=1e-5)
    # a kernel compiled for another CPU or by another toolchain is not loaded: the
    # measuring process builds the candidate itself
    fingerprint, *rest = pickle.loads(base64.b64decode(artifact))
    foreign = base64.b64encode(pickle.dumps(("another machine", *rest))).decode()
    assert worker.unship(foreign) is None
    kernels = worker.Kernels()
    assert kernels.build(w, config, foreign)[1] == shape
    # through a measuring process: the shipped kernel, timed
    with Runner(timeout=30) as runner:
        result = runner.measure(w, config, artifact)
    assert result["status"] == "ok" and result["seconds"] > 0


def test_a_builder_runs_at_a_lower_priority_than_the_measurement():
    w = dense(16)
    with Runner(timeout=30, nice=5) as builder, Runner(timeout=30) as measurer:
        assert builder.build(w, w.default_config(), ship=True)["artifact"]
        assert measurer.build(w, w.default_config())["status"] == "built"
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, builder.proc.pid) == min(19, mine + 5)
        assert os.getpriority(os.PRIO_PROCESS, measurer.proc.pid) == mine


def test_a_programs_elementwise_kernel_is_tuned_as_what_it_computes(tmp_path):
    """A compiled program's kernel that no file defines travels to the measuring
    process as its IR (``Workload.of_compute``), and its record is the one
    ``td.build(tensors)`` — how the program builds it — then reads."""
    import tensordsl as td
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.records import record_target
    from tests.helpers import poisoned
    A = td.placeholder((64, 48), name="A")
    B = td.placeholder((48,), name="B")
    C = td.compute((64, 48), lambda i, j: td.maximum(A[i, j] + B[j], 0.0) * 0.5, name="act")
    w = Workload.of_compute([A, B], C, "act")
    assert (repr(w), w.template) == ("act(64x48)", "auto")
    again = Workload.from_key(w.key, w.scheduler, w.source)
    config = {**again.default_config(), "t0": 2}
    f, shape, dtype = again.build(config)
    a, b = again.arrays(seed=2)
    out = poisoned(shape, dtype)
    f(a, b, out)
    np.testing.assert_allclose(out, np.maximum(a + b, 0) * 0.5, rtol=1e-6)
    with Runner(timeout=30) as runner:
        assert runner.measure(w, config)["status"] == "ok"
    db = RecordDB(tmp_path / "r.sqlite")
    db.add(w.key, record_target("llvm"), w.template, config, "ok", seconds=1e-6)
    with apply_history_best(str(tmp_path / "r.sqlite")):
        tuned = td.build([A, B, C])
    untuned = td.build([A, B, C])
    assert str(tuned.func) == str(td.lower(*w.schedule(config))) != str(untuned.func)


def momentum_update(shape):
    """An optimizer's update: one compute of two outputs (the parameter and its
    momentum), as ``nn.TrainStep`` traces SGD's."""
    import tensordsl as td
    p, g, b = (td.placeholder(shape, name=n) for n in ("p", "g", "b"))
    h = td.placeholder((3,), name="h")

    def body(*i):
        new_b = h[1] * b[i] + g[i]
        return p[i] - h[0] * new_b, new_b
    return [p, g, b, h], list(td.compute(shape, body, name="update"))


def momentum_reference(p, g, b, h):
    new_b = h[1] * b + g
    return p - h[0] * new_b, new_b


def test_a_kernel_of_two_outputs_is_measured_and_tuned_with_both(tmp_path):
    """Regression: a program's kernel of several outputs (an optimizer's update) had no
    workload (``schedule_generic``, no knobs), so ``tune-model`` left it untuned. It is
    now carried by its last output and built, checked and timed with all of them."""
    import tensordsl as td
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.records import record_target
    from tests.helpers import poisoned
    inputs, outs = momentum_update((40, 48))
    untuned = td.build_program(inputs, outs)
    (kernel,) = untuned.kernels
    w = kernel.workload
    again = Workload.from_key(w.key, w.scheduler, w.source)
    assert again.template == "auto" and again.space()
    config = {**again.default_config(), "t0": 2, "m1": 2}
    f, shapes, dtypes = again.build(config)
    assert shapes == ((40, 48), (40, 48)) and dtypes == ("float32", "float32")
    arrays = again.arrays(seed=3)          # (in the kernel's order of reads)
    results = [poisoned(s, d) for s, d in zip(shapes, dtypes)]
    f(*arrays, *results)
    by_name = dict(zip((t.name for t in again.define()[0]), arrays))
    ordered = [by_name[t.name] for t in inputs]
    for got, want in zip(results, momentum_reference(*ordered)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with Runner(timeout=30) as runner:
        assert runner.measure(again, config)["status"] == "ok"
    db = RecordDB(tmp_path / "r.sqlite")
    db.add(w.key, record_target("llvm"), "auto", config, "ok", seconds=1e-6)
    with apply_history_best(str(tmp_path / "r.sqlite")):
        tuned = td.build_program(inputs, outs)
    s, tensors = w.schedule(config)
    name = kernel.function.func.name
    assert str(tuned.kernels[0].function.func) == str(td.lower(s, tensors, name=name)) \
        != str(kernel.function.func)
    for got, want in zip(tuned(*ordered), momentum_reference(*ordered)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("skipped", [0, 1])
def test_the_worker_checks_every_output_of_a_kernel(monkeypatch, skipped):
    """A configuration with either output wrong is caught, not timed."""
    inputs, outs = momentum_update((16, 32))
    w = Workload.of_compute(inputs, outs[-1], "update")
    real_build = Workload.build

    def second_output_skipped(self, config=None):
        f, shape, dtype = real_build(self, config)
        if (config or {}).get("t0") != 2:
            return f, shape, dtype
        return (lambda *arrays: (f(*arrays), arrays[skipped - 2].fill(0.0))), shape, dtype
    monkeypatch.setattr(Workload, "build", second_output_skipped)
    result = worker._run(w, {**w.default_config(), "t0": 2}, 3, 0.0, {})
    assert result["status"] == "wrong"
    assert worker._run(w, w.default_config(), 3, 0.0, {})["status"] == "ok"


def test_a_row_reduction_kernel_is_tuned_in_the_row_templates_space(tmp_path):
    """Regression: a program's row-wise reduction (a loss's maximum) was built with
    the row template's defaults and no workload. Its workload now carries the template,
    the worker measures it in that space, and the program reads its record."""
    import tensordsl as td
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.records import record_target
    x = td.placeholder((64, 10), name="x")
    k = td.reduce_axis((0, 10), name="k")
    m = td.compute((64, 1), lambda i, _: td.max(x[i, k], axis=k), name="row_max")
    program = td.build_program([x], [m])
    (kernel,) = program.kernels
    w = kernel.workload
    assert w.template == "rowwise" and set(w.space()) >= {"lanes", "prefetch"}
    again = Workload.from_key(w.key, w.scheduler, w.source)
    config = {**again.default_config(), "prefetch": 0, "lanes": again.space()["lanes"][0]}
    assert config != again.default_config()
    with Runner(timeout=30) as runner:
        assert runner.measure(again, config)["status"] == "ok"
    db = RecordDB(tmp_path / "r.sqlite")
    db.add(w.key, record_target("llvm"), "rowwise", config, "ok", seconds=1e-6)
    with apply_history_best(str(tmp_path / "r.sqlite")):
        tuned = td.build_program([x], [m])
    s, tensors = w.schedule(config)
    name = kernel.function.func.name
    assert str(tuned.kernels[0].function.func) == str(td.lower(s, tensors, name=name)) \
        != str(kernel.function.func)
    a = np.random.default_rng(0).standard_normal((64, 10)).astype("float32")
    np.testing.assert_array_equal(tuned(a)[0], a.max(axis=1, keepdims=True))


def test_a_kernel_is_timed_through_its_entry_point(monkeypatch):
    """``direct_call`` runs the kernel itself (what a compiled program calls), not the
    checking Python wrapper, and still writes every result."""
    import tensordsl as td
    inputs, outs = momentum_update((8, 16))
    f = td.build([*inputs, *outs])
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(tuple(int(d.value) for d in t.shape)).astype("float32")
              for t in inputs]
    results = [np.full((8, 16), np.nan, "float32") for _ in outs]
    call = worker.direct_call(f, [*arrays, *results])

    def checked_call(*args):
        raise AssertionError("timed through the checking wrapper")
    monkeypatch.setattr(type(f), "__call__", checked_call)
    call()
    for got, want in zip(results, momentum_reference(*arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_small_kernel_is_timed_for_a_number_of_runs_not_the_whole_min_time(monkeypatch):
    """A kernel of microseconds stops at ``MAX_RUNS`` runs: with ``min_time`` alone a
    whole model's small kernels took most of a job's time."""
    import time
    runs = []
    inputs, outs = momentum_update((8, 16))
    w = Workload.of_compute(inputs, outs[-1], "update")
    real_direct_call = worker.direct_call

    def counted(f, arrays):
        call = real_direct_call(f, arrays)
        return lambda: runs.append(call())
    monkeypatch.setattr(worker, "direct_call", counted)
    monkeypatch.setattr(worker, "MAX_RUNS", 50)
    start = time.perf_counter()
    assert worker._run(w, w.default_config(), 3, 30.0, {})["status"] == "ok"
    assert time.perf_counter() - start < 10 and len(runs) == 2 + 50


def test_only_kernels_of_a_percent_of_the_models_time_are_confirmed(tmp_path):
    """Confirming a kernel takes 16 measurements of 20 ms; for one of a thousandth of
    the model's time they cannot buy anything measurable, and with a whole model's
    small kernels they were most of a job's time (``worth_confirming``)."""
    from tensordsl.autotune.records import record_target
    from tensordsl.autotune.scheduler import CONFIRM_MIN_SHARE, worth_confirming
    db = RecordDB(tmp_path / "r.sqlite")
    big, twice, small, unmeasured = dense(64), dense(48), dense(16), dense(8)
    for w, seconds in ((big, 1e-3), (twice, 0.5e-3), (small, 1e-6)):
        db.add(w.key, record_target("llvm"), w.template, w.default_config(), "ok",
               seconds=seconds)
    tasks = [Task(big), Task(twice, weight=2.0), Task(small), Task(unmeasured)]
    assert [t.workload for t in worth_confirming(tasks, db)] == [big, twice]
    small_share = 1e-6 / (1e-3 + 2 * 0.5e-3 + 1e-6)
    assert small_share < CONFIRM_MIN_SHARE
    alone = [Task(small)]              # a kernel tuned alone is all of its model
    assert [t.workload for t in worth_confirming(alone, db)] == [small]
