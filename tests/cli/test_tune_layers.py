"""``tensordsl tune-layers FILE.py:NAME``: a model's layers named in a file (a list of
``td.ops`` calls, a function returning one, or a function running them), tuned within
one budget; the records are those ``td.ops`` then compiles with."""
from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

from tensordsl import cli
from tensordsl.autotune import layers

LAYERS_FILE = """
import numpy as np
import tensordsl as td

x = np.empty((48, 40), np.float32)
w = np.empty((24, 40), np.float32)
b = np.empty((24,), np.float32)
CALLS = [("dense", [x, w, b], {}), ("relu", [x], {}), ("dense", [x, w, b], {})]

def calls():
    return CALLS

def runs():
    h = td.ops.dense(np.ones((48, 40), np.float32), np.ones((24, 40), np.float32),
                     np.zeros(24, np.float32))
    td.ops.softmax(h, axis=-1)

NOT_A_LIST = 3
"""


@pytest.fixture
def layer_file(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(textwrap.dedent(LAYERS_FILE))
    return path


def test_each_form_names_its_distinct_workloads(layer_file):
    listed = layers.workloads(layers.load(f"{layer_file}:CALLS"))
    assert [repr(w) for w in listed] == ["dense(48x40, 24x40, 24)", "relu(48x40)"]
    assert [w.key for w in layers.workloads(layers.load(f"{layer_file}:calls"))] == \
        [w.key for w in listed]
    ran = layers.workloads(layers.load(f"{layer_file}:runs"))
    assert [w.op for w in ran] == ["dense", "softmax"]
    # the key td.ops files its records under for that very call
    import tensordsl as td
    x, w, b = (np.empty(s, np.float32) for s in ((48, 40), (24, 40), (24,)))
    assert listed[0].key == td.ops.call_workload("dense", [x, w, b], {}, "test")[0].key


def test_a_file_inside_a_package_is_imported_as_its_module():
    bert = layers.workloads(layers.load("benchmarks/models.py:bert"))
    assert [w.op for w in bert] == ["dense", "dense", "dense", "batch_matmul",
                                    "batch_matmul", "softmax", "layer_norm"]
    assert len(layers.workloads(layers.load("benchmarks/models.py:resnet50"))) == 46


@pytest.mark.parametrize("spec, words", [
    ("mymodel.py", "expected path/to/file.py:NAME"),
    ("nowhere.py:calls", "no such file"),
    ("{file}:missing", "has no 'missing'"),
    ("{file}:NOT_A_LIST", "expected a list of td.ops calls"),
])
def test_bad_specs_are_named(layer_file, spec, words, capsys):
    spec = spec.format(file=layer_file)
    assert cli.main(["tune-layers", spec, "--trials", "2"]) == 2
    assert words in capsys.readouterr().err


def test_an_unknown_operator_is_named(tmp_path):
    with pytest.raises(ValueError, match="item 0: operator must be a dense operator of "
                                         "td.ops .*got 'conv9d'"):
        layers.workloads([("conv9d", [np.empty(3, np.float32)], {})])


def test_tune_layers_shares_one_budget_and_td_ops_uses_the_records(layer_file, tmp_path,
                                                                   capsys):
    db = tmp_path / "r.sqlite"
    assert cli.main(["tune-layers", f"{layer_file}:calls", "--trials", "5", "--db",
                     str(db), "--schedule", "share"]) == 0
    out = capsys.readouterr().out
    assert "2 distinct kernels in " in out and "; 5 trials, share schedule:" in out
    compared = re.findall(r"default +(\S+) ms  best +(\S+) ms +(\S+)x", out)
    assert len(compared) == 2
    for default, best, ratio in compared:   # the best is at most the default's time
        assert float(best) <= float(default) + 1e-9
        assert float(ratio) == pytest.approx(float(default) / float(best), rel=0.02)
    assert re.search(r"the tuned kernels' total: \S+ ms with defaults, \S+ ms tuned", out)
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.records import RecordDB
    records = RecordDB(db)
    tuned = layers.workloads(layers.load(f"{layer_file}:calls"))
    assert {key for key, _, _, _ in records.workloads()} == {w.key for w in tuned}
    assert sum(n for _, _, n, _ in records.workloads()) == 5
    import tensordsl as td
    from tensordsl.autotune.records import record_target
    with apply_history_best(db):
        x, w, b = (np.empty(s, np.float32) for s in ((48, 40), (24, 40), (24,)))
        best = records.best(tuned[0].key, record_target("llvm"))["config"]
        assert td.ops.tuned_config("dense", x, w, b) == best


def test_resume_counts_the_stored_trials_against_the_budget(layer_file, tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    spec = f"{layer_file}:calls"
    from tensordsl.autotune.records import RecordDB
    assert cli.main(["tune-layers", spec, "--trials", "3", "--db", str(db)]) == 0
    assert len(RecordDB(db).trials()) == 3        # a job stopped after 3 of its 5 trials
    assert cli.main(["tune-layers", spec, "--trials", "5", "--db", str(db), "--resume"]) == 0
    assert len(RecordDB(db).trials()) == 5
    assert cli.main(["tune-layers", spec, "--trials", "5", "--db", str(db), "--resume"]) == 0
    assert len(RecordDB(db).trials()) == 5        # nothing was left
    assert cli.main(["tune-layers", spec, "--trials", "2", "--db", str(db)]) == 0
    assert len(RecordDB(db).trials()) == 7        # without --resume: on top of them
    capsys.readouterr()
    assert cli.main(["tune-layers", spec, "--trials", "2", "--resources", "cpu-x=1"]) == 2
    assert "--resources: only with --cluster" in capsys.readouterr().err
