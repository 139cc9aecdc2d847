"""TVM's "External Tensor Functions" tutorial (extern_op.py): a matmul by an external
BLAS call followed by a bias add, and a Python function hooked in with
``register_func``. Differences (README): TVM ships ``tvm.contrib.cblas.matmul``, here
the test registers it (numpy's BLAS); the bias is a constant, as a scalar float
argument (``te.var("bias", dtype="float32")``) does not exist; the callback receives
numpy views it writes in place, not ``tvm.nd`` arrays."""
import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned


def _cblas_matmul(a, b, c, transa, transb):
    np.matmul(a.T if transa else a, b.T if transb else b, out=c)


td.register_func("tvm.contrib.cblas.matmul", _cblas_matmul, override=True)


def test_extern_blas_call_then_a_bias_add():
    n = 64
    l = 32  # noqa: E741 (the tutorial's name)
    m = 35
    bias = 2.5
    A = td.placeholder((n, l), name="A")
    B = td.placeholder((l, m), name="B")
    C = td.extern(
        (n, m),
        [A, B],
        lambda ins, outs: td.call_packed(
            "tvm.contrib.cblas.matmul", ins[0], ins[1], outs[0], False, False
        ),
        name="C",
    )
    D = td.compute(C.shape, lambda i, j: C(i, j) + bias, name="D")
    s = td.create_schedule(D.op)
    f = td.build(s, [A, B, D], "llvm")
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(n, l)).astype(A.dtype)
    b = rng.uniform(size=(l, m)).astype(B.dtype)
    d = poisoned((n, m), D.dtype)
    f(a, b, d)
    np.testing.assert_allclose(d, np.dot(a, b) + bias, rtol=1e-5)


def test_hook_python_function_as_extern():
    @td.register_func("tvm.contrib.my_tvm_addone", override=True)
    def my_tvm_addone(x, y):
        print("my_tvm_addone signatures: %s, %s" % (type(x), type(y)))
        y[...] = x + 1                    # TVM: tvm.nd.array(x.numpy() + 1).copyto(y)

    n = td.var("n")
    A = td.placeholder((n,), name="A")
    B = td.extern(
        A.shape,
        [A],
        lambda ins, outs: td.call_packed("tvm.contrib.my_tvm_addone", ins[0], outs[0]),
        name="C",
    )
    s = td.create_schedule(B.op)
    f = td.build(s, [A, B], "llvm")
    a = np.random.default_rng(1).uniform(size=(1023,)).astype(A.dtype)
    b = poisoned((1023,))
    f(a, b)
    np.testing.assert_allclose(b, a + 1, rtol=1e-5)
    assert td.get_global_func("tvm.contrib.my_tvm_addone") is my_tvm_addone


def test_extern_between_computes_and_errors_raised_by_the_callback():
    """An extern stage read by a scheduled compute and fed by one; an exception in the
    callback comes out of the call."""
    calls = []

    def reverse_rows(x, y, flag):
        calls.append(flag)
        if flag < 0:
            raise ArithmeticError("flag must be positive")
        y[...] = x[:, ::-1]

    td.register_func("compat.reverse_rows", reverse_rows, override=True)
    for flag in (3, -1):
        A = td.placeholder((6, 40), name="A")
        P = td.compute(A.shape, lambda i, j: A[i, j] * 2.0, name="P")
        R = td.extern(P.shape, [P], lambda ins, outs: td.call_packed(
            "compat.reverse_rows", ins[0], outs[0], flag), name="R")
        E = td.compute(R.shape, lambda i, j: R[i, j] + 1.0, name="E")
        s = td.create_schedule(E.op)
        io, ii = s[E].split(E.op.axis[1], factor=8)
        s[E].vectorize(ii)
        s[E].parallel(E.op.axis[0])
        f = td.build(s, [A, E], "llvm")
        a = np.random.default_rng(2).uniform(size=(6, 40)).astype("float32")
        e = poisoned((6, 40))
        if flag < 0:
            with pytest.raises(ArithmeticError, match="flag must be positive"):
                f(a, e)
        else:
            f(a, e)
            np.testing.assert_allclose(e, a[:, ::-1] * 2 + 1, rtol=1e-6)
    assert calls == [3, -1]
