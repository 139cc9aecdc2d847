"""Every operator of kernels/dense.py through td.ops, against numpy, on odd shapes."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensordsl as td
from tests.helpers import poisoned


def rand(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 5), (33, 65, 17), (64, 48, 96)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul(rng, shape, ta, tb):
    M, N, K = shape
    a = rand(rng, K, M) if ta else rand(rng, M, K)
    b = rand(rng, N, K) if tb else rand(rng, K, N)
    c = td.ops.matmul(a, b, transpose_a=ta, transpose_b=tb)
    ref = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4)


def test_matmul_large_ragged(rng):
    a, b = rand(rng, 301, 257), rand(rng, 257, 199)
    np.testing.assert_allclose(td.ops.matmul(a, b), a @ b, rtol=1e-4, atol=1e-3)


def test_matmul_out_and_cache(rng):
    a, b = rand(rng, 16, 8), rand(rng, 8, 4)
    out = poisoned((16, 4))
    assert td.ops.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="out= must be a float32 array of shape \\(16, 4\\)"):
        td.ops.matmul(a, b, out=np.empty((4, 4), "float32"))


def test_matmul_shape_mismatch_names_both_shapes():
    A = td.placeholder((4, 5), name="A")
    B = td.placeholder((6, 7), name="B")
    from kernels.dense import matmul
    with pytest.raises(ValueError, match=r"A has shape \(4, 5\), B has shape \(6, 7\)"):
        matmul(A, B)


def test_batch_matmul(rng):
    a, b = rand(rng, 3, 9, 5), rand(rng, 3, 5, 11)
    np.testing.assert_allclose(td.ops.batch_matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    bt = np.ascontiguousarray(b.transpose(0, 2, 1))
    np.testing.assert_allclose(td.ops.batch_matmul(a, bt, transpose_b=True), a @ b,
                               rtol=1e-4, atol=1e-4)


def test_dense_with_and_without_bias(rng):
    x, w, bias = rand(rng, 10, 24), rand(rng, 7, 24), rand(rng, 7)
    np.testing.assert_allclose(td.ops.dense(x, w), x @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(td.ops.dense(x, w, bias), x @ w.T + bias, rtol=1e-4, atol=1e-4)


def conv2d_reference(x, w, stride, padding, dilation, groups):
    """Direct NCHW convolution in float64 numpy."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    xp = np.pad(x.astype("float64"), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((N, F, OH, OW))
    fpg = F // groups
    for f in range(F):
        g = f // fpg
        for ky in range(KH):
            for kx in range(KW):
                patch = xp[:, g * Cg:(g + 1) * Cg,
                           ky * dh: ky * dh + sh * (OH - 1) + 1: sh,
                           kx * dw: kx * dw + sw * (OW - 1) + 1: sw]
                out[:, f] += np.einsum("nchw,c->nhw", patch, w[f, :, ky, kx])
    return out


CONVS = [
    dict(x=(1, 3, 9, 11), w=(4, 3, 3, 3), stride=1, padding=1, dilation=1, groups=1),
    dict(x=(2, 4, 10, 7), w=(6, 2, 3, 2), stride=2, padding=(1, 0), dilation=1, groups=2),
    dict(x=(1, 6, 12, 12), w=(6, 1, 3, 3), stride=1, padding=2, dilation=2, groups=6),
    dict(x=(1, 8, 5, 5), w=(16, 8, 1, 1), stride=1, padding=0, dilation=1, groups=1),
]


@pytest.mark.parametrize("cfg", CONVS)
def test_conv2d_nchw_and_nhwc(rng, cfg):
    x, w = rand(rng, *cfg["x"]), rand(rng, *cfg["w"]) * 0.3
    s = cfg["stride"] if isinstance(cfg["stride"], tuple) else (cfg["stride"],) * 2
    p = cfg["padding"] if isinstance(cfg["padding"], tuple) else (cfg["padding"],) * 2
    d = (cfg["dilation"],) * 2
    ref = conv2d_reference(x, w, s, p, d, cfg["groups"])
    got = td.ops.conv2d_nchw(x, w, stride=cfg["stride"], padding=cfg["padding"],
                             dilation=cfg["dilation"], groups=cfg["groups"])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w_hwio = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    got = td.ops.conv2d_nhwc(x_nhwc, w_hwio, stride=cfg["stride"], padding=cfg["padding"],
                             dilation=cfg["dilation"], groups=cfg["groups"])
    np.testing.assert_allclose(got, ref.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    if cfg["groups"] == 1:      # the implicit-GEMM form (the GPU's), on this CPU
        got = np.full_like(got, np.nan)
        td.ops.conv2d_nhwc(x_nhwc, w_hwio, stride=cfg["stride"], padding=cfg["padding"],
                           dilation=cfg["dilation"], form="implicit_gemm", out=got)
        np.testing.assert_allclose(got, ref.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_conv2d_nhwc_forms_are_checked():
    x, w = np.zeros((1, 5, 5, 4), "float32"), np.zeros((3, 3, 2, 4), "float32")
    with pytest.raises(ValueError, match=r"conv2d_nhwc: form must be one of .*'implicit_gemm'"
                                         r".*got 'gemm'"):
        td.ops.conv2d_nhwc(x, np.zeros((3, 3, 4, 4), "float32"), form="gemm")
    with pytest.raises(ValueError, match=r"conv2d_nhwc: form='implicit_gemm' takes an "
                                         r"ungrouped convolution, got groups=2"):
        td.ops.conv2d_nhwc(x, w, groups=2, form="implicit_gemm")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), st.integers(1, 4),
       st.tuples(*[st.integers(0, 3)] * 4), st.integers(1, 2), st.integers(1, 2))
def test_stride_one_conv2d_over_the_shared_padding_columns(h, w, kh, kw, pads, dh, dw):
    # the padded-width form shares one zero gap between a row's right and the next
    # row's left padding: every asymmetric padding and dilation against numpy
    pt, pl, pb, pr = pads
    if h + pt + pb < dh * (kh - 1) + 1 or w + pl + pr < dw * (kw - 1) + 1 or kh * kw == 1:
        return
    rng = np.random.default_rng(h * 1000 + w)
    x, wt = rand(rng, 1, 2, h, w), rand(rng, 3, 2, kh, kw)
    got = td.ops.conv2d_nchw(x, wt, padding=pads, dilation=(dh, dw))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ref = conv2d_reference(xp, wt, (1, 1), (0, 0), (dh, dw), 1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_conv2d_channel_mismatch():
    from kernels.dense import conv2d_nchw
    x = td.placeholder((1, 3, 8, 8), name="x")
    w = td.placeholder((4, 2, 3, 3), name="w")
    with pytest.raises(ValueError, match=r"kernel \(4, 2, 3, 3\) needs 3 input channels"):
        conv2d_nchw(x, w)


def _windows(x, k, s, p, fill):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    OH = (x.shape[2] + 2 * p - k) // s + 1
    OW = (x.shape[3] + 2 * p - k) // s + 1
    return np.stack([xp[:, :, ky:ky + s * (OH - 1) + 1:s, kx:kx + s * (OW - 1) + 1:s]
                     for ky in range(k) for kx in range(k)])


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_pooling(rng, k, s, p):
    x = rand(rng, 2, 3, 9, 10)
    np.testing.assert_allclose(td.ops.max_pool2d(x, k, stride=s, padding=p),
                               _windows(x, k, s, p, -np.inf).max(0), rtol=1e-6)
    np.testing.assert_allclose(td.ops.avg_pool2d(x, k, stride=s, padding=p),
                               _windows(x, k, s, p, 0).mean(0), rtol=1e-5, atol=1e-6)
    counts = _windows(np.ones_like(x), k, s, p, 0).sum(0)
    np.testing.assert_allclose(td.ops.avg_pool2d(x, k, stride=s, padding=p,
                                                 count_include_pad=False),
                               _windows(x, k, s, p, 0).sum(0) / counts, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,fn", [("add", np.add), ("subtract", np.subtract),
                                     ("multiply", np.multiply), ("divide", np.divide),
                                     ("maximum", np.maximum), ("minimum", np.minimum)])
def test_broadcasting_elementwise(rng, name, fn):
    a, b = rand(rng, 4, 1, 6), rand(rng, 5, 1) + 3.0
    np.testing.assert_allclose(getattr(td.ops, name)(a, b), fn(a, b), rtol=1e-6)
    np.testing.assert_allclose(getattr(td.ops, name)(a, 2.5), fn(a, np.float32(2.5)), rtol=1e-6)


def test_broadcast_mismatch():
    with pytest.raises(ValueError, match=r"shapes \(4, 3\) and \(5,\) do not broadcast"):
        td.ops.add(np.zeros((4, 3), "float32"), np.zeros(5, "float32"))


def test_relu_and_gelu(rng):
    x = rand(rng, 37, 19)
    np.testing.assert_array_equal(td.ops.relu(x), np.maximum(x, 0))
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(td.ops.gelu(x), 0.5 * x * (1 + erf(x / math.sqrt(2))),
                               rtol=1e-5, atol=1e-6)
    tanh_ref = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(td.ops.gelu(x, approximate="tanh"), tanh_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, False), ((0, 2), True), (-1, True)])
def test_reductions(rng, axis, keepdims):
    x = rand(rng, 5, 7, 9)
    for name, fn in (("reduce_sum", np.sum), ("reduce_mean", np.mean), ("reduce_max", np.max)):
        got = getattr(td.ops, name)(x, axis=axis, keepdims=keepdims)
        ref = np.asarray(fn(x, axis=axis, keepdims=keepdims)).reshape(got.shape)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax(rng, axis):
    x = rand(rng, 13, 37) * 3
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    ref = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(td.ops.softmax(x, axis=axis), ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(td.ops.log_softmax(x, axis=axis), np.log(ref), rtol=1e-5, atol=1e-5)


def test_layer_norm(rng):
    x, g, b = rand(rng, 6, 10, 33), rand(rng, 33), rand(rng, 33)
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * g + b
    np.testing.assert_allclose(td.ops.layer_norm(x, g, b), ref, rtol=1e-4, atol=1e-4)
    # Welford's form over two trailing axes, on rows far from zero
    x2 = (x * 3 + 100).astype("float32")
    mu2, var2 = x2.mean((-2, -1), keepdims=True), x2.var((-2, -1), keepdims=True)
    g2, b2 = rand(rng, 10, 33), rand(rng, 10, 33)
    np.testing.assert_allclose(
        td.ops.layer_norm(x2, g2, b2, axis=(-2, -1), form="welford"),
        (x2 - mu2) / np.sqrt(var2 + 1e-5) * g2 + b2, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="layer_norm: form must be 'two_pass' or 'welford', "
                                         "got 'one_pass'"):
        td.ops.layer_norm(x, g, b, form="one_pass")


def test_unknown_operator():
    with pytest.raises(AttributeError, match="no operator 'conv3d'"):
        td.ops.conv3d


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "layer_norm", "relu", "gelu"])
def test_streaming_store_templates_match_numpy(rng, name):
    # the templates' `stream` knob (non-temporal output stores) on odd shapes
    from kernels import dense
    from schedules import schedule_with
    from schedules.cpu import TEMPLATES
    x = rand(rng, 9, 37) * 3
    X = td.placeholder(x.shape, name="X")
    args, arrays = [X], [x]
    if name == "layer_norm":
        G, B = td.placeholder((37,), name="G"), td.placeholder((37,), name="B")
        args, arrays = [X, G, B], [x, rand(rng, 37), rand(rng, 37)]
        out = dense.layer_norm(X, G, B)
    else:
        out = getattr(dense, name)(X, axis=-1) if "softmax" in name else getattr(dense, name)(X)
    f = td.build(schedule_with(TEMPLATES, name, out, {"stream": True}), args + [out])
    assert "!nontemporal" in f.get_source("ll")
    got = poisoned(x.shape)
    f(*arrays, got)
    e = np.exp(x - x.max(-1, keepdims=True))
    erf = np.vectorize(math.erf)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = {"softmax": lambda: e / e.sum(-1, keepdims=True),
           "log_softmax": lambda: np.log(e / e.sum(-1, keepdims=True)),
           "layer_norm": lambda: (x - mu) / np.sqrt(var + 1e-5) * arrays[1] + arrays[2],
           "relu": lambda: np.maximum(x, 0),
           "gelu": lambda: 0.5 * x * (1 + erf(x / math.sqrt(2)))}[name]()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_outputs_stream_when_they_outgrow_the_last_level_cache(monkeypatch):
    from schedules.cpu import target
    monkeypatch.setattr(target, "last_level_cache_bytes", lambda: 32 << 20)
    assert target.streams_well(td.placeholder((4096, 1024), name="big"))        # 16 MiB
    assert not target.streams_well(td.placeholder((1024, 1024), name="small"))  # 4 MiB
    assert not target.streams_well(td.placeholder((td.var("n"), 4), name="unknown"))


def test_ops_outputs_start_on_a_64_byte_boundary(rng):
    # whole-vector (and streaming) stores need it; numpy's own large arrays are 16 off
    for shape in [(3,), (1000, 33), (0, 4)]:
        x = rand(rng, *shape)
        y = td.ops.relu(x)
        assert y.ctypes.data % 64 == 0 and y.shape == shape and y.dtype == np.float32
        np.testing.assert_array_equal(y, np.maximum(x, 0))
    from tensordsl.nd import aligned_numpy
    for shape in [(5, 7), (), (0,), (3, 0, 2), (1, 1, 1)]:
        for dtype in ["float64", "float16", "int8", "bool"]:
            z = aligned_numpy(shape, dtype)
            assert (z.ctypes.data % 64 == 0 or z.size == 0) and z.shape == shape
            assert z.dtype == dtype and z.flags["C_CONTIGUOUS"] and z.flags["WRITEABLE"]
            z[...] = 1                     # all of it is there to write
            assert z.sum() == z.size
    for length in [7, np.int64(7)]:        # a length, as numpy takes it
        assert aligned_numpy(length, "float32").shape == (7,)


@pytest.mark.parametrize("ta", [False, True])
def test_matmul_with_fewer_column_panels_than_threads_splits_rows(rng, monkeypatch, ta):
    # a classifier's 10 outputs: one narrow panel, the rows split over the threads
    import schedules.cpu.matmul as template
    monkeypatch.setattr(template, "num_threads", lambda: 2)
    M, N, K = 50, 10, 40
    A = td.placeholder((K, M) if ta else (M, K), "float32", "A")
    B = td.placeholder((N, K), "float32", "B")
    import kernels.dense as kd
    C = kd.matmul(A, B, transpose_a=ta, transpose_b=True)
    s = td.create_schedule(C.op)
    template.schedule_product(s, s[C])
    text = str(td.lower(s, [A, B, C]))
    assert "parallel for i.outer" in text or "parallel for i" in text, text[:2000]
    a = rand(rng, *((K, M) if ta else (M, K)))
    b = rand(rng, N, K)
    c = poisoned((M, N))
    td.build(s, [A, B, C])(a, b, c)
    np.testing.assert_allclose(c, (a.T if ta else a) @ b.T, rtol=1e-4, atol=1e-4)


def test_conv_on_a_small_image_tiles_its_positions_by_what_it_has(rng):
    # a 4x4 image has 20 flat positions (rows padded to 5): a 64-lane tile would be 70%
    # masked lanes; the tile is cut to 32 (two vectors)
    from schedules.cpu.conv2d import fit_positions, schedule_conv2d_nchw
    from schedules.cpu.target import vector_lanes
    import kernels.dense as kd
    x = td.placeholder((2, 16, 4, 4), "float32", "x")
    w = td.placeholder((32, 16, 3, 3), "float32", "w")
    y = kd.conv2d_nchw(x, w, padding=1)
    s = td.create_schedule(y.op)
    schedule_conv2d_nchw(s, y, {"nr": 64})
    lanes = vector_lanes(32)
    assert fit_positions(64, 20, lanes) == -(-20 // lanes) * lanes
    text = str(td.lower(s, [x, w, y]))
    assert "float32x64" not in text
    xa, wa = rand(rng, 2, 16, 4, 4), rand(rng, 32, 16, 3, 3)
    out = poisoned((2, 32, 4, 4))
    td.build(s, [x, w, y])(xa, wa, out)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.conv2d(torch.tensor(xa), torch.tensor(wa), padding=1).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw", [6, 7, 5])
def test_small_image_1x1_tiles_whole_powers_of_two_of_vectors(rng, hw):
    # regression (issue 17): a 6x6 image's 36 positions took a tile of 3 vectors (48
    # lanes), which LLVM split so badly that the convolution ran 20x slower than with 64
    from schedules.cpu.conv2d import fit_positions
    from schedules.cpu.target import vector_lanes
    from tensordsl.autotune import defaults_only
    from tensordsl.autotune.workload import Workload
    lanes = vector_lanes(32)
    for positions in range(1, 200):
        vectors = fit_positions(4 * lanes, positions, lanes) // lanes
        assert vectors & (vectors - 1) == 0, (positions, vectors)
    x, w = rand(rng, 2, 32, hw, hw), rand(rng, 24, 32, 1, 1)
    with defaults_only():
        s, tensors = Workload.from_arrays("conv2d_nchw", [x, w], {}).schedule(None)
    text = str(td.lower(s, tensors))
    assert f"x{3 * lanes}(" not in text and f"float32x{3 * lanes}" not in text
    out = poisoned((2, 24, hw, hw))
    td.build(s, tensors)(x, w, out)
    np.testing.assert_allclose(out, np.einsum("fc,bchw->bfhw", w[:, :, 0, 0], x),
                               rtol=1e-4, atol=1e-4)


def test_flat_tile_follows_how_the_positions_fill_it(rng):
    # 14 x 14 = 196 positions fill tiles of 32 (224 computed) better than of 64 (256):
    # the narrow tile by default (1x1 @14 1.05-1.15x faster); 28 x 28 (800 against 832)
    # and 7 x 7 (64 either way) keep the wide one; given knobs are kept
    from schedules.cpu.conv2d import NARROW_FLAT_TILE, flat_default_config, flat_tile
    from schedules.cpu.target import vector_lanes
    from tensordsl.autotune import defaults_only
    from tensordsl.autotune.workload import Workload
    wide = (flat_default_config()["mr"], flat_default_config()["nr"])
    narrow = (NARROW_FLAT_TILE["mr"], NARROW_FLAT_TILE["nr"])
    assert flat_tile({}, 784) == flat_tile({}, 49) == flat_tile({}, 3136) == wide
    assert flat_tile({"mr": 4, "nr": 16}, 196) == (4, 16)
    if vector_lanes(32) == 16:
        assert flat_tile({}, 196) == narrow
    x, w = rand(rng, 2, 40, 14, 14), rand(rng, 20, 40, 1, 1)
    with defaults_only():
        s, tensors = Workload.from_arrays("conv2d_nchw", [x, w], {}).schedule(None)
    out = poisoned((2, 20, 14, 14))
    td.build(s, tensors)(x, w, out)
    np.testing.assert_allclose(out, np.einsum("fc,bchw->bfhw", w[:, :, 0, 0], x),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,c,stride,padding,channels", [
    (2, 1024, 1, 0, True), (2, 1024, 2, 0, True), (1, 1024, 1, 0, False),
    (2, 512, 1, 0, False), (2, 1024, 1, 1, False)])
def test_a_batch_1x1_over_many_channels_takes_the_channels_form(rng, n, c, stride, padding,
                                                                  channels):
    # issue 17: the padded-width form's whole vectors of positions computed 14-31% more
    # than 14 x 14 and 7 x 7 images have; a batch's 1x1 over 1024 channels or more
    # takes the channels form (b8 1024 -> 256 @14: 1.2x), the others keep theirs
    from kernels.dense import CHANNELS_MIN_POINTWISE_REDUCTION
    from tensordsl.autotune import defaults_only
    from tensordsl.autotune.workload import Workload
    assert CHANNELS_MIN_POINTWISE_REDUCTION == 1024
    x, w = rand(rng, n, c, 10 * stride, 10 * stride), rand(rng, 40, c, 1, 1)
    attrs = {"stride": stride, "padding": padding}
    with defaults_only():
        s, tensors = Workload.from_arrays("conv2d_nchw", [x, w], attrs).schedule(None)
    assert any(st.op.name.endswith(".channels") for st in s.stages) == channels
    side = 10 + 2 * padding
    out = poisoned((n, 40, side, side))
    td.build(s, tensors)(x, w, out)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    sampled = padded[:, :, ::stride, ::stride][:, :, :side, :side]
    np.testing.assert_allclose(out, np.einsum("fc,bchw->bfhw", w[:, :, 0, 0], sampled),
                               rtol=1e-3, atol=1e-3)


def test_a_1x1_channels_tile_takes_two_vectors_and_more_positions():
    # each reduction step of a 1x1 reads new weights and new inputs: twice the positions
    # per weight vector (b8 1024 -> 256 @14: 1.1x over 4 vectors); a window keeps 4
    from schedules.cpu.conv2d import channel_tile
    assert channel_tile({}, 288, 256, 784, 8, taps=9)[1] == 4
    pb, nv = channel_tile({}, 288, 256, 784, 8, taps=1)
    assert nv == 2 and pb > channel_tile({}, 288, 256, 784, 8, taps=9)[0]
    assert channel_tile({"nv": 4}, 288, 256, 784, 8, taps=1)[1] == 4


def _strided_vector_reads(func, buffer_name: str) -> list:
    from tensordsl.ir import nodes as n
    from tensordsl.ir.visitor import post_order
    return [x for x in post_order(func.body) if isinstance(x, n.Load)
            and x.buffer.name == buffer_name and isinstance(x.index, n.Ramp)
            and not (isinstance(x.index.stride, n.IntImm) and x.index.stride.value == 1)]


@pytest.mark.parametrize("op,shapes", [("dense", [(64, 256), (96, 256), (96,)]),
                                       ("dense", [(300, 128), (70, 128), (70,)]),
                                       ("conv2d_nchw", [(2, 32, 12, 12), (48, 32, 3, 3)])])
def test_packing_reads_its_source_in_runs(rng, op, shapes):
    # regression (issue 17): a transposed weight's panels (dense's W[n, k]) and the
    # channels form's kernel were packed one element of each of nr rows at a time, a
    # row apart (gathers; BERT's 3072 -> 768 layer 1.3x slower, b8 512 -> 512 @7's
    # pack 2x slower); they now read consecutive elements of a row
    from tensordsl.autotune import defaults_only
    from tensordsl.autotune.workload import Workload
    arrays = [rand(rng, *shape) for shape in shapes]
    with defaults_only():
        s, tensors = Workload.from_arrays(op, arrays, {"padding": 1} if op != "dense" else {})\
            .schedule(None)
    func = td.lower(s, tensors)
    weight = tensors[1].name
    assert ".packed" in str(func)
    assert _strided_vector_reads(func, weight) == []
    if op == "conv2d_nchw":
        (packed,) = [st for st in s.stages if st.op.name.endswith(".packed")]
        # the innermost loops of the pack walk a filter's taps (contiguous in the kernel)
        assert [iv.var.name for iv in packed.leaf_iter_vars[-2:]] == ["ax2", "ax3"]
    out = poisoned(tuple(int(d.value) for d in tensors[-1].shape))
    td.build(s, tensors)(*arrays, out)
    if op == "dense":
        ref = arrays[0] @ arrays[1].T + arrays[2]
    else:
        torch = pytest.importorskip("torch")
        ref = torch.nn.functional.conv2d(*map(torch.tensor, arrays), padding=1).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("shape", [(12, 128, 64, 128), (3, 7, 70, 41), (1, 33, 5, 130)])
def test_batch_matmul_takes_the_packed_matmul_template(shape, transpose_a, transpose_b):
    # regression (issue 17): batched products fell to the generic template, 12x slower
    # than PyTorch on BERT's attention scores; now each product is the matmul nest, the
    # products and their column blocks in parallel
    from tensordsl.autotune.workload import Workload
    nb, m, k, n = shape
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal((nb, k, m) if transpose_a else (nb, m, k)).astype("float32")
    b = rng.standard_normal((nb, n, k) if transpose_b else (nb, k, n)).astype("float32")
    attrs = {"transpose_a": transpose_a, "transpose_b": transpose_b}
    s, tensors = Workload.from_arrays("batch_matmul", [a, b], attrs).schedule(None)
    assert ".packed" in str(td.lower(s, tensors))
    out = poisoned((nb, m, n))
    td.build(s, tensors)(a, b, out)
    A = a.transpose(0, 2, 1) if transpose_a else a
    B = b.transpose(0, 2, 1) if transpose_b else b
    np.testing.assert_allclose(out, A @ B, rtol=1e-4, atol=1e-4)
    got = td.ops.batch_matmul(a, b, **attrs, out=poisoned((nb, m, n)))
    np.testing.assert_allclose(got, A @ B, rtol=1e-4, atol=1e-4)


def _np_conv2d(x, w, stride, pad, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x.astype("float64"), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    per = f // groups
    for ry in range(kh):
        for rx in range(kw):
            window = xp[:, :, ry:ry + stride * oh:stride, rx:rx + stride * ow:stride]
            for g in range(groups):
                out[:, g * per:(g + 1) * per] += np.einsum(
                    "nchw,fc->nfhw", window[:, g * cg:(g + 1) * cg], w[g * per:(g + 1) * per, :, ry, rx])
    return out


@pytest.mark.parametrize("x, w, stride, pad, groups", [
    ((1, 16, 14, 14), (24, 16, 3, 3), 2, 1, 1),     # 7 outputs a row: one masked block
    ((2, 8, 28, 28), (16, 8, 3, 3), 2, 1, 1),       # 14 a row
    ((1, 8, 56, 57), (8, 8, 3, 3), 2, 1, 1),        # 28 a row and a ragged input
    ((1, 32, 14, 14), (40, 32, 1, 1), 2, 0, 1),     # a projection
    ((1, 3, 37, 37), (8, 3, 7, 7), 2, 3, 1),        # a stem
    ((1, 12, 15, 15), (12, 1, 3, 3), 2, 1, 12),     # depthwise, strided
    ((2, 20, 7, 7), (36, 20, 1, 1), 1, 0, 1),       # 1x1: a product over the image
    ((1, 6, 9, 10), (4, 3, 3, 3), 3, 2, 2),         # stride 3, grouped
])
def test_strided_and_pointwise_convolutions_match_a_reference(x, w, stride, pad, groups):
    # regression (issue 17): strided convolutions read every other column (gathers) and a
    # row narrower than a vector kept its sums in memory; now the input is split by
    # column phases and the window's taps are unrolled
    rng = np.random.default_rng(sum(x) + sum(w))
    xv = rng.standard_normal(x).astype("float32")
    wv = (rng.standard_normal(w) * 0.2).astype("float32")
    want = _np_conv2d(xv, wv, stride, pad, groups)
    got = td.ops.conv2d_nchw(xv, wv, stride=stride, padding=pad, groups=groups,
                             out=poisoned(want.shape))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 20), st.integers(1, 12), st.integers(1, 12),
       st.integers(1, 40), st.integers(1, 3), st.integers(1, 3),
       st.tuples(*[st.integers(0, 2)] * 4), st.tuples(st.integers(1, 3), st.integers(1, 3)),
       st.tuples(st.integers(1, 2), st.integers(1, 2)),
       st.sampled_from([None, {"pb": 4, "nv": 1}, {"pb": 12, "nv": 2}, {"pb": 1, "nv": 4}]))
def test_the_channels_form_matches_a_reference(n, c, h, w, f, kh, kw, pads, stride,
                                               dilation, config):
    # output channels in vector lanes, positions flattened across rows: any channel count
    # (a ragged block of them), any number of positions (a ragged tile), strides,
    # dilations and asymmetric paddings, a few tasks (the positions split as well)
    from tensordsl.autotune.workload import Workload
    pt, pl, pb, pr = pads
    (sh, sw), (dh, dw) = stride, dilation
    if h + pt + pb < dh * (kh - 1) + 1 or w + pl + pr < dw * (kw - 1) + 1:
        return
    rng = np.random.default_rng(n * 7919 + c * 131 + h * 17 + w + f)
    x, wt = rand(rng, n, c, h, w), rand(rng, f, c, kh, kw) * 0.3
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    want = conv2d_reference(xp, wt, (sh, sw), (0, 0), (dh, dw), 1)
    attrs = {"stride": stride, "padding": pads, "dilation": dilation, "form": "channels"}
    s, tensors = Workload.from_arrays("conv2d_nchw", [x, wt], attrs).schedule(config)
    assert ".channels" in str(td.lower(s, tensors))
    out = poisoned(want.shape)
    td.build(s, tensors)(x, wt, out)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 3), st.integers(1, 20), st.integers(1, 13), st.integers(1, 13),
       st.integers(1, 40), st.tuples(*[st.integers(0, 2)] * 4),
       st.sampled_from([None, {"mr": 4, "nr": 16}, {"mr": 12, "nr": 32, "kc": 8}]))
def test_the_winograd_form_matches_a_reference(n, c, h, w, f, pads, config):
    # F(2x2, 3x3): odd and even output sizes (a ragged last tile), asymmetric paddings,
    # tiles across images, channel counts off the register tiles, the products' knobs
    from tensordsl.autotune.workload import Workload
    pt, pl, pb, pr = pads
    if h + pt + pb < 3 or w + pl + pr < 3:
        return
    rng = np.random.default_rng(n * 7919 + c * 131 + h * 17 + w + f)
    x, wt = rand(rng, n, c, h, w), rand(rng, f, c, 3, 3) * 0.3
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    want = conv2d_reference(xp, wt, (1, 1), (0, 0), (1, 1), 1)
    attrs = {"padding": pads, "form": "winograd"}
    s, tensors = Workload.from_arrays("conv2d_nchw", [x, wt], attrs).schedule(config)
    assert ".winograd_product" in str(td.lower(s, tensors))
    out = poisoned(want.shape)
    td.build(s, tensors)(x, wt, out)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,c,size,f,winograd", [
    (1, 64, 56, 64, True),      # 784 tiles, 6.4 MB transformed
    (8, 128, 28, 128, True),    # 1568 tiles, 26 MB
    (8, 512, 7, 512, True),     # 128 tiles
    (1, 256, 14, 256, False),   # 49 tiles: panels of the products part empty
    (8, 64, 56, 64, False),     # 51 MB transformed: past the last-level cache
    (8, 16, 28, 32, False)])    # few channels: transforms as costly, products short
def test_the_cpu_path_takes_winograd_by_tiles_and_size(n, c, size, f, winograd):
    # issue 17: Winograd's form runs b8 256->256 @14 1.4x faster than the channels form,
    # b1 64->64 @56 1.3x; with few tiles or transforms past the cache it is slower
    from tensordsl.autotune.workload import Workload
    x, wt = np.empty((n, c, size, size), "float32"), np.empty((f, c, 3, 3), "float32")
    workload = Workload.from_arrays("conv2d_nchw", [x, wt], {"padding": 1})
    names = {t.name for t in _stages(workload.define()[1])}
    assert any(name.endswith(".winograd_product") for name in names) == winograd
    strided = Workload.from_arrays("conv2d_nchw", [x, wt], {"padding": 1, "stride": 2})
    assert not any(t.name.endswith("winograd_product") for t in _stages(strided.define()[1]))
    with pytest.raises(ValueError, match="form='winograd' takes a dense 3x3 stride-1"):
        td.ops.conv2d_nchw(x[:, :, :8, :8], wt, stride=2, form="winograd")


def test_winograd_through_td_ops_matches_a_reference(rng):
    x, wt = rand(rng, 2, 24, 17, 18), rand(rng, 20, 24, 3, 3) * 0.3
    got = td.ops.conv2d_nchw(x, wt, padding=1, form="winograd")
    want = conv2d_reference(x, wt, (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("positions", [49, 196, 784, 3136, 100, 9, 1])
def test_the_channels_tile_divides_an_image_with_little_left_over(positions):
    # 7 x 7 positions in tiles of 12 computed 60 (five tiles), in tiles of 7 exactly 49
    from schedules.cpu.conv2d import CHANNEL_ACCUMULATORS, channel_tile
    from schedules.cpu.target import vector_lanes
    widest = CHANNEL_ACCUMULATORS.get(vector_lanes(32), 12) // 2
    pb, nv = channel_tile({"nv": 2}, 4608, 512, positions)
    assert nv == 2 and (widest + 1) // 2 <= pb <= widest
    computed = -(-positions // pb) * pb
    least = min(-(-positions // t) * t for t in range((widest + 1) // 2, widest + 1))
    assert computed <= least * 1.02
    # no wider tile would have done as well: the widest that does is taken
    assert all(-(-positions // t) * t > least * 1.02 for t in range(pb + 1, widest + 1))
    if widest == 12:
        assert pb == {49: 7, 196: 11, 784: 12, 3136: 12, 100: 10, 9: 9, 1: 6}[positions]
    assert channel_tile({"nv": 2, "pb": 5}, 4608, 512, positions) == (5, 2)


def test_a_small_reduction_takes_a_small_channels_tile_unless_told():
    # the stem's 3 x 7 x 7 = 147 multiply-adds an accumulator: the write-back dominates
    from schedules.cpu.conv2d import SMALL_REDUCTION_TILE, channel_tile
    assert channel_tile({}, 147, 64, 12544) == SMALL_REDUCTION_TILE == (4, 1)
    assert channel_tile({}, 576, 64, 3136) != SMALL_REDUCTION_TILE
    assert channel_tile({"nv": 2}, 147, 64, 12544)[1] == 2
    assert channel_tile({"pb": 8}, 147, 64, 12544)[0] == 8


@pytest.mark.parametrize("n, c, h, w, f, pad, config", [
    (2, 12, 40, 36, 20, 0, None),                  # planes over a page: 4 panels a task
    (3, 9, 33, 35, 14, 0, {"pack": True, "tb": 2}),   # ragged panels, a ragged last task
    (2, 10, 9, 11, 7, 1, {"pack": True, "tb": 4}),    # padded: computed in place all the same
    (1, 5, 3, 3, 7, 0, None),                      # fewer positions than a vector
])
def test_a_pointwise_convolution_is_computed_in_the_outputs_place(n, c, h, w, f, pad,
                                                                  config):
    # where the padded width is the output's, "auto" (the CPU path) writes the output
    # directly, no intermediate and copy; its (y, x) flattened again by the template
    from tensordsl.autotune.workload import Workload
    rng = np.random.default_rng(n + c + h + w + f)
    x, wt = rand(rng, n, c, h, w), rand(rng, f, c, 1, 1)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    want = conv2d_reference(xp, wt, (1, 1), (0, 0), (1, 1), 1)
    workload = Workload.from_arrays("conv2d_nchw", [x, wt], {"padding": pad})
    s, tensors = workload.schedule(config)
    assert not any(t.name.endswith(".flat") for t in _stages(tensors[-1]))
    out = poisoned(want.shape)
    td.build(s, tensors)(x, wt, out)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n, c, size, f, k, stride, channels", [
    (8, 16, 14, 32, 3, 1, True),       # 1568 positions: the weights' packing pays
    (1, 16, 7, 32, 3, 1, False),       # 49: it does not
    (2, 16, 28, 32, 1, 2, False),      # a strided 1x1 (a projection): the sampled product
    (2, 16, 28, 32, 1, 1, False),      # a stride-1 1x1 is a product over the image
    (2, 16, 14, 8, 3, 1, False),       # fewer output channels than a vector
])
def test_the_cpu_path_picks_the_channels_form_by_shape(n, c, size, f, k, stride, channels):
    from tensordsl.autotune.workload import Workload
    x, wt = np.zeros((n, c, size, size), "float32"), np.zeros((f, c, k, k), "float32")
    workload = Workload.from_arrays("conv2d_nchw", [x, wt], {"stride": stride,
                                                              "padding": k // 2})
    names = {t.name for t in _stages(workload.define()[1])}
    assert any(name.endswith(".channels") for name in names) == channels
    # the GPU templates tile the padded-width form: its definition keeps it
    gpu = {t.name for t in _stages(workload.define("cuda")[1])}
    assert not any(name.endswith(".channels") for name in gpu)
    # the portable forms by hand (None, the default, is the rule on the CPU)
    portable = Workload.from_arrays("conv2d_nchw", [x, wt], {"stride": stride,
                                                             "padding": k // 2,
                                                             "form": "portable"})
    assert not any(t.name.endswith(".channels") for t in _stages(portable.define()[1]))
    with pytest.raises(ValueError, match="form must be one of"):
        td.ops.conv2d_nchw(x, wt, form="nchw16c")


def _stages(out):
    seen, todo = {}, [out]
    while todo:
        t = todo.pop()
        if t.name not in seen:
            seen[t.name] = t
            todo.extend(getattr(t.op, "input_tensors", []))
    return list(seen.values())


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("x, w, pad", [((2, 12, 9, 11), (10, 12, 3, 3), 1),
                                       ((3, 20, 7, 7), (36, 20, 1, 1), 0)])
def test_the_flat_convolution_with_and_without_its_packed_input(x, w, pad, pack):
    from tensordsl.autotune.workload import Workload
    rng = np.random.default_rng(len(x) + pad)
    xv = rng.standard_normal(x).astype("float32")
    wv = (rng.standard_normal(w) * 0.2).astype("float32")
    s, tensors = Workload.from_arrays("conv2d_nchw", [xv, wv], {"padding": pad}).schedule(
        {"pack": pack})
    assert (".global" in str(td.lower(s, tensors))) == pack
    out = poisoned(tuple(int(d.value) for d in tensors[-1].shape))
    td.build(s, tensors)(xv, wv, out)
    np.testing.assert_allclose(out, _np_conv2d(xv, wv, 1, pad, 1), rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 150), st.integers(1, 70), st.integers(1, 90), st.booleans(),
       st.sampled_from([None, False, True]), st.sampled_from([(6, 64), (4, 16), (12, 32)]),
       st.integers(0, 2**31))
def test_products_computed_transposed_match_numpy(m, k, n, bias, transpose, tile, seed):
    # the matmul template may compute C^T = W x^T and read C back transposed (dense's
    # few-rows case); forced either way, or left to the rule, on ragged shapes
    from schedules.cpu.space import defaults_for
    from tensordsl.autotune.workload import Workload
    rng = np.random.default_rng(seed)
    args = [rand(rng, m, k), rand(rng, n, k)] + ([rand(rng, n)] if bias else [])
    config = dict(defaults_for("matmul"), mr=tile[0], nr=tile[1])
    if transpose is not None:
        config["transpose"] = transpose
    f, shape, _ = Workload.from_arrays("dense", args, {}).build(config)
    out = poisoned(shape)
    f(*args, out)
    ref = args[0].astype(np.float64) @ args[1].T + (args[2] if bias else 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m, k, n, transposed", [
    (128, 768, 3072, True), (128, 768, 768, True), (1, 768, 768, True),
    (96, 768, 768, False), (256, 512, 2048, False), (128, 256, 1024, False)])
def test_dense_of_few_rows_computes_its_transpose(m, k, n, transposed):
    # the rule of computes_transposed, as measured: a transposed product's nest writes
    # the cache of C^T (C's stage reads it back), the other one packs W's columns
    from tensordsl.autotune.workload import Workload
    w = Workload.from_arrays("dense", [np.empty((m, k), np.float32),
                                       np.empty((n, k), np.float32)], {})
    # (as scheduled: of one row, C^T is C's layout, and forward_copies then drops the copy)
    text = str(td.lower(*w.schedule(None), check_indices=False, stop_after="simplify_flat"))
    assert ("dense.global" in text) == transposed
    assert ("in1.packed" in text) == (not transposed)
    assert ("in0.packed" in text) == transposed
