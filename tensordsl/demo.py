"""The main job: define, schedule, compile and run kernels, and time them beside numpy.

Run with ``tensordsl demo`` (or ``python -m tensordsl.demo``).
"""
from __future__ import annotations

import time

import numpy as np

import tensordsl as td
from schedules.examples import fused_relu_affine, tutorial_matmul


def _median_seconds(fn, repeat: int = 10) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_demo(n: int = 1024):
    s, args = tutorial_matmul(n, n, n)
    t = time.perf_counter()
    f = td.build(s, args)
    build_ms = (time.perf_counter() - t) * 1e3
    a = np.random.rand(n, n).astype("float32")
    b = np.random.rand(n, n).astype("float32")
    c = np.empty((n, n), "float32")
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-3)
    ours = _median_seconds(lambda: f(a, b, c))
    theirs = _median_seconds(lambda: np.matmul(a, b, out=c))
    flops = 2 * n ** 3
    print(f"matmul {n}^3 (TVM tutorial schedule, built in {build_ms:.0f} ms)")
    print(f"  tensordsl {ours * 1e3:7.2f} ms  {flops / ours / 1e9:6.1f} GFLOP/s")
    print(f"  numpy     {theirs * 1e3:7.2f} ms  {flops / theirs / 1e9:6.1f} GFLOP/s"
          f"   (ours/numpy speed: {theirs / ours:.2f}x)")


def fused_demo(n: int = 1 << 24):
    f = td.build(*fused_relu_affine(n))
    x = np.random.rand(n).astype("float32") - 0.5
    y = np.empty_like(x)
    ours = _median_seconds(lambda: f(x, y))
    theirs = _median_seconds(lambda: np.maximum(1.5 * x + 0.5, 0))
    print(f"fused max(1.5*x + 0.5, 0) over {n:,} floats")
    print(f"  tensordsl {ours * 1e3:7.2f} ms  {8 * n / ours / 1e9:6.1f} GB/s")
    print(f"  numpy     {theirs * 1e3:7.2f} ms   (ours/numpy speed: {theirs / ours:.2f}x)")


def reduction_demo():
    n = td.var("n")
    A = td.placeholder((n, 64), name="A")
    k = td.reduce_axis((0, 64), name="k")
    B = td.compute((n,), lambda i: td.sum(A[i, k] * A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    io, ii = s[B].split(B.op.axis[0], factor=8)
    s[B].parallel(io)
    print("row sums of squares, lowered:")
    print(td.lower(s, [A, B]))
    f = td.build(s, [A, B])
    a = np.random.rand(1000, 64).astype("float32")
    b = np.empty(1000, "float32")
    f(a, b)
    np.testing.assert_allclose(b, (a * a).sum(1), rtol=1e-5)
    print("  matches numpy for n = 1000\n")


def main():
    print(f"tensordsl {td.__version__}: compile tensor expressions for this CPU\n")
    reduction_demo()
    matmul_demo()
    fused_demo()


if __name__ == "__main__":
    main()
