"""Measurement in a worker process and the search, end to end on small workloads."""
import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import tensordsl as td
from tensordsl import autotune, cli
from tensordsl.autotune.records import RecordDB, record_target
from tensordsl.autotune.tuner import confirm
from tests.helpers import poisoned

ROOT = Path(__file__).resolve().parents[2]

USER_TEMPLATE = textwrap.dedent("""
    import ctypes
    import tensordsl as td

    SPACE = {"mode": ["ok", "crash", "hang"], "factor": [4, 8, 16]}
    DEFAULT = {"mode": "ok", "factor": 8}

    def scale(n):
        x = td.placeholder((n,), name="x")
        return [x, td.compute(x.shape, lambda i: x[i] * 2.0 + 1.0, name="scale")]

    def schedule(s, outs, config):
        (out,) = outs
        if config.get("mode") == "crash":
            ctypes.string_at(0)           # a segfault, like a bad generated kernel
        if config.get("mode") == "hang":
            while True:
                pass
        o, i = s[out].split(out.op.axis[0], factor=config.get("factor", 8))
        s[out].vectorize(i)
""")


def user_workload(tmp_path):
    path = tmp_path / "user_template.py"
    path.write_text(USER_TEMPLATE)
    return autotune.Workload(f"{path}:scale", [("value", 1000)])


def test_a_crashing_and_a_hanging_candidate_are_recorded_and_the_tuner_goes_on(tmp_path):
    w = user_workload(tmp_path)
    with autotune.Runner(timeout=5) as runner:
        results = [runner.measure(w, {"mode": m, "factor": 8})
                   for m in ("ok", "crash", "ok", "hang", "ok")]
    assert [r["status"] for r in results] == ["ok", "crash", "ok", "timeout", "ok"]
    assert "signal" in results[1]["error"]


def test_tune_measures_every_distinct_configuration_once(tmp_path):
    w = user_workload(tmp_path)
    db = RecordDB(tmp_path / "r.sqlite")
    best = autotune.tune(w, trials=20, db=db, timeout=5)
    rows = db.trials(w.key, record_target("llvm"))
    # 9 configurations exist: the search stops when the space is exhausted
    assert len(rows) == 9
    assert len({json.dumps(r["config"], sort_keys=True) for r in rows}) == 9
    assert {r["status"] for r in rows} == {"ok", "crash", "timeout"}
    assert best["config"]["mode"] == "ok"
    with pytest.raises(ValueError, match="pass resume=True"):
        autotune.tune(w, trials=20, db=db)


def test_ops_use_the_best_record_inside_apply_history_best(tmp_path):
    a = np.random.default_rng(0).standard_normal((48, 40)).astype("float32")
    b = np.random.default_rng(1).standard_normal((40, 72)).astype("float32")
    w = autotune.Workload.from_arrays("matmul", [a, b], {})
    db = RecordDB(tmp_path / "r.sqlite")
    db.add(w.key, record_target("llvm"), "matmul", {"mr": 4, "nr": 16, "ku": 1}, "ok",
           seconds=1e-6)
    from tensordsl import ops
    c0 = td.ops.matmul(a, b)
    with autotune.apply_history_best(db):
        c1 = td.ops.matmul(a, b)
        tuned = [v[0] for k, v in ops._CACHE.items() if k[0] == "matmul" and k[-1]]
    np.testing.assert_allclose(c1, a @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(c0, c1, rtol=1e-5, atol=1e-5)
    text = str(tuned[-1].func)
    assert "1, 16)]" in text and "1, 64)]" not in text   # nr = 16, not the default 64


def _tune_cmd(tmp_path, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tensordsl.cli", "tune", "matmul", "--shape", "96,80,64",
         "--trials", "30", "--db", str(tmp_path / "r.sqlite"), *extra],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_reports_the_best_record(out: str, db: RecordDB):
    """The tune command's summary names the database's fastest record: time and config."""
    (line,) = [line for line in out.splitlines() if line.startswith("best of ")]
    ((workload, target, _, _),) = db.workloads()
    best = db.best(workload, target)
    assert f": {best['seconds'] * 1e3:.3f} ms" in line, (line, best)
    assert ast.literal_eval(line.split("  config ", 1)[1]) == best["config"], (line, best)


def test_kill_9_then_resume_loses_and_repeats_nothing(tmp_path):
    proc = _tune_cmd(tmp_path)
    path = tmp_path / "r.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        if path.exists() and len(RecordDB(path).trials()) >= 6:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = RecordDB(path).trials()
    assert 6 <= len(before) < 30
    done = _tune_cmd(tmp_path, "--resume")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    after = RecordDB(path).trials()
    assert len(after) == 30
    assert after[:len(before)] == before           # nothing stored was lost or changed
    configs = [json.dumps(r["config"], sort_keys=True) for r in after]
    assert len(set(configs)) == 30                 # and nothing measured twice
    assert "best of matmul(96x64, 64x80)" in out
    _assert_reports_the_best_record(out, RecordDB(path))


def test_records_cli_list_best_export_import(tmp_path, capsys):
    db = RecordDB(tmp_path / "a.sqlite")
    db.add('{"op":"x"}', "llvm", "matmul", {"mr": 6}, "ok", seconds=0.002)
    db.add('{"op":"x"}', "llvm", "matmul", {"mr": 8}, "ok", seconds=0.001)
    assert cli.main(["records", "list", "--db", str(tmp_path / "a.sqlite")]) == 0
    assert "2 trials\tbest 1.000 ms" in capsys.readouterr().out
    assert cli.main(["records", "best", "--db", str(tmp_path / "a.sqlite")]) == 0
    assert "{'mr': 8}" in capsys.readouterr().out
    out = tmp_path / "all.jsonl"
    assert cli.main(["records", "export", "--db", str(tmp_path / "a.sqlite"),
                     "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert cli.main(["records", "import", str(out), "--db", str(tmp_path / "b.sqlite")]) == 0
    assert "imported 2 records (0 already present)" in capsys.readouterr().out
    assert [r["config"] for r in RecordDB(tmp_path / "b.sqlite").trials()] == [{"mr": 6}, {"mr": 8}]


@pytest.mark.parametrize("argv, message", [
    (["tune", "matmul", "--shape", "10,x"], "--shape: expected sizes"),
    (["tune", "matmul", "--shape", "8,8", "--shape", "9,8"], "matmul"),
    (["tune", "no_such_op", "--shape", "8"], "unknown operator 'no_such_op'"),
    (["tune", "matmul", "--shape", "8,8,8", "--trials", "0"], "--trials: expected a positive"),
    (["tune", "matmul", "--shape", "8,8,8", "--confirm", "-1"], "--confirm: expected a number"),
    (["tune-layers", "benchmarks/models.py:bert", "--confirm", "-2"], "--confirm: expected"),
    (["records", "import", "/no/such/file.jsonl"], "no such file"),
])
def test_cli_errors_are_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert cli.main(argv + ["--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_tune_cli_draws_best_so_far(tmp_path, capsys, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread
    plotted = []
    plot = Axes.plot

    def recording_plot(self, *args, **kwargs):
        plotted.append(args[:2])
        return plot(self, *args, **kwargs)
    monkeypatch.setattr(Axes, "plot", recording_plot)
    user_workload(tmp_path)
    op = f"{tmp_path / 'user_template.py'}:scale"
    png = tmp_path / "tune.png"
    assert cli.main(["tune", op, "--shape", "1000", "--trials", "4", "--timeout", "5",
                     "--db", str(tmp_path / "r.sqlite"), "--plot", str(png)]) == 0
    db = RecordDB(tmp_path / "r.sqlite")
    _assert_reports_the_best_record(capsys.readouterr().out, db)
    # the curve: after each trial, the fastest successful record so far (in ms, or its
    # GFLOP/s when the workload counts them)
    rows = db.trials()
    assert len(rows) == 4
    fastest = [min((r for r in rows[:t + 1] if r["status"] == "ok"),
                   key=lambda r: r["seconds"], default=None) for t in range(len(rows))]
    gflops = any(r["gflops"] for r in rows if r["status"] == "ok")
    want = [None if r is None else r["gflops"] if gflops else r["seconds"] * 1e3
            for r in fastest]
    ((xs, ys),) = plotted
    assert list(xs) == [1, 2, 3, 4]
    assert [y is None for y in ys] == [y is None for y in want]
    assert [y for y in ys if y is not None] == pytest.approx([y for y in want if y is not None])
    # a 6 x 4 inch PNG at 100 dpi with the curve drawn in it
    image = imread(png)
    assert image.shape[:2] == (400, 600)
    curve = np.isclose(image[..., :3], to_rgb("C0"), atol=0.1).all(axis=-1)
    assert curve.sum() > 100


def test_bench_and_show_an_operator_from_the_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "tensordsl.cli", "bench", "matmul", "--shape",
                          "64,48,32", "--rounds", "1"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "matmul(64x32, 32x48)"
    ours = float(lines[1].split()[1])
    (theirs,) = [line.split() for line in lines[2:] if "ratio numpy/tensordsl" in line]
    numpy_ms, ratio = float(theirs[1]), float(theirs[-1])
    assert ours > 0 and numpy_ms > 0
    # the ratio is numpy's time over ours (printed to 3 decimals of a ms, the ratio to 2)
    low = max(numpy_ms - 5e-4, 0) / (ours + 5e-4)
    high = (numpy_ms + 5e-4) / max(ours - 5e-4, 1e-9)
    assert low - 5e-3 <= ratio <= high + 5e-3, (ours, numpy_ms, ratio)
    shown = subprocess.run([sys.executable, "-m", "tensordsl.cli", "show", "softmax",
                            "--shape", "8,64", "--llvm"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "define" in shown.stdout and "<16 x float>" in shown.stdout


def test_loop_nest_features_reflect_the_knobs():
    from tensordsl.autotune.features import IR_FEATURES, ir_features
    w = autotune.Workload("matmul", [("array", (256, 256), "float32"),
                                     ("array", (256, 256), "float32")])
    wide = dict(zip(IR_FEATURES, ir_features(w, {"mr": 6, "nr": 64, "ku": 2, "kc": 256})))
    narrow = dict(zip(IR_FEATURES, ir_features(w, {"mr": 4, "nr": 16, "ku": 1, "kc": 64})))
    assert wide["vector_lanes"] == 6 and narrow["vector_lanes"] == 4      # log2 of 64, 16
    assert wide["unrolled"] > narrow["unrolled"]                          # 6x2 vs 4x1
    assert wide["inner_serial"] > narrow["inner_serial"]                  # k: 128 vs 64


def test_build_of_bare_tensors_uses_the_record_tuned_for_that_compute(tmp_path):
    # tensordsl tune file.py:function files records under what the function computes;
    # td.build([tensors]) of the same computation, named differently, finds them
    src = tmp_path / "op.py"
    src.write_text("import tensordsl as td\n"
                   "def twice(m, n):\n"
                   "    x = td.placeholder((m, n), name='x')\n"
                   "    return [x, td.compute(x.shape, lambda i, j: x[i, j] * 2.0, name='y')]\n")
    w = autotune.Workload(f"{src}:twice", [("value", 64), ("value", 48)])
    assert w.op.startswith("compute:") and w.template == "auto"
    db = RecordDB(tmp_path / "r.sqlite")
    db.add(w.key, record_target("llvm"), "auto", {"t0": 1, "m0": 1, "t1": 16, "m1": 1},
           "ok", seconds=1e-6)
    X = td.placeholder((64, 48), name="other_name")
    Y = td.compute((64, 48), lambda a, b: X[a, b] * 2.0, name="z")
    with autotune.apply_history_best(db):
        f = td.build([X, Y])
    assert "1, 16)]" in str(f.func)
    x = np.random.default_rng(0).standard_normal((64, 48)).astype("float32")
    y = poisoned(x.shape)
    f(x, y)
    np.testing.assert_array_equal(y, x * 2)


@pytest.mark.parametrize("op, shapes", [
    ("dense", [(256, 256), (10, 256), (10,)]),       # a classifier head: few columns
    ("matmul", [(256, 256), (256, 10)]),
    ("dense", [(64, 256), (256, 256), (256,)]),
    ("dense", [(128, 768), (3072, 768), (3072,)]),    # computed transposed by default
    ("softmax", [(64, 256)]),
    ("conv2d_nchw", [(8, 256, 14, 14), (256, 256, 3, 3)]),
])
def test_the_first_trial_builds_the_kernel_that_runs_without_a_record(op, shapes):
    # a tuning's first trial is the defaults spelled out; were its kernel another one
    # than the untuned kernel, the tuner would compare candidates with the wrong
    # baseline and could file a record slower than running untuned (the MLP's 256 -> 10
    # layer: 0.02 ms untuned, 0.96 ms as its "default" trial)
    from tensordsl.autotune.workload import Workload
    w = Workload(op, [("array", s, "float32") for s in shapes])
    untuned = str(td.lower(*w.schedule(None)))
    assert str(td.lower(*w.schedule(w.default_config()))) == untuned


def test_the_row_split_is_a_knob_that_overrides_the_shape_rule():
    from tensordsl.autotune.workload import Workload
    w = Workload("dense", [("array", s, "float32") for s in [(256, 256), (10, 256), (10,)]])
    assert "row_split" in w.space()
    two = {**w.default_config(), "parts": 2}     # (another test may have set 1 thread)
    by_rule = str(td.lower(*w.schedule(two)))
    assert str(td.lower(*w.schedule({**two, "row_split": True}))) == by_rule
    assert str(td.lower(*w.schedule({**two, "row_split": False}))) != by_rule


def test_every_kernel_of_a_training_step_starts_its_tuning_from_its_untuned_kernel():
    from tensordsl.nn.tune_model import step_workloads
    for w in step_workloads("mlp", 256, "compiled"):
        assert str(td.lower(*w.schedule(w.default_config()))) == \
            str(td.lower(*w.schedule(None))), w


class ScriptedExecutor:
    """Measures each configuration at a fixed time (its ``factor``'s), noting the order."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def run(self, workload, configs, on_result):
        self.calls.append([c["factor"] for c in configs])
        for c in configs:
            on_result(c, {"status": "ok", "seconds": self.seconds[c["factor"]]})


def searched(tmp_path):
    """A search's trials of the user workload: its default (factor 8) measured in a busy
    second, factor 4 in a quiet one."""
    w = user_workload(tmp_path)
    db = RecordDB(tmp_path / "r.sqlite")
    target = record_target("llvm")
    for factor, seconds in ((8, 17e-3), (4, 8.5e-3), (16, 9.0e-3)):
        db.add(w.key, target, w.template, {"mode": "ok", "factor": factor}, "ok",
               seconds=seconds)
    return w, db, target


def test_confirming_rounds_undo_a_default_measured_while_the_machine_was_busy(tmp_path):
    # side by side the default is the fastest
    w, db, target = searched(tmp_path)
    db.add(w.key, target, w.template, {"mode": "crash", "factor": 8}, "crash", error="signal")
    assert db.best(w.key, target)["config"]["factor"] == 4
    scripted = ScriptedExecutor({8: 8.8e-3, 4: 9.4e-3, 16: 9.0e-3})
    best = confirm(w, db, executor=scripted, top=3, rounds=2)
    assert scripted.calls == [[8, 4, 16, 8, 4, 16]]            # default first, interleaved
    assert best["config"]["factor"] == 8
    assert (best["seconds"], best["measurements"]) == (8.8e-3, 3)
    assert len(db.trials(w.key, target)) == 4                   # the search's, as before
    assert len(db.trials(w.key, target, confirming=True)) == 10


def test_confirming_goes_on_while_the_fastest_is_unconfirmed(tmp_path):
    w, db, target = searched(tmp_path)
    scripted = ScriptedExecutor({8: 9.5e-3, 4: 9.4e-3, 16: 9.1e-3})
    best = confirm(w, db, executor=scripted, top=1, rounds=2)
    # after the first pass factor 16's single 9.0 ms led: it is measured again too
    assert scripted.calls == [[8, 4, 8, 4], [16, 16]]
    assert best["config"]["factor"] == 16 and best["seconds"] == 9.1e-3
