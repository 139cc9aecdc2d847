"""Static checks of the GPU templates' machine code (issue 20): each template's
representative workload (schedules/cuda/workloads.py) compiled by NVRTC to CUBIN for
sm_80 and sm_90a, disassembled (targets/cuda/sass.py), and its instruction mix,
registers, local memory and shared memory compared with what the template is meant to
show (issue 20's list, all of it emitted now: cp.async, ldmatrix, mma.sync, wgmma,
TMA, 128-bit loads)."""
from __future__ import annotations

import functools

import pytest

import tensordsl as td
from schedules.cuda.workloads import WORKLOADS
from targets.cuda import sass

ARCHS = ("sm_80", "sm_90a")
needs_tools = pytest.mark.skipif(sass.missing_tools() is not None,
                                 reason=f"no SASS disassembler: {sass.missing_tools()}")


@functools.cache
def _compiled(key: str, arch: str):
    """(module, {kernel name: KernelSass}) of workload ``key`` for ``arch``."""
    s, args = WORKLOADS[key].make()
    f = td.build(s, args, target=f"cuda -arch={arch}", check_indices=key != "spmm")
    return f, sass.disassemble(f.cubin)


def _main(key: str, arch: str) -> sass.KernelSass:
    f, kernels = _compiled(key, arch)
    return kernels[f.kernels[WORKLOADS[key].main_kernel].name]


# ------------------------------------------------------------------ the parser alone
_LISTING = """
\tcode for sm_80
\t.target\tsm_80

\t\tFunction : k0
\t.headerflags\t@"EF_CUDA_SM80 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM80)"
        /*0000*/                   MOV R1, c[0x0][0x28] ;          /* 0x00000a0000017a02 */
        /*0010*/                   LDG.E.128.CONSTANT R8, [R2.64] ; /* 0x0 */
        /*0020*/                   FFMA R4, R8, R9, R4 ;           /* 0x0 */
        /*0030*/              @!P0 BRA 0x20 ;                      /* 0x0 */
        /*0040*/                   LDG.E.64 R8, [R2.64] ;          /* 0x0 */
        /*0048*/               @!PT LDS RZ, [RZ] ;                 /* 0x0 */
        /*0050*/                   STL [R1], RZ ;                  /* 0x0 */
        /*0060*/                   BRA 0x10 ;                      /* 0x0 */
        /*0070*/                   EXIT ;                          /* 0x0 */
        /*0080*/                   BRA 0x80;                       /* 0x0 */
"""


def test_parser_reads_opcodes_predicates_and_nested_loops():
    (arch, instructions), = sass.parse_sass(_LISTING).values()
    k = sass.KernelSass("k0", arch, tuple(instructions), 10, 0, 0, 0)
    assert arch == "sm_80" and len(k.instructions) == 9
    assert k.instructions[3].predicate == "@!P0" and k.instructions[3].opcode == "BRA"
    # a pattern matches whole modifiers: LDG.E.128 is not LDG.E.64, LDG is both; an
    # instruction predicated never to run (@!PT) is not counted
    assert (k.count("LDG.E.128"), k.count("LDG.E.64"), k.count("LDG"), k.count("LDG.E.1")) \
        == (1, 1, 2, 0)
    assert k.count("LDS") == 0 and k.spills == 1
    # 0x20..0x30 inside 0x10..0x60; the branch to itself at 0x80 is no loop
    assert [(lp.start, lp.end) for lp in k.loops] == [(0x20, 0x30), (0x10, 0x60)]
    assert k.main_loop().count("FFMA") == 1 and len(k.main_loop().instructions) == 2


def test_resource_usage_is_read_per_kernel():
    text = (" Common:\n  GLOBAL:0\n Function main_kernel1:\n  REG:128 STACK:64 SHARED:9216 "
            "LOCAL:0 CONSTANT[0]:376 TEXTURE:0\n Function main_kernel0:\n  REG:22 STACK:0 "
            "SHARED:0 LOCAL:8\n")
    res = sass.parse_resources(text)
    assert res["main_kernel1"]["REG"] == 128 and res["main_kernel1"]["STACK"] == 64
    assert res["main_kernel0"]["LOCAL"] == 8 and "Common" not in res


def test_occupancy_follows_registers_and_shared_memory():
    k = sass.KernelSass("k", "sm_80", (), 65, 12288, 0, 0)
    # 65 registers -> 72 per thread in units of 256 per warp: 65536 / (72*32*4) = 7 blocks
    assert sass.resident_blocks(k, 128) == 7
    k = sass.KernelSass("k", "sm_90a", (), 32, 100 * 1024, 0, 0)
    assert sass.resident_blocks(k, 128) == 2                 # 228 KiB / 100 KiB
    k = sass.KernelSass("k", "sm_90a", (), 32, 0, 0, 0)     # its arrays dynamic: the
    assert sass.resident_blocks(k, 128, dynamic_shared=100 * 1024) == 2   # launch's bytes


def test_disassembling_something_else_names_the_argument():
    with pytest.raises(ValueError, match="cubin: expected a CUBIN"):
        sass.disassemble(b"not an ELF image")


# ------------------------------------------------------------------ every template
@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("key", sorted(WORKLOADS))
def test_no_local_memory(key, arch):
    """No spills and no local arrays: a register block indexed by constants only (the
    batch of one bound to blockIdx.z once indexed conv2d's accumulator, putting it in
    local memory: ``lower/gpu.py: fold_unit_threads``)."""
    f, kernels = _compiled(key, arch)
    for k in kernels.values():
        assert (k.spills, k.stack_bytes, k.local_bytes) == (0, 0, 0), k.name


# the occupancy each template is written for: resident blocks of its main kernel per SM
_OCCUPANCY = {"matmul_fp32": 2, "matmul_fp16": 3, "matmul_bf16": 3, "conv2d": 3,
              "conv2d_fp16": 3,
              "softmax": 8, "layer_norm": 8, "reduce_sum": 8, "elementwise": 8,
              "spmm": 16, "capsule": 8}


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("key", sorted(WORKLOADS))
def test_registers_and_shared_memory_give_the_intended_occupancy(key, arch):
    f, kernels = _compiled(key, arch)
    reserved = 1024 if arch.startswith("sm_9") else 0      # the system's share per block
    for plan in f.kernels:
        k = kernels[plan.name]
        assert k.shared_bytes - reserved <= 48 * 1024, plan.name   # static shared limit
        assert k.registers <= 255, plan.name
    main = f.kernels[WORKLOADS[key].main_kernel]
    assert sass.resident_blocks(kernels[main.name], main.threads) >= _OCCUPANCY[key]


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
def test_sgemm_inner_loop_is_ffma_from_vectorized_shared_loads(arch):
    """128 x 128 a block, 8 x 8 per thread (as 2 x 2 groups of 4 x 4), kt=16: 1024 FFMA
    per tile, operands read 16 bytes at a time from shared memory (4 a k), the tiles
    copied by cp.async (LDGSTS: 16 bytes each, 3 stages deep: 2 of A's tile and 2 of
    B's a thread) with one commit, one wait, one barrier."""
    loop = _main("matmul_fp32", arch).main_loop()
    assert loop.count("FFMA") == 8 * 8 * 16
    assert loop.count("LDS.128") == loop.count("LDS") == 4 * 16
    assert loop.count("LDGSTS") == 4 and loop.count("LDG") == 0
    assert loop.count("BAR.SYNC") == 1 and loop.count("DEPBAR") == 1
    # FFMA share of the loop's issue slots: what the estimate's roofline uses (0.90;
    # 0.79 with 4 x 4 a thread: the rest is the index arithmetic and the copies)
    assert loop.count("FFMA") / len(loop.instructions) > 0.85


def _tensor_core_loop(key: str, arch: str):
    """The tensor-core matmul's main loop and how many K slices one pass of it runs
    (the compiler may unroll it: one barrier per slice)."""
    loop = _main(key, arch).main_loop()
    return loop, loop.count("BAR.SYNC")


@needs_tools
@pytest.mark.parametrize("key", ["matmul_fp16", "matmul_bf16"])
def test_tensor_core_loop_is_ldmatrix_and_hmma_on_sm_80(key):
    """The block is one warpgroup (4 warps down a 64 x 64 tile, 16 x 64 each). Per
    64-deep K slice (kk = 4 steps of 16): each A and B fragment read once by ldmatrix
    (wm + wn = 5 x4 loads a step), 32 HMMA (m16n8k16: two per 16x16x16 product), the
    swizzled tiles copied 16 bytes at a time by cp.async (3 stages: 4 copies of A's tile
    and 4 of B's a thread). bfloat16 too (WMMA loaded its tiles with plain shared loads
    and transposed them with MOVM)."""
    loop, slices = _tensor_core_loop(key, "sm_80")
    assert slices >= 1 and loop.count("DEPBAR") == slices
    assert loop.count("LDSM") == (1 + 4) * 4 * slices
    assert loop.count("LDS") == 0 and loop.count("MOVM") == 0
    assert loop.count("HMMA") == 2 * 4 * 4 * slices
    assert loop.count("LDGSTS") == 8 * slices and loop.count("LDG") == 0


@needs_tools
@pytest.mark.parametrize("key", ["matmul_fp16", "matmul_bf16"])
def test_tensor_core_matmul_uses_wgmma_fed_by_tma_on_sm_90a(key):
    """On sm_90a the warpgroup's 4 warps multiply as one: per 64-deep slice 4 wgmma
    m64n64k16 (HGMMA, B transposed: its rows are N) straight from the swizzled shared
    tiles by descriptor — no ldmatrix, no HMMA. The TMA copies the tiles: per slice one
    UTMALDG of A's tile and one of B's, after one arrival with their bytes on the
    stage's mbarrier (SYNCS.ARRIVE) — no cp.async (LDGSTS, and its DEPBAR wait), no
    global loads by the threads."""
    loop, slices = _tensor_core_loop(key, "sm_90a")
    assert slices >= 1
    assert loop.count("HGMMA.64x64x16.F32") == loop.count("HGMMA") == 4 * slices
    assert loop.count("LDSM") == loop.count("HMMA") == loop.count("LDS") == 0
    assert loop.count("UTMALDG.2D") == 2 * slices and loop.count("SYNCS.ARRIVE") == slices
    assert loop.count("LDGSTS") == loop.count("DEPBAR") == loop.count("LDG") == 0


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
def test_conv2d_tile_kernel_is_ffma_on_shared_tiles(arch):
    k = _main("conv2d", arch)
    assert k.count("FFMA") > 0 and k.count("LDS") > 0 and k.count("BAR.SYNC") >= 1


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
def test_conv2d_implicit_gemm_loop_is_ldmatrix_and_hmma_on_gathered_tiles(arch):
    """float16 NHWC as an implicit GEMM (64x64 block tile of one warpgroup, 64-deep K
    slices): per slice 20 ldmatrix and 32 HMMA (sm_80) or 4 wgmma (sm_90a), the
    windows gathered from the
    input by cp.async 16 bytes (8 channels) at a time, zero-filled outside the image,
    never through registers (no LDG, no STS); the index arithmetic 32-bit, and the
    window offsets of a slice divided out of the slice number (ko*64 + t)//192 = ko//3:
    at most 5 instructions a HMMA (with 32-deep slices: 14.75 with 64-bit indices, 8.3
    with the offsets divided per thread, 6.6 after both, 4.1-7.1 swizzled). The
    compiler may unroll all 9 slices: then the kernel is the loop."""
    kernel = _main("conv2d_fp16", arch)
    loop = kernel.main_loop() if kernel.loops else kernel
    slices = loop.count("BAR.SYNC")
    assert slices >= 1 and loop.count("DEPBAR") == slices
    if arch == "sm_90a":     # the warpgroup's 4 wgmma a slice (HGMMA: 8 HMMA's work each)
        assert loop.count("HGMMA") == 4 * slices and loop.count("HMMA") == 0
        products = 8 * loop.count("HGMMA")
    else:                    # a warp's 1 x 4 fragments: 5 ldmatrix and 8 HMMA a step
        assert loop.count("HMMA") == 32 * slices and loop.count("LDSM") == 20 * slices
        products = loop.count("HMMA")
    assert loop.count("LDGSTS.E.BYPASS.128") == loop.count("LDGSTS") == 8 * slices
    assert loop.count("LDG") == loop.count("STS") == loop.count("LDS") == 0
    assert len(loop.instructions) <= 5 * products


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("key", ["softmax", "layer_norm"])
def test_rowwise_reads_each_element_once_and_reduces_with_shuffles(key, arch):
    """The row (1024 floats over 128 threads) is read from global memory once, 8
    loads a thread (layer_norm also reads gamma and beta), and each reduction is
    combined with warp shuffles."""
    k = _main(key, arch)
    per_thread = 1024 // 128
    assert k.count("LDG") == per_thread * (3 if key == "layer_norm" else 1)
    assert k.count("SHFL.BFLY") >= 5 * (2 if key == "softmax" else 1)
    assert not k.loops                                   # the row is unrolled on chip


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
def test_full_reduction_strides_and_shuffles(arch):
    f, kernels = _compiled("reduce_sum", arch)
    partial = kernels[f.kernels[0].name]
    assert partial.main_loop().count("LDG") >= 8 and partial.count("SHFL.BFLY") >= 5
    assert f.kernels[0].grid[0].value == 256          # many blocks, then one to combine


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
def test_elementwise_moves_16_bytes_per_access(arch):
    """A thread's 4 outputs of gelu: one 16-byte load of X, one 16-byte store, no
    narrower global access."""
    k = _main("elementwise", arch)
    assert k.count("LDG.E.128") == k.count("LDG") == 1
    assert k.count("STG.E.128") == k.count("STG") == 1


@needs_tools
@pytest.mark.parametrize("arch", ARCHS)
def test_spmm_and_capsule_loops_multiply_add(arch):
    assert _main("spmm", arch).main_loop().count("FFMA") > 0
    assert _main("capsule", arch).main_loop().count("FFMA") > 0
