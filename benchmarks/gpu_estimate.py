"""``python -m benchmarks gpu --estimate``: where each GPU template stands, estimated
from its SASS when no GPU is at hand (the measured suite is ``benchmarks/gpu.py``).

Each template's workload (``schedules/cuda/workloads.py``) is compiled by NVRTC for
sm_80 (an A100) and sm_90a (an H100 SXM), disassembled (``targets/cuda/sass.py``), and
timed on paper as the slowest of three limits, per kernel, plus a launch each:

    issue    warp instructions / (4 schedulers x clock x SMs in use): the main loop's
             (the innermost doing the most arithmetic) once per iteration, the
             iterations inferred from the workload's arithmetic and the loop's math
             instructions (FFMA = 64 flop a warp, HMMA.16816 = 4096, ...); every other
             instruction once per warp
    math     the workload's arithmetic at the device's peak for the pipe it uses
             (FP32 FMA, or tensor cores: mma.sync reaches ~2/3 of Hopper's dense peak,
             which only wgmma attains)
    memory   the workload's compulsory DRAM traffic at the device's bandwidth

and compared with the roofline: the arithmetic at the best peak for its type, or the
traffic at full bandwidth, whichever is slower. Not modelled: latency (occupancy is
shown, not used), caches beyond compulsory traffic, shared-memory bandwidth and bank
conflicts, tails of waves — so a math-bound row near 1.0 says the instruction stream
does not stand in the way, not that the kernel runs at peak.
It is an estimate: only a GPU run (``python -m benchmarks gpu``) measures.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .harness import table, update_readme


@dataclass(frozen=True)
class Device:
    """Datasheet figures (dense, no sparsity; boost clock)."""
    name: str
    arch: str
    sms: int
    clock_hz: float
    fp32_flops: float
    tensor_flops: float          # fp16/bf16 in, fp32 accumulate
    mma_sync_share: float        # of tensor_flops reachable with mma.sync (HMMA)
    dram_bytes_per_s: float


DEVICES = [
    Device("A100-SXM4-80GB", "sm_80", 108, 1.41e9, 19.5e12, 312e12, 1.0, 2.04e12),
    Device("H100-SXM5-80GB", "sm_90a", 132, 1.98e9, 67e12, 989e12, 2 / 3, 3.35e12),
]
LAUNCH_S = 3e-6                  # one kernel launch, back to back

# HMMA's shape modifier, m n k run together: 16816 is m16 n8 k16
_HMMA_SHAPES = {"16816": (16, 8, 16), "1688": (16, 8, 8), "16832": (16, 8, 32),
                "884": (8, 8, 4)}


def warp_flops(opcode: str) -> int:
    """Floating-point operations one warp instruction does (0: not arithmetic)."""
    mnemonic = opcode.split(".")[0]
    if mnemonic == "FFMA":
        return 64
    if mnemonic in ("FADD", "FMUL"):
        return 32
    if mnemonic == "HFMA2":
        return 128
    if mnemonic == "HMMA":
        m, n_, k = _HMMA_SHAPES[opcode.split(".")[1]]
        return 2 * m * n_ * k
    if mnemonic == "HGMMA":      # a warpgroup's m x n x k (wgmma), a quarter per warp
        m, n_, k = (int(v) for v in opcode.split(".")[1].split("x"))
        return 2 * m * n_ * k // 4
    return 0


def _grid_blocks(kernel) -> int | None:
    try:
        blocks = 1
        for g in kernel.grid:
            blocks *= int(g.value)
        return blocks
    except AttributeError:       # a symbolic grid
        return None


def estimate(key: str, device: Device) -> dict:
    import tensordsl as td
    from schedules.cuda.workloads import WORKLOADS
    from targets.cuda import sass

    w = WORKLOADS[key]
    s, args = w.make()
    f = td.build(s, args, target=f"cuda -arch={device.arch}", check_indices=key != "spmm")
    code = sass.disassemble(f.cubin)
    issue_s = 0.0
    for index, plan in enumerate(f.kernels):
        k = code[plan.name]
        blocks = _grid_blocks(plan) or device.sms
        warps = blocks * -(-plan.threads // 32)
        # the main loop: the innermost one doing the most arithmetic
        flops_of = {lp: sum(warp_flops(i.opcode) for i in lp.instructions)
                    for lp in k.inner_loops()}
        loop = max(flops_of, key=flops_of.get, default=None)
        loop_flops = flops_of.get(loop, 0)
        if index == w.main_kernel and loop_flops:
            iterations = w.flops / loop_flops
            instructions = iterations * len(loop.instructions) + warps * (
                len(k.instructions) - len(loop.instructions))
        else:
            instructions = warps * len(k.instructions)
        issue_s += instructions / (4 * device.clock_hz * min(device.sms, blocks))
    main = f.kernels[w.main_kernel]
    main_code = code[main.name]
    # mma.sync reaches a share of Hopper's peak; wgmma (HGMMA) all of it
    tensor_peak = device.tensor_flops * (
        1.0 if main_code.count("HGMMA") else device.mma_sync_share)
    math_s = w.flops / (tensor_peak if w.tensor_cores else device.fp32_flops)
    memory_s = w.bytes / device.dram_bytes_per_s
    limits = {"issue": issue_s, "math": math_s, "memory": memory_s}
    bound = max(limits, key=limits.get)
    total = limits[bound] + LAUNCH_S * len(f.kernels)
    best_peak = device.tensor_flops if w.tensor_cores else device.fp32_flops
    roofline = max(w.flops / best_peak, w.bytes / device.dram_bytes_per_s)
    row = {"template": key, "shape": w.label, "gpu": device.name, "kernels": len(f.kernels),
           "regs": main_code.registers,
           "smem_KiB": (main_code.shared_bytes + main.dynamic_shared) / 1024,
           "blocks/SM": sass.resident_blocks(main_code, main.threads, main.dynamic_shared),
           "spills": sum(c.spills for c in code.values()), "bound": bound,
           "est_us": total * 1e6, "roofline_us": roofline * 1e6,
           "of_roofline": roofline / total}
    if w.flops / w.bytes > 10:
        row["est_TFLOP/s"] = w.flops / total / 1e12
    else:
        row["est_GB/s"] = w.bytes / total / 1e9
    return row


def run(only: str | None = None) -> list[dict]:
    from schedules.cuda.workloads import WORKLOADS
    from targets.cuda import sass

    missing = sass.missing_tools()
    if missing:
        raise SystemExit(f"python -m benchmarks gpu --estimate: {missing}")
    keys = [k for k in WORKLOADS if only in (None, k)]
    if not keys:
        raise SystemExit(f"--only: expected one of {', '.join(WORKLOADS)}, got {only!r}")
    rows = []
    for device in DEVICES:
        for key in keys:
            rows.append(estimate(key, device))
            print(f"  {device.name} {key}: estimated {rows[-1]['est_us']:.3g} us", flush=True)
    columns = ["template", "shape", "gpu", "kernels", "regs", "smem_KiB", "blocks/SM",
               "spills", "bound", "est_us", "roofline_us", "of_roofline", "est_TFLOP/s",
               "est_GB/s"]
    text = ("ESTIMATE, NOT A MEASUREMENT (no GPU was used): times on paper from each "
            "template's SASS (NVRTC CUBIN, cuobjdump) and datasheet peaks; of_roofline = "
            "roofline time / estimated time. See benchmarks/gpu_estimate.py for the "
            f"model. Written {time.strftime('%Y-%m-%d')}.\n\n" + table(rows, columns))
    print("\n" + text)
    if only is None:
        update_readme("gpu-estimate", text)
    return rows
