"""Build a GPU-scheduled kernel for both architectures we ship for, and run it."""
from __future__ import annotations

import numpy as np

import tensordsl as td

ARCHS = ("sm_80", "sm_90")


def build_all(s, args):
    """The module for each architecture; each must be a real CUBIN (an ELF image)."""
    modules = {arch: td.build(s, args, target=f"cuda -arch={arch}") for arch in ARCHS}
    for arch, f in modules.items():
        assert f.cubin[:4] == b"\x7fELF", arch
    return modules


def tensor_core_matmul(M: int, N: int, K: int, dtype: str = "float16",
                       config: dict | None = None):
    """(schedule, [A, B, C]) of an M x K by K x N product of 16-bit floats into float32
    by the tensor-core template with ``config``."""
    from kernels import dense
    from schedules.cuda.matmul import schedule_matmul_tensorcore
    A = td.placeholder((M, K), dtype=dtype, name="A")
    B = td.placeholder((K, N), dtype=dtype, name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    s = td.create_schedule(C.op)
    schedule_matmul_tensorcore(s, C, config)
    return s, [A, B, C]


def tensor_core_inputs(rng, shape, dtype: str):
    """A random operand of the tensor-core matmul as the kernel takes it (float16, or
    bfloat16 as its uint16 bits, rounded to nearest even) and its values in float32."""
    x = rng.standard_normal(shape).astype("float32")
    if dtype == "float16":
        h = x.astype("float16")
        return h, h.astype("float32")
    bits = x.view("uint32")
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("uint16")
    return rounded, (rounded.astype("uint32") << 16).view("float32")


def emulate(s, args, inputs, rng=None):
    """Compile for sm_80 and sm_90, run the kernels on the CPU; returns the outputs."""
    modules = build_all(s, args)
    outs = [np.full([int(d.value) for d in t.shape], np.nan, "float32")
            for t in args[len(inputs):]]
    modules["sm_80"].emulate(*inputs, *outs)
    return outs[0] if len(outs) == 1 else outs


def three_shared_arrays():
    """(schedule, [A, B]): two shared tiles of 6143 floats and one of a float, staged by
    a 32-thread block: 49148 bytes, 49280 with each array starting on 128 bytes (as
    ptxas lays them out), just over the static 48 KiB."""
    N = 6143
    A = td.placeholder((N,), name="A")
    P1 = td.compute((N,), lambda i: A[i] + 1.0, name="P1")
    P2 = td.compute((N,), lambda i: A[i] * 2.0, name="P2")
    P3 = td.compute((1,), lambda i: A[i], name="P3")
    B = td.compute((N,), lambda i: P1[i] + P2[i] + P3[0], name="B")
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], nparts=1)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    _, t = s[B].split(tx, factor=32)
    s[B].bind(t, td.thread_axis("threadIdx.x"))
    for P in (P1, P2, P3):
        s[P].set_scope("shared")
        s[P].compute_at(s[B], bx)
        _, t = s[P].split(P.op.axis[0], factor=32)
        s[P].bind(t, td.thread_axis("threadIdx.x"))
    return s, [A, B]
