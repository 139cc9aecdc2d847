"""What the templates need to know about this CPU."""
from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=None)
def vector_lanes(dtype_bits: int = 32) -> int:
    """SIMD lanes of one register for this element width (AVX-512: 512 bits, else 256)."""
    import llvmlite.binding as llvm
    from targets.llvm.compile import host_machine
    host_machine()
    features = llvm.get_host_cpu_features().flatten()
    width = 512 if "+avx512f" in features else 256
    return width // dtype_bits


def num_threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
