"""``tensordsl tune`` on gradients: an operator's (``<op>_backward --attr wrt=NAME``)
and a user's compute's (``file.py:function --grad NAME``), whose records ``td.ops`` and
``td.build`` then use."""
from __future__ import annotations

import textwrap

import numpy as np
import tensordsl as td
from tensordsl import cli
from tensordsl.autotune.records import RecordDB, record_target

USER = textwrap.dedent("""
    import tensordsl as td

    def bias_tanh(m, n):
        A = td.placeholder((m, n), name="A")
        b = td.placeholder((n,), name="b")
        R = td.compute((m, n), lambda i, j: td.tanh(A[i, j] + b[j]) * A[i, j], name="R")
        return [A, b, R]
""")


def _user_file(tmp_path):
    path = tmp_path / "my_op.py"
    path.write_text(USER)
    return path


def test_tune_grad_of_a_user_compute_is_found_by_td_build(tmp_path, capsys):
    path = _user_file(tmp_path)
    db = tmp_path / "r.sqlite"
    assert cli.main(["tune", f"{path}:bias_tanh", "--shape", "40,24", "--grad", "b",
                     "--trials", "3", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "best of my_op.py:bias_tanh(40, 24) --grad b" in out
    rows = RecordDB(db).workloads()
    assert len(rows) == 1
    key = rows[0][0]
    best = RecordDB(db).best(key, record_target("llvm"))
    assert best["template"] == "auto"

    # the same gradient written in a program: td.build files it under the same key
    A = td.placeholder((40, 24), name="X")
    b = td.placeholder((24,), name="bias")
    R = td.compute((40, 24), lambda i, j: td.tanh(A[i, j] + b[j]) * A[i, j], name="out")
    gb = td.grad(R, b)
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.records import canonical
    from tensordsl.autotune.structural import structural_key
    assert canonical({"op": structural_key(gb, [A, b]),
                      "args": [["array", [40, 24], "float32"], ["array", [24], "float32"]],
                      "attrs": {}}) == key
    with apply_history_best(db):
        f = td.build([A, b, gb])
    a = np.random.default_rng(0).standard_normal((40, 24)).astype("float32")
    bb = np.random.default_rng(1).standard_normal(24).astype("float32")
    got = np.full(24, np.nan, "float32")
    f(a, bb, got)
    t = np.tanh(a + bb)
    np.testing.assert_allclose(got, ((1 - t * t) * a).sum(0), rtol=1e-4, atol=1e-4)


def test_show_grad_with_head_takes_the_cotangent_as_an_input(tmp_path, capsys):
    path = _user_file(tmp_path)
    assert cli.main(["show", f"{path}:bias_tanh", "--shape", "16,8", "--grad", "A",
                     "--head"]) == 0
    text = capsys.readouterr().out
    assert "def main(A: float32[16, 8], b: float32[8], R.grad: float32[16, 8]" in text


def test_grad_names_an_input(tmp_path, capsys):
    path = _user_file(tmp_path)
    assert cli.main(["show", f"{path}:bias_tanh", "--shape", "16,8", "--grad", "W"]) == 2
    assert "--grad 'W' must name one input placeholder (the inputs are 'A', 'b')" in \
        capsys.readouterr().err
    assert cli.main(["show", "matmul", "--shape", "16,8,4", "--grad", "a"]) == 2
    assert "matmul_backward (--attr wrt=NAME)" in capsys.readouterr().err


def test_tune_an_operator_gradient_and_td_ops_uses_it(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    assert cli.main(["tune", "matmul_backward", "--shape", "48,40,32", "--attr", "wrt=b",
                     "--trials", "3", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "best of matmul_backward(48x32, 32x40, 48x40)" in out
    ((key, target, n, _),) = RecordDB(db).workloads()
    assert n == 3 and '"wrt":"b"' in key
    best = RecordDB(db).best(key, target)
    assert best["template"] == "matmul"
    from tensordsl import ops
    from tensordsl.autotune import apply_history_best
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((48, 32)).astype("float32"), \
        rng.standard_normal((32, 40)).astype("float32")
    g = rng.standard_normal((48, 40)).astype("float32")
    with apply_history_best(db):
        ga, gb = td.ops.matmul_backward(a, b, g)
        used = [k for k in ops._CACHE if k[0] == "matmul_backward" and k[-2] == str(db)]
    assert used
    np.testing.assert_allclose(gb, a.T @ g, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ga, g @ b.T, rtol=1e-4, atol=1e-4)
