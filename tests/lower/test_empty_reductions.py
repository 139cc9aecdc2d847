"""A reduction over an empty domain writes its identity, whatever the schedule."""
import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from tests.helpers import poisoned


def _reduce_rows(shape, reducer=td.sum):
    A = td.placeholder(shape, name="A")
    k = td.reduce_axis((0, shape[1]), "k")
    C = td.compute((shape[0],), lambda i: reducer(A[i, k], axis=k), name="C")
    return A, C


def _blocked(C):
    # the init sits under "k.outer == 0", inside the reduction loop
    s = td.create_schedule(C.op)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=4)
    s[C].reorder(ko, C.op.axis[0], ki)
    return s


def test_blocked_reduction_over_an_empty_axis_writes_zeros():
    A, C = _reduce_rows((4, 0))
    f = td.build(_blocked(C), [A, C])
    c = np.full(4, np.nan, "float32")
    f(np.ones((4, 0), "float32"), c)
    np.testing.assert_array_equal(c, np.zeros(4, "float32"))


def test_empty_max_reduction_writes_its_identity():
    A, C = _reduce_rows((3, 0), td.max)
    f = td.build(_blocked(C), [A, C])
    c = np.full(3, np.nan, "float32")
    f(np.ones((3, 0), "float32"), c)
    np.testing.assert_array_equal(c, np.full(3, -np.inf, "float32"))


@pytest.mark.parametrize("m", [0, 1, 4, 7])
def test_symbolic_reduction_extent_bound_to_zero_at_run_time(m):
    A, C = _reduce_rows((4, td.var("m")))
    f = td.build(_blocked(C), [A, C])
    a = np.random.default_rng(m).random((4, m), dtype="float32")
    c = np.full(4, np.nan, "float32")
    f(a, c)
    np.testing.assert_allclose(c, a.sum(axis=1), rtol=1e-6)


def test_ops_matmul_with_an_empty_inner_dimension_is_zeros():
    out = poisoned((4, 5))
    c = td.ops.matmul(np.ones((4, 0), "float32"), np.ones((0, 5), "float32"), out=out)
    assert c is out
    np.testing.assert_array_equal(c, np.zeros((4, 5), "float32"))


def test_ops_reduce_mean_of_an_empty_axis_is_nan_like_numpy():
    x = np.ones((3, 0), "float32")
    got = td.ops.reduce_mean(x, axis=1)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        want = x.mean(axis=1)
    np.testing.assert_array_equal(got, want)


def test_symbolic_reduce_mean_of_an_empty_axis_is_nan():
    X = td.placeholder((td.var("n"), td.var("m")), name="X")
    Y = dense.reduce_mean(X, axis=1)
    f = td.build(td.create_schedule(Y.op), [X, Y])
    y = np.zeros(2, "float32")   # not NaN: NaN is the result expected
    f(np.ones((2, 0), "float32"), y)
    assert np.isnan(y).all()


def test_ops_reduce_max_of_an_empty_axis_raises_like_numpy():
    x = np.ones((3, 0), "float32")
    with pytest.raises(ValueError):
        np.max(x, axis=1)
    with pytest.raises(ValueError, match="reduce_max: axis 1 .* empty"):
        td.ops.reduce_max(x, axis=1)
