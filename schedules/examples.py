"""Worked schedules shared by the demo, the benchmarks and the tests: each returns
``(schedule, args)`` ready for ``td.build``."""
from __future__ import annotations

import tensordsl as td


def tutorial_matmul(M: int, N: int, K: int, bn: int = 32, kfactor: int = 4):
    """TVM's classic CPU tutorial schedule: a packed B panel, 32x32 tiles computed into a
    write cache, k split by 4 and unrolled, the tile row vectorized, rows in parallel."""
    A = td.placeholder((M, K), name="A")
    B = td.placeholder((K, N), name="B")
    k = td.reduce_axis((0, K), "k")
    packed = td.compute((N // bn, K, bn), lambda x, y, z: B[y, x * bn + z], name="packedB")
    C = td.compute((M, N), lambda x, y: td.sum(A[x, k] * packed[y // bn, k, y % bn], axis=k),
                   name="C")
    s = td.create_schedule(C.op)
    CC = s.cache_write(C, "global")
    xo, yo, xi, yi = s[C].tile(C.op.axis[0], C.op.axis[1], bn, bn)
    s[CC].compute_at(s[C], yo)
    xc, yc = s[CC].op.axis
    ko, ki = s[CC].split(s[CC].op.reduce_axis[0], factor=kfactor)
    s[CC].reorder(ko, xc, ki, yc)
    s[CC].unroll(ki)
    s[CC].vectorize(yc)
    s[C].parallel(xo)
    x, y, z = packed.op.axis
    s[packed].vectorize(z)
    s[packed].parallel(x)
    return s, [A, B, C]


def fused_relu_affine(n: int, lanes: int = 16, stream: bool = True):
    """``max(1.5*x + 0.5, 0)`` in one pass: vectorized, parallel; with ``stream`` the
    output bypasses the cache (non-temporal stores: no read of each line before it is
    overwritten, a third less memory traffic)."""
    X = td.placeholder((n,), name="X")
    Y = td.compute((n,), lambda i: td.maximum(X[i] * 1.5 + 0.5, 0.0), name="Y")
    s = td.create_schedule(Y.op)
    o, i = s[Y].split(Y.op.axis[0], factor=lanes)
    s[Y].vectorize(i)
    s[Y].parallel(o)
    if stream:
        s[Y].pragma(o, "nontemporal")
    return s, [X, Y]


def triad(n: int, lanes: int = 16, stream: bool = True):
    """STREAM triad ``a = b + 3*c``: the memory bandwidth reference (with streaming
    stores, as STREAM is built for its best figure)."""
    B = td.placeholder((n,), name="B")
    C = td.placeholder((n,), name="C")
    A = td.compute((n,), lambda i: B[i] + 3.0 * C[i], name="A")
    s = td.create_schedule(A.op)
    o, i = s[A].split(A.op.axis[0], factor=lanes)
    s[A].vectorize(i)
    s[A].parallel(o)
    if stream:
        s[A].pragma(o, "nontemporal")
    return s, [B, C, A]


def fused_chain(n: int, lanes: int = 64, stream: bool = True):
    """``max(tanh(0.5*x)*1.5 + 0.25, 0)`` fused into one pass (a transcendental chain).
    Four vectors per iteration give the out-of-order core independent chains to overlap
    (one vector per iteration measured 30% slower: tanh is a long dependent chain)."""
    X = td.placeholder((n,), name="X")
    Y = td.compute((n,), lambda i: td.maximum(td.tanh(X[i] * 0.5) * 1.5 + 0.25, 0.0), name="Y")
    s = td.create_schedule(Y.op)
    o, i = s[Y].split(Y.op.axis[0], factor=lanes)
    s[Y].vectorize(i)
    s[Y].parallel(o)
    if stream:
        s[Y].pragma(o, "nontemporal")
    return s, [X, Y]
