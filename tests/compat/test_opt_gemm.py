"""TVM's "How to optimize GEMM on CPU" (opt_gemm.py), every step: the default schedule,
blocking, vectorization, loop permutation, array packing (``N / bn``: a float size),
a write cache for blocks, and parallel. Smaller sizes than the tutorial's 1024."""
import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned

# The size of the matrix
# (M, K) x (K, N)
M = 128
K = 96
N = 160
# The default tensor type in td
dtype = "float32"
target = "llvm"
bn = 32
kfactor = 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(M, K)).astype(dtype)
    b = rng.uniform(size=(K, N)).astype(dtype)
    return a, b, np.dot(a, b)


def _algorithm():
    k = td.reduce_axis((0, K), "k")
    A = td.placeholder((M, K), name="A")
    B = td.placeholder((K, N), name="B")
    C = td.compute((M, N), lambda m, n: td.sum(A[m, k] * B[k, n], axis=k), name="C")
    return A, B, C


def _packed_algorithm():
    k = td.reduce_axis((0, K), "k")
    A = td.placeholder((M, K), name="A")
    B = td.placeholder((K, N), name="B")
    packedB = td.compute(
        (N / bn, K, bn), lambda bigN, k, littleN: B[k, bigN * bn + littleN], name="packedB")
    C = td.compute(
        (M, N),
        lambda m, n: td.sum(A[m, k] * packedB[n // bn, k, td.indexmod(n, bn)], axis=k),
        name="C",
    )
    return A, B, packedB, C


def _check(s, A, B, C, data):
    print(td.lower(s, [A, B, C], simple_mode=True))
    func = td.build(s, [A, B, C], target=target, name="mmult")
    a, b, answer = data
    c = poisoned((M, N), dtype)            # TVM: tvm.nd.array(numpy.zeros(...), dev)
    func(a, b, c)
    np.testing.assert_allclose(c, answer, rtol=1e-5)


def test_default(data):
    A, B, C = _algorithm()
    s = td.create_schedule(C.op)
    _check(s, A, B, C, data)


def test_blocking(data):
    A, B, C = _algorithm()
    s = td.create_schedule(C.op)
    # Blocking by loop tiling
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], bn, bn)
    (kaxis,) = s[C].op.reduce_axis
    ko, ki = s[C].split(kaxis, factor=kfactor)
    # Hoist reduction domain outside the blocking loop
    s[C].reorder(mo, no, ko, ki, mi, ni)
    _check(s, A, B, C, data)


def test_vectorization(data):
    A, B, C = _algorithm()
    s = td.create_schedule(C.op)
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], bn, bn)
    (kaxis,) = s[C].op.reduce_axis
    ko, ki = s[C].split(kaxis, factor=kfactor)
    s[C].reorder(mo, no, ko, ki, mi, ni)
    # Vectorization
    s[C].vectorize(ni)
    _check(s, A, B, C, data)


def test_loop_permutation(data):
    A, B, C = _algorithm()
    s = td.create_schedule(C.op)
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], bn, bn)
    (kaxis,) = s[C].op.reduce_axis
    ko, ki = s[C].split(kaxis, factor=kfactor)
    # re-ordering
    s[C].reorder(mo, no, ko, mi, ki, ni)
    s[C].vectorize(ni)
    _check(s, A, B, C, data)


def test_array_packing(data):
    A, B, packedB, C = _packed_algorithm()
    s = td.create_schedule(C.op)
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], bn, bn)
    (kaxis,) = s[C].op.reduce_axis
    ko, ki = s[C].split(kaxis, factor=kfactor)
    s[C].reorder(mo, no, ko, mi, ki, ni)
    s[C].vectorize(ni)
    bigN, _, littleN = s[packedB].op.axis
    s[packedB].vectorize(littleN)
    s[packedB].parallel(bigN)
    _check(s, A, B, C, data)


def _write_cache_schedule(parallel: bool):
    A, B, packedB, C = _packed_algorithm()
    s = td.create_schedule(C.op)
    # Allocate write cache
    CC = s.cache_write(C, "global")
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], bn, bn)
    # Write cache is computed at no
    s[CC].compute_at(s[C], no)
    # New inner axes
    mc, nc = s[CC].op.axis
    (kaxis,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kaxis, factor=kfactor)
    s[CC].reorder(ko, mc, ki, nc)
    s[CC].vectorize(nc)
    # TODO: Add separate optimization step to discuss loop unrolling
    # unrolling is a loop optimization strategy which can reduce branch
    # prediction failures and increases the chance of concurrent execution
    # unroll kfactor loops
    s[CC].unroll(ki)
    bigN, _, littleN = s[packedB].op.axis
    s[packedB].vectorize(littleN)
    s[packedB].parallel(bigN)
    if parallel:
        # parallel
        s[C].parallel(mo)
    return s, A, B, C


def test_write_cache_for_blocks(data):
    _check(*_write_cache_schedule(parallel=False), data)


def test_parallel(data):
    _check(*_write_cache_schedule(parallel=True), data)
