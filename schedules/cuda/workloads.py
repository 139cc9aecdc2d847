"""One representative workload per GPU template, scheduled and ready to build.

The SASS checks (``tests/cuda/test_sass.py``) and the GPU benchmark's estimate
(``python -m benchmarks gpu --estimate``) read the same kernels: each entry builds the
template's operator at a size a user would run, with the template's default knobs, and
says how much arithmetic and compulsory memory traffic one call does (for a roofline).

    >>> w = WORKLOADS["matmul_fp32"]
    >>> s, args = w.make()
    >>> f = td.build(s, args, target="cuda -arch=sm_80")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kernels import capsule, dense
from kernels import sparse as sparse_kernels
from tensordsl.schedule.schedule import create_schedule
from tensordsl.sparse import sparse_placeholder
from tensordsl.te.api import placeholder

from . import capsule as capsule_template
from . import schedule_for, schedule_sparse


@dataclass(frozen=True)
class Workload:
    template: str                  # schedules/cuda module and function it exercises
    label: str                     # the shape, for tables
    make: Callable                 # () -> (schedule, build arguments)
    main_kernel: int               # which kernel of the module does the work
    flops: float                   # arithmetic of one call (multiply-add = 2)
    bytes: float                   # compulsory DRAM traffic of one call: inputs + outputs
    tensor_cores: bool = False


def _matmul(M, N, K, dtype):
    def make():
        A = placeholder((M, K), dtype=dtype, name="A")
        B = placeholder((K, N), dtype=dtype, name="B")
        C = dense.matmul(A, B, out_dtype="float32" if dtype != "float32" else None)
        return schedule_for("matmul", C), [A, B, C]
    return make


def _conv2d(x, w, pad):
    def make():
        X, W = placeholder(x, name="X"), placeholder(w, name="W")
        out = dense.conv2d_nchw(X, W, padding=pad)
        return schedule_for("conv2d_nchw", out), [X, W, out]
    return make


def _conv2d_nhwc(x, w, pad, dtype):
    def make():
        X = placeholder(x, dtype=dtype, name="X")
        W = placeholder(w, dtype=dtype, name="W")
        out = dense.conv2d_nhwc(X, W, padding=pad, form="implicit_gemm")
        return schedule_for("conv2d_nhwc", out), [X, W, out]
    return make


def _rowwise(op, shape):
    def make():
        X = placeholder(shape, name="X")
        if op == "softmax":
            out, args = dense.softmax(X), [X]
        else:
            g, b = placeholder(shape[-1:], name="g"), placeholder(shape[-1:], name="b")
            out, args = dense.layer_norm(X, g, b), [X, g, b]
        return schedule_for(op, out), args + [out]
    return make


def _reduce_sum(size):
    def make():
        X = placeholder((size,), name="X")
        out = dense.reduce_sum(X)
        return schedule_for("reduce_sum", out), [X, out]
    return make


def _elementwise(shape):
    def make():
        X = placeholder(shape, name="X")
        out = dense.gelu(X)
        return schedule_for("gelu", out), [X, out]
    return make


def _spmm(m, n, cols):
    def make():
        A = sparse_placeholder((m, n), "csr", "float32", name="A")
        B = placeholder((n, cols), name="B")
        out = sparse_kernels.spmm(A, B)
        return schedule_sparse("spmm", out, A), [*A.placeholders(), B, out]
    return make


def _capsule(batch, inputs, outputs, out_dim, in_dim):
    def make():
        u = placeholder((batch, inputs, in_dim), name="u")
        W = placeholder((inputs, outputs, out_dim, in_dim), name="W")
        v = capsule.capsule_routing(u, W, iterations=3)
        s = create_schedule(v.op)
        capsule_template.schedule_capsule_routing(s, v)
        return s, [u, W, v]
    return make


_SPMM_NNZ = 4096 * 4096 // 100       # 1% dense, for the estimate's counts

WORKLOADS: dict[str, Workload] = {
    "matmul_fp32": Workload(
        "matmul.schedule_matmul", "sgemm 4096^3", _matmul(4096, 4096, 4096, "float32"), 0,
        2.0 * 4096 ** 3, 3 * 4096 * 4096 * 4.0),
    "matmul_fp16": Workload(
        "matmul.schedule_matmul_tensorcore", "fp16 4096^3 (fp32 acc.)",
        _matmul(4096, 4096, 4096, "float16"), 0, 2.0 * 4096 ** 3,
        4096 * 4096 * (2 + 2 + 4.0), tensor_cores=True),
    "matmul_bf16": Workload(
        "matmul.schedule_matmul_tensorcore", "bf16 4096^3 (fp32 acc.)",
        _matmul(4096, 4096, 4096, "bfloat16"), 0, 2.0 * 4096 ** 3,
        4096 * 4096 * (2 + 2 + 4.0), tensor_cores=True),
    "conv2d": Workload(
        "conv2d.schedule_conv2d_nchw", "1x64x56x56 k3 p1",
        _conv2d((1, 64, 56, 56), (64, 64, 3, 3), 1), 1,
        2.0 * 64 * 56 * 56 * 64 * 9, 4.0 * (2 * 64 * 56 * 56 + 64 * 64 * 9)),
    "conv2d_fp16": Workload(
        "conv2d.schedule_conv2d_nhwc", "fp16 NHWC 8x56x56x64 k3 p1 (implicit GEMM)",
        _conv2d_nhwc((8, 56, 56, 64), (3, 3, 64, 64), 1, "float16"), 0,
        2.0 * 8 * 56 * 56 * 64 * 64 * 9, 2.0 * (2 * 8 * 56 * 56 * 64 + 64 * 64 * 9),
        tensor_cores=True),
    "softmax": Workload(
        "rowwise.schedule_rowwise", "4096x1024", _rowwise("softmax", (4096, 1024)), 0,
        5.0 * 4096 * 1024, 2 * 4096 * 1024 * 4.0),
    "layer_norm": Workload(
        "rowwise.schedule_rowwise", "4096x1024", _rowwise("layer_norm", (4096, 1024)), 0,
        8.0 * 4096 * 1024, 2 * 4096 * 1024 * 4.0),
    "reduce_sum": Workload(
        "generic.bind_full_reduction", "2^24", _reduce_sum(1 << 24), 0,
        float(1 << 24), 4.0 * (1 << 24)),
    "elementwise": Workload(
        "generic.bind_flat", "gelu 4096x4096", _elementwise((4096, 4096)), 0,
        20.0 * 4096 * 4096, 2 * 4096 * 4096 * 4.0),
    "spmm": Workload(
        "sparse.schedule_spmm (rows)", "4096^2 1% x 4096x64", _spmm(4096, 4096, 64), 0,
        2.0 * _SPMM_NNZ * 64, 4.0 * (2 * _SPMM_NNZ + 4097 + 2 * 4096 * 64)),
    "capsule": Workload(
        "capsule.schedule_capsule_routing", "CapsNet 1152x10, batch 32",
        _capsule(32, 1152, 10, 16, 8), 0,
        32 * 1152 * 10 * 16 * (2 * 8 + 3 * 4.0), 4.0 * (32 * 1152 * 8 + 1152 * 10 * 16 * 8)),
}
