"""What the templates need to know about this CPU."""
from __future__ import annotations

import functools
import os

from tensordsl.arith.simplify import const_int
from tensordsl.ir import dtype as dt


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


@functools.lru_cache(maxsize=None)
def _caches() -> tuple[tuple[int, int], ...]:
    """(level, bytes) of each of cpu0's caches, from sysfs (none where it cannot be
    read)."""
    caches = []
    root = "/sys/devices/system/cpu/cpu0/cache"
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        try:
            with open(os.path.join(root, entry, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(root, entry, "size")) as f:
                text = f.read().strip()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit() and level.isdigit():
            caches.append((int(level), int(digits) * scale))
    return tuple(caches)


def last_level_cache_bytes() -> int:
    """The largest cache's size (32 MiB where it cannot be read)."""
    return max((size for _, size in _caches()), default=32 << 20)


def l2_cache_bytes() -> int:
    """A core's level-2 cache (1 MiB where it cannot be read)."""
    return next((size for level, size in _caches() if level == 2), 1 << 20)


def output_bytes(tensor) -> int | None:
    total = max(1, dt.bits(tensor.dtype) // 8)
    for d in tensor.shape:
        size = const_int(d)
        if size is None:
            return None
        total *= size
    return total


def streams_well(tensor) -> bool:
    """Whether to write ``tensor`` with non-temporal stores: when it is too large to
    stay in the last-level cache for its consumer, bypassing the cache saves reading
    each line before it is overwritten (measured 25-35% on a memory-bound chain)."""
    size = output_bytes(tensor)
    return size is not None and size >= STREAM_FRACTION * last_level_cache_bytes()


def wants_stream(config: dict | None, tensor) -> bool:
    """A template's ``stream`` knob: as configured, else decided by the output's size."""
    chosen = (config or {}).get("stream")
    return streams_well(tensor) if chosen is None else bool(chosen)


STREAM_FRACTION = 0.5
