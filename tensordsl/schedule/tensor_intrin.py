"""Hardware intrinsics that ``s[T].tensorize(axis, intrin)`` puts in place of a loop nest.

The tensor-core intrinsics of CUDA's WMMA API, on 16x16x16 tiles (float16 or bfloat16
inputs, float32 accumulation), each a warp-wide operation:

    wmma_mma_sync()   the reduction stage's loops (i, j, k) of 16, 16, 16 over
                      C[i, j] += A[i, k] * B[k, j] with C in scope "wmma.accumulator"
                      (its initialization becomes fill_fragment); A and B row-major.
                      wmma_mma_sync(m, n) takes a warp's m x n block of such tiles (m
                      and n multiples of 16) in one step: each of its m/16 A tiles and
                      n/16 B tiles loaded once, then every product
    wmma_store()      a copy stage's loops (i, j) of 16, 16 reading the accumulator:
                      store_matrix_sync into the stage's buffer

``tensordsl/lower/tensorize.py`` checks the loops and the computation and emits the
calls; the CUDA code generator writes them with ``nvcuda::wmma`` (float16 tiles) or with
ldmatrix and mma.sync (bfloat16 tiles: ``targets/cuda/wmma.py``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorIntrin:
    name: str                 # "wmma.mma_sync" | "wmma.store"
    shape: tuple[int, ...]    # loop extents it replaces, outermost first

    def __repr__(self):
        return f"TensorIntrin({self.name}, {self.shape})"


def wmma_mma_sync(m: int = 16, n: int = 16, k: int = 16) -> TensorIntrin:
    if k != 16 or m < 16 or n < 16 or m % 16 or n % 16:
        raise ValueError(f"wmma_mma_sync: supported tiles are 16x16x16 and blocks of them "
                         f"(m and n multiples of 16, k 16), got {m}x{n}x{k}")
    return TensorIntrin("wmma.mma_sync", (m, n, k))


def wmma_store(m: int = 16, n: int = 16) -> TensorIntrin:
    if (m, n) != (16, 16):
        raise ValueError(f"wmma_store: supported tile is 16x16, got {m}x{n}")
    return TensorIntrin("wmma.store", (m, n))


def by_name(name: str, shape=None) -> TensorIntrin:
    """The intrinsic ``name`` of ``shape`` (its loop extents; default its 16x16 tile),
    as a schedule's trace records it."""
    makers = {"wmma.mma_sync": wmma_mma_sync, "wmma.store": wmma_store}
    if name not in makers:
        raise ValueError(f"unknown tensor intrinsic {name!r}; known: {sorted(makers)}")
    return makers[name](*(shape or ()))
