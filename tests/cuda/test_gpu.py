"""On a real GPU (``pytest -m gpu``): the same kernels, launched through the driver."""
import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from schedules.cuda import schedule_for
from schedules.cuda.matmul import WARPGROUP_TILES
from targets.cuda import driver

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not driver.is_available(), reason="no CUDA GPU here")]


def _run_on_gpu(name, make, shapes, rng, config=None):
    ph = [td.placeholder(sh, name=f"in{i}") for i, sh in enumerate(shapes)]
    out = make(*ph)
    s = schedule_for(name, out, config=config)
    f = td.build(s, ph + [out], target="cuda")
    xs = [rng.standard_normal(sh).astype("float32") for sh in shapes]
    y = td.nd.empty([int(d.value) for d in out.shape], "float32", device="cuda")
    f(*[td.nd.array(x, device="cuda") for x in xs], y)
    return y.numpy(), xs


@pytest.mark.parametrize("M,N,K", [(256, 256, 256), (61, 37, 45), (1024, 512, 128)])
def test_matmul_on_gpu(M, N, K, rng):
    got, (a, b) = _run_on_gpu("matmul", dense.matmul, [(M, K), (K, N)], rng)
    np.testing.assert_allclose(got, a @ b, rtol=1e-3, atol=1e-3)


def test_tensor_core_matmul_on_gpu(rng):
    A = td.placeholder((512, 256), dtype="float16", name="A")
    B = td.placeholder((256, 384), dtype="float16", name="B")
    C = dense.matmul(A, B, out_dtype="float32")
    f = td.build(schedule_for("matmul", C), [A, B, C], target="cuda")
    assert "mma_sync" in f.get_source()
    a = rng.standard_normal((512, 256)).astype("float16")
    b = rng.standard_normal((256, 384)).astype("float16")
    c = td.nd.empty((512, 384), "float32", device="cuda")
    f(td.nd.array(a, device="cuda"), td.nd.array(b, device="cuda"), c)
    want = a.astype("float32") @ b.astype("float32")
    np.testing.assert_allclose(c.numpy(), want, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("dtype,config", [
    ("bfloat16", {}),                                  # ldmatrix and mma.sync (inline PTX)
    ("float16", {}),                                   # swizzled tiles (the default)
    ("float16", {"swizzle": 0, "pad": 8}),             # padded tiles, through WMMA
    ("float16", {"kk": 4, "stages": 4}),               # 64 KiB of dynamic shared memory
    ("float16", WARPGROUP_TILES),                      # wgmma on sm_90a (an H100/H200)
    ("bfloat16", WARPGROUP_TILES),
    ("bfloat16", {"kk": 4, "stages": 4}),
])
def test_tensor_core_matmul_variants_on_gpu(dtype, config, rng):
    from .helpers import tensor_core_inputs, tensor_core_matmul
    M, N, K = 256, 128, 512
    f = td.build(*tensor_core_matmul(M, N, K, dtype, config), target="cuda")
    (a, a32), (b, b32) = tensor_core_inputs(rng, (M, K), dtype), \
        tensor_core_inputs(rng, (K, N), dtype)
    c = td.nd.empty((M, N), "float32", device="cuda")
    f(td.nd.array(a, device="cuda"), td.nd.array(b, device="cuda"), c)
    np.testing.assert_allclose(c.numpy(), a32 @ b32, rtol=1e-3, atol=1e-2)


def test_conv2d_nhwc_implicit_gemm_on_gpu(rng):
    """td.ops on float16 device arrays: the implicit-GEMM form's tensor-core template
    (one kernel, the accumulators stored into the NHWC output in its type)."""
    dtype = "float16"
    from .helpers import tensor_core_inputs
    from .test_tensor_cores import _as_float32, _conv_nhwc_reference
    (x, x32), (w, w32) = tensor_core_inputs(rng, (2, 16, 16, 64), dtype), \
        tensor_core_inputs(rng, (3, 3, 64, 64), dtype)
    y = td.ops.conv2d_nhwc(td.nd.array(x, device="cuda"), td.nd.array(w, device="cuda"),
                           padding=1, form="implicit_gemm")
    want = _conv_nhwc_reference(x32, w32, (1, 1), (1, 1, 1, 1), (1, 1))
    np.testing.assert_allclose(_as_float32(y.numpy(), dtype), want, rtol=1e-2, atol=1e-2)


def test_softmax_layer_norm_reduce_on_gpu(rng):
    got, (x,) = _run_on_gpu("softmax", dense.softmax, [(64, 1000)], rng)
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)
    got, (x, g, b) = _run_on_gpu("layer_norm", dense.layer_norm, [(32, 300), (300,), (300,)],
                                 rng)
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    np.testing.assert_allclose(got, (x - m) / np.sqrt(v + 1e-5) * g + b, rtol=1e-3, atol=1e-4)
    got, (x,) = _run_on_gpu("reduce_sum", lambda t: dense.reduce_sum(t, axis=(0, 1)),
                            [(100, 77)], rng)
    np.testing.assert_allclose(got, x.sum(), rtol=1e-3)


def test_ops_on_device_arrays(rng):
    x = rng.standard_normal((64, 300)).astype("float32")
    w = rng.standard_normal((300, 128)).astype("float32")
    y = td.ops.matmul(td.nd.array(x, device="cuda"), td.nd.array(w, device="cuda"))
    assert isinstance(y, td.nd.NDArray) and y.device == "cuda"
    np.testing.assert_allclose(y.numpy(), x @ w, rtol=1e-3, atol=1e-3)
    p = td.ops.softmax(td.nd.array(x, device="cuda"), axis=-1).numpy()
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="argument 1 is a host array"):
        td.ops.matmul(td.nd.array(x, device="cuda"), w)


def test_dlpack_with_torch_cuda(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    t = torch.randn(100, device="cuda")
    a = td.nd.from_dlpack(t)
    assert a.device == "cuda" and a.ptr == t.data_ptr()
    np.testing.assert_array_equal(a.numpy(), t.cpu().numpy())
    back = torch.from_dlpack(td.nd.array(np.arange(5, dtype="float32"), device="cuda"))
    assert back.is_cuda and back.cpu().tolist() == [0, 1, 2, 3, 4]
