"""Swizzled shared buffers (``s[T].swizzle()``, issue 20): each 128-byte line's 16-byte
chunks permuted by the line's place in its 1024-byte block, every access through the
permutation (``lower/flatten_storage.py``), emulated against numpy with the bank model
counting what the permutation buys."""
import numpy as np
import pytest

import tensordsl as td
from tensordsl.schedule.trace import dumps, loads, replay


def _transpose_through_shared(swizzle: bool, dtype: str = "float32", n: int = 64):
    """B = 2 A^T by 32x32 tiles staged in shared memory: the tile is copied in by rows
    (lanes along a row) and read by columns (lanes down a column: rows 128 bytes apart,
    every lane in the same bank unless the tile is swizzled)."""
    A = td.placeholder((n, n), dtype=dtype, name="A")
    B = td.compute((n, n), lambda i, j: A[j, i] * 2.0, name="B")
    s = td.create_schedule(B.op)
    AS = s.cache_read(A, "shared", [B])
    bi, i = s[B].split(B.op.axis[0], factor=32)
    bj, j = s[B].split(B.op.axis[1], factor=32)
    ty, i = s[B].split(i, nparts=8)
    s[B].reorder(bi, bj, ty, i, j)
    s[B].bind(bi, td.thread_axis("blockIdx.y"))
    s[B].bind(bj, td.thread_axis("blockIdx.x"))
    s[B].bind(ty, td.thread_axis("threadIdx.y"))
    s[B].bind(j, td.thread_axis("threadIdx.x"))
    s[AS].compute_at(s[B], bj)
    fused = s[AS].fuse(*AS.op.axis)
    fused, tx = s[AS].split(fused, factor=32)
    _, tyc = s[AS].split(fused, factor=8)
    s[AS].bind(tx, td.thread_axis("threadIdx.x"))
    s[AS].bind(tyc, td.thread_axis("threadIdx.y"))
    if swizzle:
        s[AS].swizzle()
    return s, [A, B]


@pytest.mark.parametrize("swizzle,per_request", [(False, 16.5), (True, 2.5)])
def test_a_swizzled_tile_spreads_a_column_over_the_banks(swizzle, per_request, rng):
    """Reading a column of a 32x32 float tile: 32 lanes in one bank (32 wavefronts)
    unswizzled; swizzled, its 8-line groups land in 8 different 16-byte chunks (4
    wavefronts). The row-wise copy in is one wavefront either way (a line's chunks are
    only permuted among themselves): (32 + 1) / 2 and (4 + 1) / 2 per request."""
    s, args = _transpose_through_shared(swizzle)
    f = td.build(s, args, target="cuda -arch=sm_80")
    assert ("^" in f.get_source().split("__global__")[1]) == swizzle
    a = rng.standard_normal((64, 64)).astype("float32")
    b = np.full((64, 64), np.nan, "float32")
    traffic = f.emulate(a, b, count_banks=True)
    np.testing.assert_array_equal(b, 2 * a.T)
    assert traffic.wavefronts_per_request == per_request


def test_a_swizzled_tile_of_halves_and_a_replayed_schedule_compute_the_same(rng):
    s, args = _transpose_through_shared(True, "float16")
    for schedule in (s, replay(loads(dumps(s.trace)), [args[1].op])):
        f = td.build(schedule, args, target="cuda -arch=sm_80")
        a = rng.standard_normal((64, 64)).astype("float16")
        b = np.full((64, 64), np.nan, "float16")
        f.emulate(a, b)
        np.testing.assert_array_equal(b, (2 * a.astype("float32")).T.astype("float16"))


def _one_tile(shape, dtype="float32", scope="shared", pad=None):
    A = td.placeholder(shape, dtype=dtype, name="A")
    B = td.compute(shape, lambda i, j: A[i, j] + 1.0, name="B")
    s = td.create_schedule(B.op)
    AS = s.cache_read(A, scope, [B])
    bx, _ = s[B].split(B.op.axis[0], factor=shape[0])
    tx = s[B].fuse(*s[B].leaf_iter_vars[1:])
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis("threadIdx.x"))
    s[AS].compute_at(s[B], bx)
    s[AS].bind(s[AS].fuse(*AS.op.axis), td.thread_axis("threadIdx.x"))
    if pad:
        s[AS].storage_align(AS.op.axis[0], shape[1], pad)
    s[AS].swizzle()
    return s, [A, B]


@pytest.mark.parametrize("shape,dtype,scope,pad,message", [
    ((8, 16), "float32", "shared", None, r"whole 1024-byte blocks; got a 8x16 tile of "
                                         r"float32 \(512 bytes, rows of 64\)"),
    ((16, 6), "float32", "shared", None, r"rows of whole 16-byte chunks"),
    ((16, 16), "float64", "shared", None, r"elements of 2 or 4 bytes, got float64"),
    ((16, 16), "float32", "local", None, r"only a shared buffer is swizzled, it is 'local'"),
    ((16, 16), "float32", "shared", 4, r"not padded as well \(storage_align\)"),
])
def test_a_tile_that_cannot_be_swizzled_is_refused(shape, dtype, scope, pad, message):
    s, args = _one_tile(shape, dtype, scope, pad)
    with pytest.raises(td.BuildError, match=r"swizzle of 'A\.(shared|local)': .*" + message):
        td.build(s, args, target="cuda -arch=sm_80")


def test_a_tensor_core_store_into_a_swizzled_buffer_is_refused():
    """store_matrix_sync (and td_mma_store) write a tile row by row from its first
    element; in a swizzled buffer the rows' chunks are permuted, so the tile would land
    scrambled: refused, naming the buffer (it built and computed garbage before)."""
    M, N, K = 64, 16, 64
    A = td.placeholder((M, K), dtype="float16", name="A")
    B = td.placeholder((K, N), dtype="float16", name="B")
    k = td.reduce_axis((0, K), "k")
    C = td.compute((M, N), lambda i, j: td.sum(A[i, k].astype("float32")
                                               * B[k, j].astype("float32"), axis=k), name="C")
    D = td.compute((M, N), lambda i, j: C[i, j] * 2.0, name="D")
    s = td.create_schedule(D.op)
    s[C].set_scope("shared")
    CF = s.cache_write(C, "wmma.accumulator")
    AS, BS = s.cache_read(A, "shared", [CF]), s.cache_read(B, "shared", [CF])
    bi, di = s[D].split(D.op.axis[0], factor=64)
    s[D].bind(bi, td.thread_axis("blockIdx.x"))
    _, tx = s[D].split(s[D].fuse(di, D.op.axis[1]), factor=32)
    s[D].bind(tx, td.thread_axis("threadIdx.x"))
    s[C].compute_at(s[D], bi)
    it, i16 = s[C].split(C.op.axis[0], factor=16)
    jt, j16 = s[C].split(C.op.axis[1], factor=16)
    s[C].reorder(it, jt, i16, j16)
    s[C].tensorize(i16, td.tensor_intrin.wmma_store())
    s[CF].compute_at(s[C], jt)
    ko, k16 = s[CF].split(CF.op.reduce_axis[0], factor=16)
    s[CF].reorder(ko, *CF.op.axis, k16)
    s[CF].tensorize(CF.op.axis[0], td.tensor_intrin.wmma_mma_sync(16, 16))
    for cache in (AS, BS):
        s[cache].compute_at(s[CF], ko)
    td.build(s, [A, B, D], target="cuda -arch=sm_80")          # unswizzled: fine
    s[C].swizzle()
    with pytest.raises(td.BuildError, match=r"swizzle of 'C': a tensor-core store writes "
                                            r"its tile row by row"):
        td.build(s, [A, B, D], target="cuda -arch=sm_80")
