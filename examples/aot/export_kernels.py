"""Export three kernels as a C library for ``main.c`` / ``main.cpp`` (see README.md here).

    python examples/aot/export_kernels.py OUT_DIR

writes ``OUT_DIR/libaot_example.so``, ``libaot_example.a`` and ``libaot_example.h``:

- ``tensordsl_matmul``: ``kernels/dense.py``'s ``matmul``, scheduled by its CPU template
  (``schedules/cpu/matmul.py``: packed panels, register blocking, parallel rows);
- ``tensordsl_bias_tanh``: ``y = tanh(scale * (x + bias))``, two stages the auto-scheduler
  fuses into one loop nest (``td.build(tensors)``);
- ``tensordsl_row_norms``: a compute of the user's own, ``out[i] = sqrt(sum_k x[i, k]^2)``,
  over a symbolic number of rows ``n`` (passed as an ``int64_t`` after the pointers).

The sizes are the constants main.c uses (``M``, ``N``, ``K``, ``D``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import tensordsl as td
from kernels.dense import matmul
from schedules.cpu.matmul import schedule_matmul

M, N, K = 200, 136, 96     # the matmul, and the elementwise kernel's (M, N)
D = 64                     # row_norms: rows of D values


def build_matmul():
    A = td.placeholder((M, K), name="A")
    B = td.placeholder((K, N), name="B")
    C = matmul(A, B, name="C")
    s = td.create_schedule(C.op)
    schedule_matmul(s, C)
    return td.build(s, [A, B, C], name="matmul")


def build_bias_tanh():
    X = td.placeholder((M, N), name="x")
    bias = td.placeholder((N,), name="bias")
    shifted = td.compute((M, N), lambda i, j: X[i, j] + bias[j], name="shifted")
    Y = td.compute((M, N), lambda i, j: td.tanh(0.5 * shifted[i, j]), name="y")
    return td.build([X, bias, Y], name="bias_tanh")


def build_row_norms():
    n = td.var("n")
    X = td.placeholder((n, D), name="x")
    k = td.reduce_axis((0, D), name="k")
    sq = td.compute((n,), lambda i: td.sum(X[i, k] * X[i, k], axis=k), name="sq")
    out = td.compute((n,), lambda i: td.sqrt(sq[i]), name="norms")
    s = td.create_schedule(out.op)
    outer, inner = s[out].split(out.op.axis[0], factor=16)
    s[out].parallel(outer)
    s[sq].compute_at(s[out], inner)     # each row's sum right where its root is taken
    return td.build(s, [X, out], name="row_norms")


def export(out_dir) -> list[Path]:
    funcs = [build_matmul(), build_bias_tanh(), build_row_norms()]
    out_dir = Path(out_dir)
    written = td.export(funcs, out_dir / "libaot_example.so")
    written += td.export(funcs, out_dir / "libaot_example.a", header=False)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/aot/export_kernels.py OUT_DIR")
    for path in export(sys.argv[1]):
        print(path)
