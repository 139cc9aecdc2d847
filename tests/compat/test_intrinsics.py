"""TVM's "Intrinsics and Math Functions" (intrin_math.py): ``exp`` on the GPU and ``log``,
a direct extern math call (``call_pure_extern("float32", "__expf", ...)``),
plus the math functions and index operators a ported program reaches for (``te.*`` and
``tvm.tir.*``): ``floordiv``/``floormod``, ``indexdiv``/``indexmod``,
``truncdiv``/``truncmod``, ``Select``, ``max``/``min`` of two expressions, ``T[i][j]``."""
import numpy as np

import tensordsl as td
from tests.helpers import poisoned

N = 300


def _unary(fn):
    n = td.var("n")
    A = td.placeholder((n,), name="A")
    B = td.compute(A.shape, lambda i: fn(A[i]), name="B")
    return A, B


def _gpu_run(s, A, B, a):
    num_thread = 64
    bx, tx = s[B].split(B.op.axis[0], factor=num_thread)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    f = td.build(s, [A, B], "cuda", name="myexp")
    print(f.get_source())                      # TVM: f.imported_modules[0].get_source()
    b = poisoned(a.shape)
    f.emulate(a, b)
    return b


def test_exp_on_the_gpu():
    A, B = _unary(td.exp)
    s = td.create_schedule(B.op)
    a = np.random.default_rng(0).uniform(-3, 3, size=N).astype("float32")
    np.testing.assert_allclose(_gpu_run(s, A, B, a), np.exp(a), rtol=1e-5)


def test_log_on_the_gpu():
    A, B = _unary(td.log)
    s = td.create_schedule(B.op)
    a = np.random.default_rng(1).uniform(0.1, 3, size=N).astype("float32")
    np.testing.assert_allclose(_gpu_run(s, A, B, a), np.log(a), rtol=1e-5)


def test_direct_extern_math_call_on_the_gpu():
    """The tutorial's "Direct Declare Extern Math Call": CUDA's ``__expf`` by name."""
    n = td.var("n")
    A = td.placeholder((n,), name="A")
    B = td.compute(A.shape, lambda i: td.call_pure_extern("float32", "__expf", A[i]),
                   name="B")
    s = td.create_schedule(B.op)
    a = np.random.default_rng(5).uniform(-3, 3, size=N).astype("float32")
    np.testing.assert_allclose(_gpu_run(s, A, B, a), np.exp(a), rtol=1e-5)


def test_extern_math_call_on_the_cpu_vectorized():
    """``expf`` from the C library, in a vectorized loop: called lane by lane."""
    A, B = _unary(lambda x: td.call_pure_extern("float32", "expf", x) +
                  td.call_pure_extern("float32", "fmaxf", x, 0.5))
    s = td.create_schedule(B.op)
    xo, xi = s[B].split(B.op.axis[0], factor=8)
    s[B].vectorize(xi)
    f = td.build(s, [A, B], "llvm")
    a = np.random.default_rng(6).uniform(-3, 3, size=N).astype("float32")
    b = poisoned(a.shape)
    f(a, b)
    np.testing.assert_allclose(b, np.exp(a) + np.maximum(a, 0.5), rtol=1e-6)


def test_math_functions_on_the_cpu():
    funcs = {"exp": (td.exp, np.exp), "log": (td.log, np.log), "sqrt": (td.sqrt, np.sqrt),
             "tanh": (td.tanh, np.tanh), "sigmoid": (td.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
             "floor": (td.floor, np.floor), "abs": (td.abs, np.abs)}
    a = np.random.default_rng(2).uniform(0.1, 3, size=N).astype("float32")
    for name, (ours, ref) in funcs.items():
        A, B = _unary(ours)
        s = td.create_schedule(B.op)
        f = td.build(s, [A, B], "llvm")
        b = poisoned(a.shape)
        f(a, b)
        np.testing.assert_allclose(b, ref(a), rtol=2e-6, err_msg=name)


def test_index_operators_and_tvm_spellings():
    n = td.size_var("n")
    A = td.placeholder((n, 7), name="A", dtype="int32")
    B = td.compute(
        (n, 7),
        lambda i, j: td.Select(
            j < 3,
            td.max(A[i][j], td.truncdiv(A[i][j], 3)) + td.truncmod(A[i, j], 4),
            td.min(td.floordiv(A[i, j], 5), td.indexmod(A[i][j], 6))
            # loop variables are int64 here (TVM: int32): cast to stay in int32
            + (td.floormod(j, 2) + td.indexdiv(j, 2)).astype("int32")),
        name="B")
    s = td.create_schedule(B.op).normalize()
    f = td.build(s, [A, B], "llvm")
    a = np.random.default_rng(3).integers(-40, 40, size=(11, 7)).astype("int32")
    b = poisoned((11, 7), "int32")
    f(a, b)
    j = np.arange(7)
    trunc_div = np.trunc(a / 3).astype("int32")
    trunc_mod = np.fmod(a, 4)
    want = np.where(j < 3, np.maximum(a, trunc_div) + trunc_mod,
                    np.minimum(a // 5, a % 6) + j % 2 + j // 2)
    np.testing.assert_array_equal(b, want)
