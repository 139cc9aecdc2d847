"""ldmatrix and mma.sync (m16n8k16) as the code generator writes them for bfloat16 tiles
(targets/cuda/wmma.py), run lane by lane in the emulator (emulate_mma.h): one 16x16x16
step against numpy, and what the emulator refuses."""
from __future__ import annotations

import numpy as np
import pytest

from targets.cuda.emulate import EmulationError, emulate_source
from targets.cuda.wmma import MMA_HELPERS

from .helpers import tensor_core_inputs

# One warp: A and B staged in shared rows of 24 halves (16 + a pad), one 16x16x16 step,
# C stored from the lanes' registers. MODE 1: lane 31 leaves before the step; MODE 2:
# A read from global memory.
ONE_STEP = MMA_HELPERS + r"""
__global__ void one_step(float* a, float* b, float* c) {
  __shared__ __align__(16) __nv_bfloat16 as[16 * 24];
  TD_SHARED_STATE(as);
  __shared__ __align__(16) __nv_bfloat16 bs[16 * 24];
  TD_SHARED_STATE(bs);
  const int t = threadIdx.x;
  for (int e = t; e < 256; e += 32) {
    TD_SHARED_STORE(as, (e / 16) * 24 + e % 16) = __nv_bfloat16(TD_AT(a, e));
    TD_SHARED_STORE(bs, (e / 16) * 24 + e % 16) = __nv_bfloat16(TD_AT(b, e));
  }
  __syncthreads();
  if (MODE == 1 && t == 31) return;
  td_mma_acc acc;
  td_mma_fill(acc, 0.5f);
  unsigned fa[4], fb[4];
  if (MODE == 2) td_mma_load_a(fa, (const __nv_bfloat16*)a, 16);
  else td_mma_load_a(fa, as, 24);
  td_mma_load_b(fb, bs, 24);
  td_mma_product<__nv_bfloat16>(acc, fa, fb);
  td_mma_store(c, acc, 16);
}
"""


def _run(mode: int, rng, seed=None):
    (_, a), (_, b) = (tensor_core_inputs(rng, (16, 16), "bfloat16") for _ in range(2))
    c = np.full((16, 16), np.nan, "float32")
    traffic = emulate_source(f"#define MODE {mode}\n" + ONE_STEP, "one_step", (1, 1, 1),
                             (32, 1, 1), a, b, c, seed=seed, count_banks=True)
    return a, b, c, traffic


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_step_of_ldmatrix_and_mma_sync_is_the_tiles_product(seed, rng):
    a, b, c, traffic = _run(0, rng, seed)
    np.testing.assert_allclose(c, a @ b + 0.5, rtol=1e-5, atol=1e-5)
    # two ldmatrix.x4: 8 matrices, rows 48 bytes apart (3 x 16): no bank conflict
    assert traffic.matrix_requests == 8 and traffic.wavefronts_per_matrix == 1.0


def test_a_lane_missing_from_the_warp_is_reported(rng):
    with pytest.raises(EmulationError, match="ldmatrix in thread .*: lane 31 of its warp "
                                             "has exited"):
        _run(1, rng)


def test_ldmatrix_reads_shared_memory_only(rng):
    with pytest.raises(EmulationError, match="ldmatrix in thread .*: row .* is not in a "
                                             "shared array"):
        _run(2, rng)
