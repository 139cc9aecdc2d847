"""The emulator's shared-memory bank model (targets/cuda/emulate_banks.h): wavefronts per
warp-wide shared access, on hand-written access patterns and on the fp32 matmul
template, whose A tile is padded so its reads are free of conflicts (issue 20)."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda.matmul import schedule_matmul
from targets.cuda.emulate import SharedTraffic, emulate_source

from .helpers import tensor_core_inputs, tensor_core_matmul

# one warp, one shared read each; MODE picks the pattern
BANKS = r"""
__global__ void banks(float* out) {
  __shared__ __align__(16) float s[32 * 33];
  TD_SHARED_STATE(s);
  const int t = threadIdx.x;
  float v;
  if (MODE == 4) v = TD_VEC_SHARED_LOAD(float4, s, 4 * t).x;
  else v = TD_SHARED_LOAD(s, MODE == 0 ? t : MODE == 1 ? 2 * t : MODE == 2 ? 32 * t
                             : MODE == 3 ? 0 : 33 * t);
  TD_AT(out, t) = v;
}
"""


@pytest.mark.parametrize("mode,wavefronts", [
    (0, 1),     # consecutive floats: one word in each bank
    (1, 2),     # stride 2: two words in every other bank
    (2, 32),    # a column of a 32x32 tile: all in bank 0
    (3, 1),     # one word for all: a broadcast
    (4, 4),     # consecutive float4s: 512 bytes, 128 at a time
    (5, 1),     # a column of a 32x33 (padded) tile
])
def test_wavefronts_of_one_warp_access(mode, wavefronts):
    traffic = emulate_source(f"#define MODE {mode}\n" + BANKS, "banks", (1, 1, 1), (32, 1, 1),
                             np.zeros(32, "float32"), count_banks=True)
    assert traffic == SharedTraffic(requests=1, wavefronts=wavefronts)


def test_counting_is_asked_for():
    assert emulate_source("#define MODE 0\n" + BANKS, "banks", (1, 1, 1), (32, 1, 1),
                          np.zeros(32, "float32")) is None


@pytest.mark.parametrize("pad,per_request", [(4, 1.5), (0, 2.0)])
def test_the_matmul_tiles_a_rows_pad_removes_its_conflicts(pad, per_request, rng):
    """Per warp: the A reads (LDS.128, two threadIdx.y rows 4 apart) take 1 wavefront
    with the padded rows and 2 without; the B reads (16 lanes' float4s, shared by both
    rows) take 2, the least 256 bytes can."""
    A, B = td.placeholder((128, 64), name="A"), td.placeholder((64, 128), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"pad": pad})
    f = td.build(s, [A, B, C], target="cuda -arch=sm_80")
    a, b = rng.standard_normal((128, 64), "float32"), rng.standard_normal((64, 128), "float32")
    c = np.full((128, 128), np.nan, "float32")
    traffic = f.emulate(a, b, c, count_banks=True)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    assert traffic.wavefronts_per_request == per_request


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("config,per_matrix", [
    ({}, 1.0),                      # swizzled (the default): compact tiles, no conflict
    ({"kk": 3}, 1.0),               # A's rows of 96 bytes padded to 112 (no swizzle fits)
    ({"swizzle": 0, "pad": 8}, 1.0),  # padded rows: an odd number of 16 bytes
    ({"swizzle": 0}, 6.0),          # A's 64-byte rows 4 ways, B's 128-byte rows 8 ways
])
def test_the_tensor_core_tiles_are_read_one_wavefront_per_matrix(config, per_matrix, dtype,
                                                                  rng):
    """Issue 20: the tensor-core matmul's shared reads (ldmatrix, 8 rows of 16 bytes per
    8x8 matrix) are free of bank conflicts with the tiles swizzled (each lane swizzles
    the row address it gives ldmatrix) or their rows padded, and 4-8 ways conflicting
    with neither. Through the code generator's ldmatrix and mma.sync, or (float16,
    unswizzled) WMMA, whose tiles sm_80 loads with ldmatrix too (emulate_mma.h)."""
    M, N, K = 64, 64, 96
    f = td.build(*tensor_core_matmul(M, N, K, dtype, config), target="cuda -arch=sm_80")
    src = f.get_source()
    swizzled = config.get("swizzle", 1)
    assert ("td_mma_load_b_swizzled(td_b" in src) == bool(swizzled)
    if not config:   # both tiles swizzled and compact: 3 stages of 64 x 32 and 32 x 64 halves
        assert "td_mma_load_a_swizzled(td_a" in src
        assert f.kernels[0].dynamic_shared + _static_shared(src) == 3 * 2 * 64 * 32 * 2
    (a, a32), (b, b32) = tensor_core_inputs(rng, (M, K), dtype), \
        tensor_core_inputs(rng, (K, N), dtype)
    c = np.full((M, N), np.nan, "float32")
    traffic = f.emulate(a, b, c, count_banks=True)
    np.testing.assert_allclose(c, a32 @ b32, rtol=1e-5, atol=1e-3)
    # per block, 16*kk-deep slice and 16-deep step, each warp reads its wm A and wn B
    # fragments once (for its wm x wn products), 4 matrices a fragment
    warps, slices, fragments = 4, K // (16 * config.get("kk", 2)), 2 + 2
    blocks = (M // 64) * (N // 64)
    assert traffic.matrix_requests == blocks * slices * warps * fragments * 4 * \
        config.get("kk", 2)
    assert traffic.wavefronts_per_matrix == per_matrix


def test_a_pad_that_breaks_16_byte_rows_is_refused():
    for pad in (4, 16):
        with pytest.raises(ValueError, match="pad: expected 0 or 8 elements"):
            tensor_core_matmul(64, 64, 64, "float16", {"pad": pad})


def _static_shared(src: str) -> int:
    """Bytes of the ``__shared__`` arrays a kernel's source declares."""
    import re
    sizes = {"half": 2, "__nv_bfloat16": 2, "float": 4}
    return sum(sizes[t] * int(k) for t, k in
               re.findall(r"__shared__ (?:__align__\(\d+\) )?(\w+) \w+\[(\d+)\]", src))
