"""TVM's GPU schedules, ported by renaming ``te.`` to ``td.``: built for sm_80 and sm_90
and emulated against numpy (outputs start as NaN)."""
import numpy as np
import pytest

import tensordsl as td

from .helpers import build_all, emulate


@pytest.mark.parametrize("spatial_threads", [False, True])
def test_cross_thread_reduction_with_rfactor_computed_at_the_thread_axis(spatial_threads):
    """TVM's reduction tutorial and ``test_rfactor_threads``: the rfactor stage is
    computed per thread at the reduction axis bound to threadIdx.x, whose threads the
    AllReduce then combines; with ``spatial_threads`` the rows are threadIdx.y too."""
    rows, cols, nthread = 10, 1027, 16
    A = td.placeholder((rows, cols), name="A")
    k = td.reduce_axis((0, cols), name="k")
    B = td.compute((rows,), lambda i: td.sum(A[i, k], axis=k, where=(i > 1)), name="B")
    s = td.create_schedule(B.op)
    ko, kf = s[B].split(k, factor=nthread)
    BF = s.rfactor(B, kf)
    if spatial_threads:
        bx, ty = s[B].split(s[B].op.axis[0], factor=nthread)
        s[B].bind(ty, td.thread_axis("threadIdx.y"))
    else:
        bx = s[B].op.axis[0]
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    tx = s[B].op.reduce_axis[0]
    thread_x = td.thread_axis("threadIdx.x")
    s[B].bind(tx, thread_x)
    s[BF].compute_at(s[B], tx)
    a = np.random.default_rng(0).standard_normal((rows, cols)).astype("float32")
    want = a.sum(axis=1)
    want[:2] = 0.0
    np.testing.assert_allclose(emulate(s, [A, B], [a]), want, rtol=1e-4, atol=1e-4)


def _conv2d_tutorial():
    """TVM's "How to optimize convolution on GPU" (HWCN layout), at a small size: the
    padded input and the weights staged in shared memory per reduction step, local
    copies of them per inner step, a local accumulator, 2x2 virtual threads over 4x4
    threads."""
    batch, in_channel, out_channel, in_size, kernel, pad = 16, 16, 32, 14, 3, 1
    A = td.placeholder((in_size, in_size, in_channel, batch), name="A")
    W = td.placeholder((kernel, kernel, in_channel, out_channel), name="W")
    out_size = in_size - kernel + 2 * pad + 1
    Apad = td.compute(
        (in_size + 2 * pad, in_size + 2 * pad, in_channel, batch),
        lambda yy, xx, cc, nn: td.if_then_else(
            td.all(yy >= pad, yy - pad < in_size, xx >= pad, xx - pad < in_size),
            A[yy - pad, xx - pad, cc, nn], td.const(0.0, "float32")),
        name="Apad")
    rc = td.reduce_axis((0, in_channel), name="rc")
    ry = td.reduce_axis((0, kernel), name="ry")
    rx = td.reduce_axis((0, kernel), name="rx")
    B = td.compute(
        (out_size, out_size, out_channel, batch),
        lambda yy, xx, ff, nn: td.sum(Apad[yy + ry, xx + rx, rc, nn] * W[ry, rx, rc, ff],
                                      axis=[ry, rx, rc]),
        name="B")

    s = td.create_schedule(B.op)
    s[Apad].compute_inline()
    AA = s.cache_read(Apad, "shared", [B])
    WW = s.cache_read(W, "shared", [B])
    AL = s.cache_read(AA, "local", [B])
    WL = s.cache_read(WW, "local", [B])
    BL = s.cache_write(B, "local")

    tile, num_thread, step, vthread = 4, 4, 8, 2
    block_factor = tile * num_thread
    block_x, block_y, block_z = (td.thread_axis(f"blockIdx.{c}") for c in "xyz")
    thread_x = td.thread_axis((0, num_thread), "threadIdx.x")
    thread_y = td.thread_axis((0, num_thread), "threadIdx.y")
    thread_xz = td.thread_axis((0, vthread), "vthread", name="vx")
    thread_yz = td.thread_axis((0, vthread), "vthread", name="vy")

    hi, wi, fi, ni = s[B].op.axis
    bz = s[B].fuse(hi, wi)
    by, fi = s[B].split(fi, factor=block_factor)
    bx, ni = s[B].split(ni, factor=block_factor)
    s[B].bind(bz, block_z)
    s[B].bind(by, block_y)
    s[B].bind(bx, block_x)
    tyz, fi = s[B].split(fi, nparts=vthread)
    txz, ni = s[B].split(ni, nparts=vthread)
    ty, fi = s[B].split(fi, nparts=num_thread)
    tx, ni = s[B].split(ni, nparts=num_thread)
    s[B].reorder(bz, by, bx, tyz, txz, ty, tx, fi, ni)
    s[B].bind(tyz, thread_yz)
    s[B].bind(txz, thread_xz)
    s[B].bind(ty, thread_y)
    s[B].bind(tx, thread_x)

    s[BL].compute_at(s[B], tx)
    yi, xi, fi, ni = s[BL].op.axis
    ry, rx, rc = s[BL].op.reduce_axis
    rco, rci = s[BL].split(rc, factor=step)
    s[BL].reorder(rco, ry, rx, rci, fi, ni)
    s[AA].compute_at(s[BL], rx)
    s[WW].compute_at(s[BL], rx)
    s[AL].compute_at(s[BL], rci)
    s[WL].compute_at(s[BL], rci)

    for cached in (AA, WW):
        yi, xi, ci, ni = s[cached].op.axis
        ty, ci = s[cached].split(ci, nparts=num_thread)
        tx, ni = s[cached].split(ni, nparts=num_thread)
        _, ni = s[cached].split(ni, factor=4)
        s[cached].reorder(ty, tx, yi, xi, ci, ni)
        s[cached].bind(ty, thread_y)
        s[cached].bind(tx, thread_x)
        s[cached].vectorize(ni)
    return s, [A, W, B]


def test_conv2d_tutorial_with_virtual_threads_shares_the_shared_tiles():
    s, args = _conv2d_tutorial()
    ir = str(td.lower(s, args, target="cuda"))
    # one shared tile of each for all four virtual threads; the accumulator is per
    # virtual thread (4 of 2x2 elements)
    assert ir.count("Apad.shared = allocate(float32[128], shared)") == 1
    assert ir.count("W.shared = allocate(float32[128], shared)") == 1
    assert "B.local = allocate(float32[16], local)" in ir
    A, W, B = args
    rng = np.random.default_rng(0)
    a = rng.standard_normal([int(d.value) for d in A.shape]).astype("float32")
    w = rng.standard_normal([int(d.value) for d in W.shape]).astype("float32")
    out_size = a.shape[0]
    ap = np.pad(a, ((1, 1), (1, 1), (0, 0), (0, 0)))
    want = sum(np.einsum("hwcn,cf->hwfn", ap[y:y + out_size, x:x + out_size], w[y, x])
               for y in range(3) for x in range(3))
    np.testing.assert_allclose(emulate(s, args, [a, w]), want, rtol=1e-4, atol=1e-4)


def test_cache_write_of_a_reduction_whose_extent_depends_on_the_output_index():
    """``B[i, j] = sum over k <= i of A[k, j]`` cached per thread: the cache stage's
    reduction runs to its own index, not the copy stage's."""
    N = 37
    A = td.placeholder((N, 6), name="A")

    def prefix(i, j):
        k = td.reduce_axis((0, i + 1), name="k")
        return td.sum(A[k, j], axis=k)
    B = td.compute((N, 6), prefix, name="B")
    s = td.create_schedule(B.op)
    BL = s.cache_write(B, "local")
    io, ii = s[B].split(B.op.axis[0], factor=8)
    s[B].bind(io, td.thread_axis("blockIdx.x"))
    s[B].bind(ii, td.thread_axis("threadIdx.x"))
    s[BL].compute_at(s[B], ii)
    a = np.random.default_rng(0).standard_normal((N, 6)).astype("float32")
    np.testing.assert_allclose(emulate(s, [A, B], [a]), np.cumsum(a, axis=0),
                               rtol=1e-5, atol=1e-5)


def test_cache_write_of_both_outputs_of_an_argmax():
    """``s.cache_write([idx, val], "local")``: one local stage computes both, per thread."""
    R, C = 20, 30
    X = td.placeholder((R, C), name="X")
    k = td.reduce_axis((0, C), name="k")
    argmax = td.comm_reducer(
        lambda x, y: (td.select(x[1] >= y[1], x[0], y[0]), td.select(x[1] >= y[1], x[1], y[1])),
        lambda t0, t1: (td.const(-1, t0), td.min_value(t1)), name="argmax")
    idx, val = td.compute((R,), lambda i: argmax((k.var, X[i, k]), axis=k), name="T")
    s = td.create_schedule(idx.op)
    cidx, cval = s.cache_write([idx, val], "local")
    assert s[cidx] is s[cval]
    bx, tx = s[idx].split(idx.op.axis[0], factor=8)
    s[idx].bind(bx, td.thread_axis("blockIdx.x"))
    s[idx].bind(tx, td.thread_axis("threadIdx.x"))
    s[cidx].compute_at(s[idx], tx)
    x = np.random.default_rng(0).standard_normal((R, C)).astype("float32")
    got_idx, got_val = np.full(R, -7, idx.dtype), np.full(R, np.nan, "float32")
    build_all(s, [X, idx, val])["sm_80"].emulate(x, got_idx, got_val)
    np.testing.assert_array_equal(got_idx, x.argmax(axis=1))
    np.testing.assert_array_equal(got_val, x.max(axis=1))
