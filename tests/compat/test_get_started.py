"""TVM's "Working with Operators Using Tensor Expression" (tensor_expr_get_started.py):
vector addition, by default, in parallel, split and vectorized, and on the GPU."""
import numpy as np

import tensordsl as td
from tests.helpers import poisoned


def _vector_add():
    n = td.var("n")
    A = td.placeholder((n,), name="A")
    B = td.placeholder((n,), name="B")
    C = td.compute(A.shape, lambda i: A[i] + B[i], name="C")
    return A, B, C


def _check(fadd, n=1027):
    rng = np.random.default_rng(0)
    a = rng.uniform(size=n).astype("float32")
    b = rng.uniform(size=n).astype("float32")
    c = poisoned((n,))
    fadd(a, b, c)                       # TVM: tvm.nd.array(..., dev) arguments
    np.testing.assert_allclose(c, a + b)


def test_default_schedule():
    A, B, C = _vector_add()
    s = td.create_schedule(C.op)
    fadd = td.build(s, [A, B, C], "llvm", name="myadd")
    _check(fadd)


def test_parallel():
    A, B, C = _vector_add()
    s = td.create_schedule(C.op)
    s[C].parallel(C.op.axis[0])
    assert "parallel" in str(td.lower(s, [A, B, C], simple_mode=True))
    fadd_parallel = td.build(s, [A, B, C], "llvm", name="myadd_parallel")
    _check(fadd_parallel)


def test_split_parallel_vectorize():
    A, B, C = _vector_add()
    s = td.create_schedule(C.op)
    factor = 4
    outer, inner = s[C].split(C.op.axis[0], factor=factor)
    s[C].parallel(outer)
    s[C].vectorize(inner)
    fadd_vector = td.build(s, [A, B, C], "llvm", name="myadd_parallel")
    _check(fadd_vector)


def test_gpu():
    A, B, C = _vector_add()
    s = td.create_schedule(C.op)
    bx, tx = s[C].split(C.op.axis[0], factor=64)
    s[C].bind(bx, td.thread_axis("blockIdx.x"))
    s[C].bind(tx, td.thread_axis("threadIdx.x"))
    fadd = td.build(s, [A, B, C], target="cuda", name="myadd")
    assert "__global__" in fadd.get_source()          # TVM: fadd.imported_modules[0]
    _check(fadd.emulate)                               # no GPU here: the emulator
