"""Every GPU template: compiled by NVRTC for sm_80 and sm_90, and the generated CUDA C
executed by the emulator against numpy, on odd and aligned shapes."""
import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda import schedule_for
from schedules.cuda.matmul import schedule_matmul

from .helpers import emulate


def _run(name, make, shapes, rng, config=None):
    ph = [td.placeholder(sh, name=f"in{i}") for i, sh in enumerate(shapes)]
    out = make(*ph)
    s = schedule_for(name, out, config=config)
    xs = [rng.standard_normal(sh).astype("float32") for sh in shapes]
    return emulate(s, ph + [out], xs), xs


@pytest.mark.parametrize("M,N,K", [(64, 64, 64), (61, 37, 45), (1, 130, 7)])
def test_matmul_shared_tiles(M, N, K, rng):
    got, (a, b) = _run("matmul", dense.matmul, [(M, K), (K, N)], rng,
                       {"ty": 4, "tx": 8, "vm": 2, "vn": 2, "kt": 8})
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


def test_matmul_default_config_pipelines_its_tiles_with_cp_async(rng):
    A, B = td.placeholder((128, 64), name="A"), td.placeholder((64, 128), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C)
    f = td.build(s, [A, B, C], target="cuda -arch=sm_90")
    src = f.get_source()
    # 16-byte copies, 3 stages: two tiles in flight while the third is used
    assert "td_cp_async<16>" in src and "td_cp_async_wait<1>()" in src
    # one barrier per iteration of the tile loop
    assert src.count("__syncthreads()") == 1
    a, b = rng.standard_normal((128, 64), "float32"), rng.standard_normal((64, 128), "float32")
    c = np.full((128, 128), np.nan, "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_matmul_without_pipeline_uses_float4_double_buffered_tiles(rng):
    A, B = td.placeholder((128, 64), name="A"), td.placeholder((64, 128), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"stages": 0})
    f = td.build(s, [A, B, C], target="cuda -arch=sm_90")
    src = f.get_source()
    assert "float4" in src and "__shared__" in src and "cp_async" not in src
    # double buffering: one barrier per iteration of the tile loop
    assert src.count("__syncthreads()") == 1
    a, b = rng.standard_normal((128, 64), "float32"), rng.standard_normal((64, 128), "float32")
    c = np.empty((128, 128), "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_matmul_without_double_buffer_synchronizes_twice(rng):
    A, B = td.placeholder((32, 32), name="A"), td.placeholder((32, 32), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, {"ty": 4, "tx": 4, "vm": 2, "vn": 2, "kt": 8, "double_buffer": 0,
                           "stages": 0})
    f = td.build(s, [A, B, C], target="cuda -arch=sm_80")
    assert f.get_source().count("__syncthreads()") == 2
    a, b = rng.standard_normal((32, 32), "float32"), rng.standard_normal((32, 32), "float32")
    c = np.empty((32, 32), "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_batch_matmul_and_dense(rng):
    got, (a, b) = _run("batch_matmul", dense.batch_matmul, [(3, 20, 24), (3, 24, 36)], rng)
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)
    got, (x, w) = _run("dense", dense.dense, [(20, 24), (36, 24)], rng)
    np.testing.assert_allclose(got, x @ w.T, rtol=1e-4, atol=1e-4)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("shape,threads", [((5, 100), 128), ((3, 1000), 256), ((4, 7), 32),
                                           ((2, 50), 48)])
def test_softmax_one_block_per_row(shape, threads, rng):
    got, (x,) = _run("softmax", dense.softmax, [shape], rng, {"threads": threads})
    np.testing.assert_allclose(got, _softmax(x), rtol=1e-5, atol=1e-6)


def test_log_softmax_and_layer_norm(rng):
    got, (x,) = _run("log_softmax", dense.log_softmax, [(3, 200)], rng)
    np.testing.assert_allclose(got, np.log(_softmax(x)), rtol=1e-4, atol=1e-5)
    got, (x, g, b) = _run("layer_norm", dense.layer_norm, [(6, 77), (77,), (77,)], rng)
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    np.testing.assert_allclose(got, (x - m) / np.sqrt(v + 1e-5) * g + b, rtol=1e-4, atol=1e-5)


def test_reductions_elementwise_pooling_conv(rng):
    got, (x,) = _run("reduce_sum", lambda t: dense.reduce_sum(t, axis=(0, 1)), [(13, 17)], rng)
    np.testing.assert_allclose(got, x.sum(), rtol=1e-4)
    got, (x,) = _run("reduce_max", lambda t: dense.reduce_max(t, axis=1), [(13, 17)], rng)
    np.testing.assert_array_equal(got, x.max(1))
    got, (x,) = _run("gelu", dense.gelu, [(33, 17)], rng)
    from math import erf
    np.testing.assert_allclose(got, 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2))),
                               rtol=1e-5, atol=1e-6)
    got, (x,) = _run("max_pool2d", lambda t: dense.max_pool2d(t, 2), [(1, 2, 8, 8)], rng)
    np.testing.assert_array_equal(got, x.reshape(1, 2, 4, 2, 4, 2).max((3, 5)))
    got, (x, w) = _run("conv2d_nchw", lambda a, b: dense.conv2d_nchw(a, b, padding=1),
                       [(1, 3, 6, 7), (4, 3, 3, 3)], rng)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((1, 4, 6, 7), "float32")
    for ry in range(3):
        for rx in range(3):
            ref += np.einsum("chw,fc->fhw", xp[0, :, ry:ry + 6, rx:rx + 7], w[:, :, ry, rx])[None]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def _conv_ref(x, w, pad, stride=1, groups=1):
    n_, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n_, f, oh, ow), "float64")
    fg = f // groups
    for g in range(groups):
        for ry in range(kh):
            for rx in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, ry:ry + stride * oh:stride,
                           rx:rx + stride * ow:stride]
                out[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", patch,
                                                         w[g * fg:(g + 1) * fg, :, ry, rx])
    return out.astype("float32")


@pytest.mark.parametrize("xs,ws,pad,stride,groups", [
    ((2, 8, 12, 10), (16, 8, 3, 3), 1, 1, 1),     # shared-memory tiled (padded-width form)
    ((1, 5, 9, 9), (6, 5, 5, 5), 2, 1, 1),
    ((1, 4, 9, 8), (6, 4, 3, 3), 1, 2, 1),        # strided: generic template
    ((1, 6, 7, 7), (6, 1, 3, 3), 1, 1, 6),        # depthwise: generic template
])
def test_conv2d_nchw(xs, ws, pad, stride, groups, rng):
    got, (x, w) = _run("conv2d_nchw",
                       lambda a, b: dense.conv2d_nchw(a, b, stride=stride, padding=pad,
                                                      groups=groups), [xs, ws], rng)
    np.testing.assert_allclose(got, _conv_ref(x, w, pad, stride, groups), rtol=1e-4, atol=1e-4)


def _reduce_min(x):
    axes = [td.reduce_axis((0, d), f"r{a}") for a, d in enumerate(x.shape)]
    return td.compute((1,), lambda _: td.min(x[tuple(axes)], axis=axes), name="reduce_min")


_FULL = {"sum": (lambda t: dense.reduce_sum(t), np.sum),
         "max": (lambda t: dense.reduce_max(t), np.max),
         "min": (_reduce_min, np.min),
         "mean": (lambda t: dense.reduce_mean(t), np.mean)}


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 333), (65537,)])
@pytest.mark.parametrize("op", sorted(_FULL))
def test_full_reductions_spread_over_many_blocks(op, shape, rng):
    """Per-block partial results (each block's threads combined with warp shuffles),
    then a second kernel combines the partials: one block per 256 elements, at most 256."""
    make, ref = _FULL[op]
    x_ph = td.placeholder(shape, name="x")
    out = make(x_ph)
    s = schedule_for(op, out)
    f = td.build(s, [x_ph, out], target="cuda -arch=sm_80")
    size = int(np.prod(shape))
    blocks = [k.grid[0].value for k in f.kernels]
    assert blocks[0] == min(256, -(-size // 256)) and blocks[1] == 1
    x = rng.standard_normal(shape).astype("float32")
    got = emulate(s, [x_ph, out], [x])
    np.testing.assert_allclose(got, [ref(x.astype("float64"))], rtol=1e-5, atol=1e-5)


def test_full_reduction_of_a_symbolic_size_uses_the_block_budget(rng):
    n = td.var("n")
    x_ph = td.placeholder((n,), name="x")
    out = dense.reduce_sum(x_ph)
    f = td.build(schedule_for("reduce_sum", out), [x_ph, out], target="cuda -arch=sm_80")
    assert [k.grid[0].value for k in f.kernels] == [256, 1]
    for size in (1, 5, 3000):
        x = rng.standard_normal(size).astype("float32")
        got = np.full(1, np.nan, "float32")
        f.emulate(x, got)
        np.testing.assert_allclose(got, [x.astype("float64").sum()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("M,N,K", [(256, 256, 64), (200, 136, 40)])
def test_large_matmul_tiles_deal_each_threads_block_out_in_groups(M, N, K, rng):
    """The large products' tiles (``LARGE``: 128 x 128 a block, 8 x 8 a thread as 2 x 2
    virtual threads of 4 x 4), whole and with ragged edges, in random thread order."""
    from schedules.cuda.matmul import LARGE
    A, B = td.placeholder((M, K), name="A"), td.placeholder((K, N), name="B")
    C = dense.matmul(A, B)
    s = td.create_schedule(C.op)
    schedule_matmul(s, C, LARGE)
    f = td.build(s, [A, B, C], target="cuda -arch=sm_80")
    a, b = rng.standard_normal((M, K), "float32"), rng.standard_normal((K, N), "float32")
    c = np.full((M, N), np.nan, "float32")
    f.emulate(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_a_large_product_takes_the_large_tiles_and_a_small_one_does_not():
    from schedules.cuda import schedule_for
    for n_, threads, blocks in ((1024, 256, 64), (512, 128, 8 * 16)):
        A, B = td.placeholder((n_, 64), name="A"), td.placeholder((64, n_), name="B")
        C = dense.matmul(A, B)
        f = td.build(schedule_for("matmul", C), [A, B, C], target="cuda -arch=sm_80")
        (kernel,) = f.kernels
        assert kernel.threads == threads
        assert np.prod([int(g.value) for g in kernel.grid]) == blocks


@pytest.mark.parametrize("shape", [(6, 77), (3, 1024)])
def test_layer_norm_in_welford_form_on_the_gpu_template(shape, rng):
    """One tuple reduction (count, mean, squared deviations) across the row's threads,
    merged by Chan's formula: rows far from zero (mean 100, deviation 3) as numpy."""
    R, C = shape
    x = td.placeholder(shape, name="x")
    g, b = td.placeholder((C,), name="g"), td.placeholder((C,), name="b")
    y = dense.layer_norm(x, g, b, form="welford")
    f = td.build(schedule_for("layer_norm", y), [x, g, b, y], target="cuda -arch=sm_80")
    xv = (rng.standard_normal(shape) * 3 + 100).astype("float32")
    gv, bv = rng.standard_normal(C).astype("float32"), rng.standard_normal(C).astype("float32")
    out = np.full(shape, np.nan, "float32")
    f.emulate(xv, gv, bv, out)
    want = (xv - xv.mean(1, keepdims=True)) / np.sqrt(xv.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, want * gv + bv, rtol=1e-4, atol=1e-4)
