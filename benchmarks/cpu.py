"""The CPU suite of the foundation: the tutorial matmul, a fused elementwise chain and
build time, each beside numpy, with the FMA peak and triad bandwidth of the moment."""
from __future__ import annotations

from .harness import compare, measure, table, update_readme, write_results

MATMUL = (1024, 1024, 1024)
ELEMENTWISE_N = 1 << 24


def run(quick: bool = False) -> list[dict]:
    rows = []
    peak = measure("peak", "llvm")["gflops"]
    bw = measure("triad", "tensordsl", n=ELEMENTWISE_N)["gbytes_per_s"]
    M, N, K = MATMUL
    r = compare("matmul", ["numpy", "tensordsl"], rounds=1 if quick else 2, M=M, N=N, K=K)
    flops = 2 * M * N * K
    ours, theirs = r["tensordsl"]["seconds"], r["numpy"]["seconds"]
    rows.append({"benchmark": "matmul (TVM tutorial schedule)", "shape": f"{M}x{N}x{K}",
                 "ours_ms": ours * 1e3, "numpy_ms": theirs * 1e3, "speedup": theirs / ours,
                 "ours_GFLOPs": flops / ours / 1e9, "numpy_GFLOPs": flops / theirs / 1e9,
                 "ours_%peak": 100 * flops / ours / 1e9 / peak})
    r = compare("fused", ["numpy", "tensordsl"], rounds=1 if quick else 2, n=ELEMENTWISE_N)
    ours, theirs = r["tensordsl"]["seconds"], r["numpy"]["seconds"]
    rows.append({"benchmark": "max(1.5*x + 0.5, 0)", "shape": f"{ELEMENTWISE_N}",
                 "ours_ms": ours * 1e3, "numpy_ms": theirs * 1e3, "speedup": theirs / ours,
                 "ours_GB/s": 8 * ELEMENTWISE_N / ours / 1e9,
                 "ours_%triad": 100 * 8 * ELEMENTWISE_N / ours / 1e9 / bw})
    b = measure("build", "tensordsl", M=M, N=N, K=K, repeat=5 if quick else 9)
    rows.append({"benchmark": "td.build of the tutorial matmul", "shape": f"{M}x{N}x{K}",
                 "ours_ms": b["seconds"] * 1e3})
    path = write_results("cpu-foundation", rows, {"fma_peak_gflops": peak, "triad_gbs": bw})
    cols = ["benchmark", "shape", "ours_ms", "numpy_ms", "speedup", "ours_GFLOPs",
            "numpy_GFLOPs", "ours_%peak", "ours_GB/s", "ours_%triad"]
    text = (f"FMA peak measured in this run: {peak:.0f} GFLOP/s; triad bandwidth: {bw:.1f} GB/s. "
            "speedup = numpy time / our time, same run.\n\n" + table(rows, cols))
    update_readme("cpu-foundation", text)
    print(text)
    print(f"\nwritten to {path}")
    return rows
