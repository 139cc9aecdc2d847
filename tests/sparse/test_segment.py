"""``s[T].segment(p, pos)``: the stored positions of a compressed level by their rows
(TACO's coordinate recovery) — the row ids read as the runs loop, results against
scipy over split, balanced and replayed schedules, and the refusals."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import kernels.sparse as K
import tensordsl as td
from tensordsl.schedule.trace import replay
from tests.helpers import poisoned


def _sparse_mul(m=30, n=20):
    A = td.sparse_placeholder((m, n), "csr", name="A")
    D = td.placeholder((m, n), "float32", "D")
    return A, D, K.sparse_mul(A, D)


def _run(s, A, D, out, M, d):
    f = td.build(s, [*A.placeholders(), D, out])
    S = td.nd.sparse_array(M)
    got = poisoned((M.nnz,))
    f(*[S.component(t.name.split(".", 1)[1]) for t in A.placeholders()], d, got)
    return got


@pytest.mark.parametrize("how", ["plain", "split", "balanced"])
def test_positions_by_rows_match_scipy(how):
    A, D, out = _sparse_mul()
    s = td.create_schedule(out.op)
    runs, position = s[out].segment(out.op.axis[0], A.pos[1])
    if how == "split":
        outer, _ = s[out].split(runs, factor=7)
        s[out].parallel(outer)
    elif how == "balanced":
        s[out].parallel(runs, balance=A.pos[1])
    text = str(td.lower(s, [*A.placeholders(), D, out], check_indices=False))
    assert "A.rows1[" not in text.split("\n", 1)[1]     # the row is the loop's
    rng = np.random.default_rng(1)
    M = sp.random(30, 20, 0.2, format="lil", dtype="float32", random_state=rng)
    M[4, :] = 1.0                     # one dense row; others empty
    M = sp.csr_matrix(M)
    d = rng.random((30, 20), dtype=np.float32)
    rows = np.repeat(np.arange(30), np.diff(M.indptr))
    np.testing.assert_allclose(_run(s, A, D, out, M, d), M.data * d[rows, M.indices],
                               rtol=1e-6)


def test_a_replayed_trace_segments_again():
    A, D, out = _sparse_mul()
    s = td.create_schedule(out.op)
    runs, _ = s[out].segment(out.op.axis[0], A.pos[1])
    s[out].parallel(runs)
    again = replay(s.trace, [out])
    assert str(td.lower(again, [*A.placeholders(), D, out])) == \
        str(td.lower(s, [*A.placeholders(), D, out]))


def test_segment_refusals_name_the_problem():
    A, D, out = _sparse_mul()
    s = td.create_schedule(out.op)
    with pytest.raises(td.ScheduleError, match="pos must be a 1-d integer tensor"):
        s[out].segment(out.op.axis[0], D)
    outer, inner = s[out].split(out.op.axis[0], factor=4)
    with pytest.raises(td.ScheduleError, match="a data-parallel axis of the stage's own"):
        s[out].segment(inner, A.pos[1])
    s2 = td.create_schedule(out.op)
    runs, position = s2[out].segment(out.op.axis[0], A.pos[1])
    s2[out].reorder(position, runs)
    with pytest.raises(td.ScheduleError, match="must enclose its positions loop"):
        td.lower(s2, [*A.placeholders(), D, out])
