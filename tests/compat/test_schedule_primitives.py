"""TVM's "Schedule Primitives in TVM" (schedule_primitives.py): every program, built and
compared with numpy (the tutorial prints ``td.lower(..., simple_mode=True)``)."""
import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned

M, N = 37, 29


@pytest.fixture
def a():
    return np.random.default_rng(0).uniform(size=(M,)).astype("float32")


@pytest.fixture
def a2():
    return np.random.default_rng(1).uniform(size=(M, N)).astype("float32")


def _run(s, args, inputs, out_shape, target="llvm"):
    print(td.lower(s, args, simple_mode=True))
    f = td.build(s, args, target)
    out = poisoned(out_shape)
    (f.emulate if target.startswith("cuda") else f)(*inputs, out)
    return out


def test_create_schedule_elementwise():
    n = td.var("n")
    m = td.var("m")
    A = td.placeholder((m, n), name="A")
    B = td.placeholder((m, n), name="B")
    C = td.compute((m, n), lambda i, j: A[i, j] * B[i, j], name="C")
    s = td.create_schedule([C.op])
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=(2, M, N)).astype("float32")
    np.testing.assert_allclose(_run(s, [A, B, C], [a, b], (M, N)), a * b)


def _scale_1d():
    m = td.var("m")
    A = td.placeholder((m,), name="A")
    B = td.compute((m,), lambda i: A[i] * 2, name="B")
    return A, B


def test_split_by_factor(a):
    A, B = _scale_1d()
    s = td.create_schedule(B.op)
    xo, xi = s[B].split(B.op.axis[0], factor=32)
    np.testing.assert_allclose(_run(s, [A, B], [a], (M,)), a * 2)


def test_split_by_nparts(a):
    A, B = _scale_1d()
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], nparts=32)
    np.testing.assert_allclose(_run(s, [A, B], [a], (M,)), a * 2)


def _copy_2d():
    m = td.var("m")
    n = td.var("n")
    A = td.placeholder((m, n), name="A")
    B = td.compute((m, n), lambda i, j: A[i, j], name="B")
    return A, B


def test_tile(a2):
    A, B = _copy_2d()
    s = td.create_schedule(B.op)
    xo, yo, xi, yi = s[B].tile(B.op.axis[0], B.op.axis[1], x_factor=10, y_factor=5)
    np.testing.assert_array_equal(_run(s, [A, B], [a2], (M, N)), a2)


def test_fuse(a2):
    A, B = _copy_2d()
    s = td.create_schedule(B.op)
    # tile to four axes first: (i.outer, j.outer, i.inner, j.inner)
    xo, yo, xi, yi = s[B].tile(B.op.axis[0], B.op.axis[1], x_factor=10, y_factor=5)
    # then fuse (i.inner, j.inner) into one axis: (i.inner.j.inner.fused)
    fused = s[B].fuse(xi, yi)
    np.testing.assert_array_equal(_run(s, [A, B], [a2], (M, N)), a2)


def test_reorder(a2):
    A, B = _copy_2d()
    s = td.create_schedule(B.op)
    xo, yo, xi, yi = s[B].tile(B.op.axis[0], B.op.axis[1], x_factor=10, y_factor=5)
    s[B].reorder(xi, yo, xo, yi)
    np.testing.assert_array_equal(_run(s, [A, B], [a2], (M, N)), a2)


def test_bind(a):
    n = td.var("n")
    A = td.placeholder((n,), name="A")
    B = td.compute(A.shape, lambda i: A[i] * 2, name="B")
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=64)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    np.testing.assert_allclose(_run(s, [A, B], [a], (M,), target="cuda"), a * 2)


def _two_stages():
    m = td.var("m")
    A = td.placeholder((m,), name="A")
    B = td.compute((m,), lambda i: A[i] + 1, name="B")
    C = td.compute((m,), lambda i: B[i] * 2, name="C")
    return A, B, C


def test_compute_at(a):
    A, B, C = _two_stages()
    s = td.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    np.testing.assert_allclose(_run(s, [A, B, C][::2], [a], (M,)), (a + 1) * 2)


def test_compute_inline(a):
    A, B, C = _two_stages()
    s = td.create_schedule(C.op)
    s[B].compute_inline()
    assert "B[" not in str(td.lower(s, [A, C], simple_mode=True))
    np.testing.assert_allclose(_run(s, [A, C], [a], (M,)), (a + 1) * 2)


def test_compute_root(a):
    A, B, C = _two_stages()
    s = td.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    s[B].compute_root()
    np.testing.assert_allclose(_run(s, [A, C], [a], (M,)), (a + 1) * 2)
