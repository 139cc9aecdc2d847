"""``python -m benchmarks gpu --estimate`` (benchmarks/gpu_estimate.py): the roofline
estimate read from each template's SASS, without a GPU."""
from __future__ import annotations

import pytest

from benchmarks import gpu_estimate as est
from targets.cuda import sass

needs_tools = pytest.mark.skipif(sass.missing_tools() is not None,
                                 reason=f"no SASS disassembler: {sass.missing_tools()}")


@pytest.mark.parametrize("opcode,flops", [("FFMA", 64), ("FADD", 32), ("HFMA2.MMA", 128),
                                          ("HMMA.16816.F32", 4096),
                                          ("HMMA.16816.F32.BF16", 4096),
                                          ("HMMA.1688.F32", 2048), ("LDS.128", 0),
                                          ("IMAD.WIDE", 0)])
def test_flops_per_warp_instruction(opcode, flops):
    assert est.warp_flops(opcode) == flops


@needs_tools
@pytest.mark.parametrize("device", est.DEVICES, ids=lambda d: d.arch)
@pytest.mark.parametrize("key", ["matmul_fp32", "softmax", "matmul_fp16"])
def test_an_estimate_is_never_faster_than_the_roofline(key, device):
    row = est.estimate(key, device)
    assert row["est_us"] >= row["roofline_us"] > 0 and 0 < row["of_roofline"] <= 1
    assert row["bound"] in ("issue", "math", "memory") and row["spills"] == 0
    if key == "softmax":                # 32 MiB through DRAM, next to no arithmetic
        assert row["bound"] == "memory"


@needs_tools
def test_the_sgemm_on_hopper_is_bound_by_instruction_issue():
    """H100: 4 FFMA warp instructions a clock per SM = its issue rate, so the loop's
    non-FFMA instructions (~1/10 of it with 8 x 8 a thread; 1/4 with 4 x 4) cost time
    directly; A100 issues twice its FFMA rate and stays bound by the FMA pipe."""
    a100, h100 = est.DEVICES
    assert est.estimate("matmul_fp32", h100)["bound"] == "issue"
    assert 0.85 < est.estimate("matmul_fp32", h100)["of_roofline"] < 0.95
    assert est.estimate("matmul_fp32", a100)["bound"] == "math"


@needs_tools
def test_the_table_says_it_is_an_estimate(capsys):
    rows = est.run(only="elementwise")
    out = capsys.readouterr().out
    assert "ESTIMATE, NOT A MEASUREMENT (no GPU was used)" in out
    assert [r["gpu"] for r in rows] == [d.name for d in est.DEVICES]
    assert "| elementwise | gelu 4096x4096 | A100-SXM4-80GB |" in out


def test_an_unknown_template_is_refused_by_name():
    with pytest.raises(SystemExit, match="--only: expected one of matmul_fp32, .*got 'gemm'"):
        est.run(only="gemm")
