"""td.ops's repeated calls (same shapes, dtypes and options) go straight to the kernel:
they compute what the first call computed, and anything the first call would have
converted or refused still takes the general path."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td


def test_a_repeated_call_computes_on_the_new_arrays():
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((5, 7)).astype("float32")
        w = rng.standard_normal((3, 7)).astype("float32")
        b = rng.standard_normal(3).astype("float32")
        np.testing.assert_allclose(td.ops.dense(x, w, b), x @ w.T + b, rtol=1e-5, atol=1e-6)


def test_a_non_contiguous_array_on_a_repeat_is_made_contiguous():
    x = np.arange(24, dtype="float32").reshape(4, 6)
    td.ops.relu(x - 10)
    view = (x - 10)[:, ::2]
    np.testing.assert_array_equal(td.ops.relu(np.ascontiguousarray(view)),
                                  np.maximum(view, 0))
    strided = (np.arange(48, dtype="float32").reshape(4, 12) - 10)[:, ::2]
    assert strided.shape == (4, 6) and not strided.flags.c_contiguous
    np.testing.assert_array_equal(td.ops.relu(strided), np.maximum(strided, 0))


def test_an_operand_the_first_call_converts_is_converted_every_time():
    a = np.arange(6, dtype="int32")
    b = np.linspace(0, 1, 6)
    for _ in range(2):
        got = td.ops.add(a, b)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, a + b)
    for _ in range(2):
        np.testing.assert_allclose(td.ops.divide(a, 2), a / 2)


def test_option_types_are_part_of_a_repeated_call():
    x = np.ones((1, 1, 4, 4), "float32")
    td.ops.max_pool2d(x, 2, stride=2)
    td.ops.max_pool2d(x, 2, stride=2)
    with pytest.raises(TypeError, match="stride"):
        td.ops.max_pool2d(x, 2, stride=2.0)


def test_tuned_config_says_which_record_a_call_compiles_with(tmp_path, capsys):
    from tensordsl import cli
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.records import RecordDB
    db = tmp_path / "r.sqlite"
    assert cli.main(["tune", "matmul", "--shape", "24,40,16", "--trials", "2",
                     "--db", str(db)]) == 0
    capsys.readouterr()
    a = np.ones((24, 16), np.float32)       # --shape M,N,K
    b = np.ones((16, 40), np.float32)
    assert td.ops.tuned_config("matmul", a, b) is None       # not in force
    with apply_history_best(db):
        (key, target, _, _), = RecordDB(db).workloads()
        assert td.ops.tuned_config("matmul", a, b) == RecordDB(db).best(key, target)["config"]
        assert td.ops.tuned_config("matmul", a, b.T.copy(), transpose_b=True) is None
    with pytest.raises(ValueError, match="operator must be a dense operator of td.ops"):
        td.ops.tuned_config("spmv", a, b)


def test_defaults_only_reads_no_records(tmp_path, capsys):
    # records in force (here a database of the CLI's): ignored within defaults_only(),
    # where the call compiles and runs with the template's defaults
    from tensordsl import cli
    from tensordsl.autotune import apply_history_best, defaults_only
    db = tmp_path / "r.sqlite"
    assert cli.main(["tune", "matmul", "--shape", "20,36,12", "--trials", "2",
                     "--db", str(db)]) == 0
    capsys.readouterr()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((20, 12)).astype(np.float32), \
        rng.standard_normal((12, 36)).astype(np.float32)
    with apply_history_best(db):
        assert td.ops.tuned_config("matmul", a, b) is not None
        with defaults_only():
            assert td.ops.tuned_config("matmul", a, b) is None
            np.testing.assert_allclose(td.ops.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
        assert td.ops.tuned_config("matmul", a, b) is not None
