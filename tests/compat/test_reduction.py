"""TVM's "Reduction" tutorial (reduction.py): a row sum by default, split and bound to
GPU threads, rfactor, a cross-thread reduction with ``set_store_predicate``, a 2-D
convolution as a reduction over two axes, and a user-defined ``comm_reducer``."""
import numpy as np

import tensordsl as td
from tests.helpers import poisoned

ROWS, COLS = 70, 45


def _row_sum():
    n = td.var("n")
    m = td.var("m")
    A = td.placeholder((n, m), name="A")
    k = td.reduce_axis((0, m), "k")
    B = td.compute((n,), lambda i: td.sum(A[i, k], axis=k), name="B")
    return A, B


def _check(f, rows=ROWS, cols=COLS):
    a = np.random.default_rng(0).uniform(size=(rows, cols)).astype("float32")
    b = poisoned((rows,))
    f(a, b)
    np.testing.assert_allclose(b, a.sum(axis=1), rtol=1e-5)


def test_row_sum_default():
    A, B = _row_sum()
    s = td.create_schedule(B.op)
    print(td.lower(s, [A, B], simple_mode=True))
    _check(td.build(s, [A, B], "llvm"))


def test_row_sum_split_and_bound_to_gpu_threads():
    A, B = _row_sum()
    s = td.create_schedule(B.op)
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=16)
    xo, xi = s[B].split(B.op.axis[0], factor=32)
    s[B].bind(xo, td.thread_axis("blockIdx.x"))
    s[B].bind(xi, td.thread_axis("threadIdx.x"))
    _check(td.build(s, [A, B], "cuda").emulate)


def test_rfactor():
    A, B = _row_sum()
    s = td.create_schedule(B.op)
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=16)
    BF = s.rfactor(B, ki)
    print(td.lower(s, [A, B], simple_mode=True))
    print(s[B].op.body)
    _check(td.build(s, [A, B], "llvm"))


def test_cross_thread_reduction():
    A, B = _row_sum()
    s = td.create_schedule(B.op)
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=16)
    BF = s.rfactor(B, ki)
    xo, xi = s[B].split(s[B].op.axis[0], factor=32)
    s[B].bind(xo, td.thread_axis("blockIdx.x"))
    s[B].bind(xi, td.thread_axis("threadIdx.y"))
    tx = td.thread_axis("threadIdx.x")
    s[B].bind(s[B].op.reduce_axis[0], tx)
    s[BF].compute_at(s[B], s[B].op.reduce_axis[0])
    s[B].set_store_predicate(tx.var.equal(0))
    fcuda = td.build(s, [A, B], "cuda")
    print(fcuda.get_source())                  # TVM: fcuda.imported_modules[0].get_source()
    _check(fcuda.emulate)


def test_convolution_as_a_reduction():
    n = td.var("n")
    Input = td.placeholder((n, n), name="Input")
    Filter = td.placeholder((3, 3), name="Filter")
    di = td.reduce_axis((0, 3), name="di")
    dj = td.reduce_axis((0, 3), name="dj")
    Output = td.compute(
        (n - 2, n - 2),
        lambda i, j: td.sum(Input[i + di, j + dj] * Filter[di, dj], axis=[di, dj]),
        name="Output",
    )
    s = td.create_schedule(Output.op)
    f = td.build(s, [Input, Filter, Output], "llvm")
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(19, 19)).astype("float32")
    w = rng.uniform(size=(3, 3)).astype("float32")
    out = poisoned((17, 17))
    f(x, w, out)
    want = sum(x[di:di + 17, dj:dj + 17] * w[di, dj] for di in range(3) for dj in range(3))
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_commutative_reducer():
    n = td.var("n")
    m = td.var("m")
    product = td.comm_reducer(lambda x, y: x * y, lambda t: td.const(1, dtype=t),
                              name="product")
    A = td.placeholder((n, m), name="A")
    k = td.reduce_axis((0, m), name="k")
    B = td.compute((n,), lambda i: product(A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    f = td.build(s, [A, B], "llvm")
    a = np.random.default_rng(2).uniform(0.5, 1.5, size=(ROWS, 9)).astype("float32")
    b = poisoned((ROWS,))
    f(a, b)
    np.testing.assert_allclose(b, a.prod(axis=1), rtol=1e-5)
