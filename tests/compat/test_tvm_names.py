"""The TVM spellings of ``te/tvm_names.py`` and the forms it indexes, as a ported program
uses them (TVM's own unit tests in ``tests/python/te`` use them the same way)."""
import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned


def test_schedule_errors_are_caught_as_tvm_errors():
    """A ported ``except RuntimeError`` (TVM's ``TVMError`` is one) still catches them."""
    A = td.placeholder((8,), name="A")
    k = td.reduce_axis((0, 8), "k")
    B = td.compute((1,), lambda i: td.max(A[k], axis=k), name="B")
    s = td.create_schedule(B.op)
    with pytest.raises(RuntimeError, match="cannot vectorize reduction axis 'k'"):
        s[B].vectorize(k)
    assert issubclass(td.ScheduleError, ValueError)     # and still a ValueError


def test_integral_float_sizes_and_factors():
    """Python 3's ``/`` gives floats: ``(N / bn, ...)`` and ``factor=N / 4``."""
    N, bn = 64, 16
    A = td.placeholder((N / bn, bn), name="A")
    k = td.reduce_axis((0, N / bn), "k")
    B = td.compute((bn,), lambda j: td.sum(A[k, j], axis=k), name="B")
    s = td.create_schedule(B.op)
    jo, ji = s[B].split(B.op.axis[0], factor=bn / 4)
    tx = td.thread_axis((0, bn / 4), "threadIdx.x")
    s[B].bind(ji, tx)
    s[B].bind(jo, td.thread_axis("blockIdx.x"))
    f = td.build(s.normalize(), [A, B], "cuda")
    a = np.random.default_rng(0).uniform(size=(4, 16)).astype("float32")
    b = poisoned((16,))
    f.emulate(a, b)
    np.testing.assert_allclose(b, a.sum(axis=0), rtol=1e-6)
    with pytest.raises(TypeError, match="shape"):
        td.placeholder((N / 3,), name="C")


def test_size_var_chained_indexing_and_simple_mode():
    n = td.size_var("n")
    m = td.var("m")
    A = td.placeholder((n, m), name="A")
    B = td.compute((n, m), lambda i, j: td.max(A[i][j], td.const(0.0, "float32")), name="B")
    s = td.create_schedule(B.op)
    assert "max(A[" in str(td.lower(s, [A, B], simple_mode=True))
    f = td.build(s, [A, B])
    a = np.random.default_rng(1).standard_normal((5, 7)).astype("float32")
    b = poisoned((5, 7))
    f(a, b)
    np.testing.assert_array_equal(b, np.maximum(a, 0))


def test_trunc_and_floor_division_of_negative_values():
    A = td.placeholder((8,), name="A", dtype="int32")
    D = td.compute((8,), lambda i: (td.truncdiv(A[i], 3), td.truncmod(A[i], 3),
                                    td.floordiv(A[i], 3), td.floormod(A[i], 3)), name="D")
    s = td.create_schedule(D[0].op)
    f = td.build(s, [A, *D])
    a = np.array([-7, -6, -5, -1, 0, 1, 5, 7], "int32")
    outs = [poisoned((8,), "int32") for _ in range(4)]
    f(a, *outs)
    np.testing.assert_array_equal(outs[0], np.trunc(a / 3).astype("int32"))
    np.testing.assert_array_equal(outs[1], np.fmod(a, 3))
    np.testing.assert_array_equal(outs[2], a // 3)
    np.testing.assert_array_equal(outs[3], a % 3)
