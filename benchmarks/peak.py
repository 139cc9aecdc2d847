"""The machine's FMA peak, measured now: a JIT-compiled chain of independent vector
FMAs per core (enough accumulators to hide the FMA latency), run on every core at once."""
from __future__ import annotations

import ctypes
import os
import threading
import time

import llvmlite.binding as llvm

from targets.llvm.compile import host_machine, optimize
from targets.llvm.runtime import load

ACCUMULATORS = 12


def _vector_lanes() -> int:
    return 16 if "+avx512f" in llvm.get_host_cpu_features().flatten() else 8


def _kernel_ir(lanes: int) -> str:
    vt = f"<{lanes} x float>"
    lines = [f"declare {vt} @llvm.fma.v{lanes}f32({vt}, {vt}, {vt})",
             "define i32 @peak(ptr %out, i64 %iters) {",
             "entry:", "  br label %loop", "loop:", "  %i = phi i64 [0, %entry], [%i.next, %loop]"]
    for a in range(ACCUMULATORS):
        init = f"splat (float {1.0 + a * 0.125:.6e})"
        lines.append(f"  %acc{a} = phi {vt} [{init}, %entry], [%n{a}, %loop]")
    for a in range(ACCUMULATORS):
        lines.append(f"  %n{a} = call {vt} @llvm.fma.v{lanes}f32({vt} %acc{a}, "
                     f"{vt} splat (float 5.000000e-01), {vt} splat (float 2.500000e-01))")
    lines += ["  %i.next = add i64 %i, 1", "  %c = icmp slt i64 %i.next, %iters",
              "  br i1 %c, label %loop, label %done", "done:"]
    total = "%n0"
    for a in range(1, ACCUMULATORS):
        lines.append(f"  %s{a} = fadd {vt} {total}, %n{a}")
        total = f"%s{a}"
    lines += [f"  store {vt} {total}, ptr %out, align 4", "  ret i32 0", "}"]
    return "\n".join(lines)


def fma_peak_gflops(seconds: float = 0.3) -> float:
    lanes = _vector_lanes()
    obj = host_machine().emit_object(optimize(_kernel_ir(lanes)))
    kernel = load(obj, "peak", 1, 1)
    iters = 2_000_000
    flops_per_call = 2 * lanes * ACCUMULATORS * iters
    threads = os.cpu_count() or 1
    best = 0.0
    out = [(ctypes.c_float * lanes)() for _ in range(threads)]
    for _ in range(5):
        def work(k):
            kernel(ctypes.addressof(out[k]), iters)
        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        t = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        best = max(best, flops_per_call * threads / (time.perf_counter() - t) / 1e9)
    return best
