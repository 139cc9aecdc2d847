"""The step check (``autotune/in_step.py``): tuned kernels timed inside the program,
the faster configuration there kept (``records.served``) until the workload is tuned
again."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

import tensordsl as td
from tensordsl.autotune import apply_history_best, defaults_only
from tensordsl.autotune.history import best_config
from tensordsl.autotune.records import IN_STEP_RUN, RecordDB, record_target


def _add_check(db, seconds: dict, created: float, run="c1" + IN_STEP_RUN):
    for config, s in seconds.items():
        db.add("w", "llvm", "auto", json.loads(config), "ok", seconds=s, run=run,
               created=created)


def test_a_build_takes_the_step_checks_choice_until_the_workload_is_tuned_again(tmp_path):
    db = RecordDB(tmp_path / "r.sqlite")
    db.add("w", "llvm", "auto", {"t": 1}, "ok", seconds=3.0, created=1.0)   # the default
    db.add("w", "llvm", "auto", {"t": 4}, "ok", seconds=2.0, created=2.0)   # fastest alone
    assert db.best("w", "llvm")["config"] == {"t": 4}
    # inside the step the default was faster: a build takes it, with its time there
    _add_check(db, {'{"t": 1}': 5.0, '{"t": 4}': 6.0}, created=3.0)
    best = db.best("w", "llvm", "auto")
    assert (best["config"], best["seconds"]) == ({"t": 1}, 5.0)
    # the check's times are no trials: the search and its counts never see them
    assert [r["config"] for r in db.trials("w", "llvm")] == [{"t": 1}, {"t": 4}]
    assert [n for _, _, n, _ in db.workloads()] == [2]
    assert len(db.trials("w", "llvm", in_step=True)) == 4
    # the tuner compares its trials with the trials' fastest, never with a check's time
    assert db.best("w", "llvm", in_step=False)["config"] == {"t": 4}
    # a trial that failed does not make the check stale
    db.add("w", "llvm", "auto", {"t": 2}, "error", error="no", created=3.5)
    assert db.best("w", "llvm")["config"] == {"t": 1}
    # a newer check decides alone
    _add_check(db, {'{"t": 1}': 5.0, '{"t": 4}': 4.0}, created=4.0, run="c2" + IN_STEP_RUN)
    assert db.best("w", "llvm")["config"] == {"t": 4}
    # tuned again: the search's fastest, until the next check
    db.add("w", "llvm", "auto", {"t": 8}, "ok", seconds=1.0, created=5.0)
    assert db.best("w", "llvm")["config"] == {"t": 8}


def test_exported_best_records_carry_the_step_checks_choice(tmp_path):
    db = RecordDB(tmp_path / "r.sqlite")
    db.add("w", "llvm", "auto", {"t": 1}, "ok", seconds=3.0, created=1.0)
    db.add("w", "llvm", "auto", {"t": 4}, "ok", seconds=2.0, created=2.0)
    _add_check(db, {'{"t": 1}': 5.0, '{"t": 4}': 6.0}, created=3.0)
    db.add("w", "llvm", "auto", {"t": 2}, "timeout", created=4.0)   # (not a newer trial)
    text = io.StringIO()
    db.export_jsonl(text, best_only=True)
    shipped = RecordDB(tmp_path / "shipped.sqlite")
    shipped.import_jsonl(text.getvalue().splitlines())
    assert shipped.best("w", "llvm")["config"] == {"t": 1}


def _small_program():
    x = td.placeholder((8, 6), "float32", "x")
    w = td.placeholder((5, 6), "float32", "w")
    k = td.reduce_axis((0, 6), "k")
    y = td.compute((8, 5), lambda i, j: td.sum(x[i, k] * w[j, k], axis=k), name="y")
    r = td.compute((8, 5), lambda i, j: td.max(y[i, j], td.const(0.0, "float32")), name="r")
    kr = td.reduce_axis((0, 5), "kr")
    s = td.compute((8,), lambda i: td.sum(r[i, kr], axis=kr), name="s")
    return td.build_program([x, w], [r, s]), (x, w), (r, s)


def test_timed_runs_time_each_kernel_in_its_place_and_write_what_a_call_writes():
    program, _, outputs = _small_program()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6)).astype("float32")
    w = rng.standard_normal((5, 6)).astype("float32")
    run = program.timed_runs(x, w)
    slots = [program._slot[t] for t in outputs]
    for slot in slots:
        run.arrays[slot].fill(np.nan)
    seconds = run()
    assert len(seconds) == len(program.kernels) and all(s > 0 for s in seconds)
    relu = np.maximum(x @ w.T, 0)
    np.testing.assert_allclose(run.arrays[slots[0]], relu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.arrays[slots[1]], relu.sum(axis=1), rtol=1e-5, atol=1e-5)


def _other_config(w) -> dict:
    """The default configuration with its first knob that has another value moved."""
    config = w.default_config()
    for knob, values in w.space().items():
        others = [v for v in values if v != config.get(knob)]
        if others:
            return dict(config, **{knob: others[0]})
    raise AssertionError(f"{w!r} has one configuration")


def test_the_step_check_files_both_times_and_builds_take_the_faster(tmp_path):
    from tensordsl.autotune.in_step import check_in_step
    from tensordsl.nn.tune_model import check_step, step_program
    kernels = step_program("mlp", batch_size=16).kernels
    workloads = list({k.workload.key: k.workload for k in kernels}.values())[:4]
    target = record_target("llvm")
    db = RecordDB(tmp_path / "r.sqlite")
    for w in workloads:   # a tuning whose fastest alone is not the default
        db.add(w.key, target, w.template, w.default_config(), "ok", seconds=2.0)
        db.add(w.key, target, w.template, _other_config(w), "ok", seconds=1.0)
    checked, step = check_step("mlp", 16, db, rounds=20)
    assert {c.workload.key for c in checked} == {w.key for w in workloads}
    assert step["defaults"] > 0 and step["tuned"] > 0
    for c in checked:
        w = c.workload
        assert c.kernels == sum(k.workload.key == w.key for k in kernels)
        assert len(db.trials(w.key, target, in_step=True)) == 4
        with apply_history_best(db):
            assert best_config(w.key, "llvm", w.template) == \
                (_other_config(w) if c.keeps_tuned else w.default_config())
    # nothing tuned: nothing to check
    empty = RecordDB(tmp_path / "empty.sqlite")
    with defaults_only():
        program = step_program("mlp", batch_size=16)
    assert check_in_step(program, program, [], empty) == []
    with pytest.raises(ValueError, match="do not run the same kernels"):
        check_in_step(program, _small_program()[0], [], db)


def test_the_default_configuration_filed_builds_what_no_record_builds(tmp_path):
    # the step check files a kernel's default as ``default_config()``: a build from
    # that record must be the kernel built without any
    from tensordsl.nn.tune_model import step_program
    with defaults_only():
        plain = step_program("mlp", batch_size=16).kernels
    db = RecordDB(tmp_path / "r.sqlite")
    target = record_target("llvm")
    for w in {k.workload.key: k.workload for k in plain}.values():
        db.add(w.key, target, w.template, w.default_config(), "ok", seconds=1.0)
    with apply_history_best(db):
        filed = step_program("mlp", batch_size=16).kernels
    for a, b in zip(plain, filed):
        assert a.function.get_source("ll") == b.function.get_source("ll"), \
            a.writes[0].op.name
