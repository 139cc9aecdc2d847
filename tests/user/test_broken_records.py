"""A broken or missing records database never breaks ``td.ops``, and read-only commands
never create one."""
import os
import subprocess
import sys

import pytest

from tensordsl import autotune

from .conftest import ROOT

OPS = """
import warnings
import numpy as np
import tensordsl as td
warnings.simplefilter("always")
x = np.arange(-4, 4, dtype="float32")
print(td.ops.relu(x).tolist())
print(td.ops.add(x, x).tolist())
print(td.ops.matmul(np.ones((4, 4), "float32"), np.ones((4, 4), "float32")).sum())
"""


def _corrupt(cache):
    cache.mkdir(exist_ok=True)
    path = cache / "records.sqlite"
    path.write_bytes(b"this is not a database, it was overwritten by mistake\n" * 40)
    return path


def test_td_ops_run_on_a_corrupt_local_database_with_one_warning(tmp_path):
    path = _corrupt(tmp_path / "cache")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TENSORDSL_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", OPS], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0]",
                                       "[-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0]", "64.0"]
    # one warning for three operators, naming the file and what to do
    assert out.stderr.count("UserWarning") == 1, out.stderr
    assert str(path) in out.stderr and "move it away or delete it" in out.stderr


def test_commands_on_a_corrupt_database_name_the_file(tmp_path, tensordsl):
    path = _corrupt(tmp_path / "cache")
    for argv in (["records", "list"], ["records", "best"],
                 ["tune", "relu", "--shape", "64", "--trials", "1"],
                 ["show", "relu", "--shape", "64"]):
        rc, out, err = tensordsl(*argv, cache=tmp_path / "cache")
        if argv[0] == "show":     # show builds as td.ops does: a warning, then the IR
            assert rc == 0 and "def main" in out, err
            assert str(path) in err
            continue
        assert rc == 2, (argv, err)
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert str(path) in err and "cannot be read" in err


@pytest.mark.parametrize("command", ["list", "best", "export", "delete"])
def test_read_only_commands_refuse_a_missing_database(tmp_path, tensordsl, command):
    extra = ["matmul(8x8, 8x8)"] if command == "delete" else []
    rc, out, err = tensordsl("records", command, *extra, "--db", "typo.sqlite")
    assert rc == 2, err
    assert "no record database at" in err and "typo.sqlite" in err
    assert not (tmp_path / "typo.sqlite").exists()


def test_apply_history_best_refuses_a_missing_database(tmp_path):
    with pytest.raises(ValueError, match="no record database at .*typo.sqlite"):
        with autotune.apply_history_best(tmp_path / "typo.sqlite"):
            pass
    assert not (tmp_path / "typo.sqlite").exists()
