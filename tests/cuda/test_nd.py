"""td.nd arrays, DLPack exchange, and the no-GPU path."""
import gc

import numpy as np
import pytest

import tensordsl as td
from targets.cuda import driver


def test_cpu_array_round_trip_and_errors(rng):
    x = rng.standard_normal((3, 5)).astype("float32")
    a = td.nd.array(x)
    assert (a.shape, a.dtype, a.device, a.nbytes) == ((3, 5), np.float32, "cpu", 60)
    np.testing.assert_array_equal(a.numpy(), x)
    a.copyfrom(x * 2)
    np.testing.assert_array_equal(a.numpy(), x * 2)
    with pytest.raises(ValueError, match=r"copyfrom: expected an array of shape \(3, 5\)"):
        a.copyfrom(np.zeros((5, 3), "float32"))
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda'"):
        td.nd.empty((2,), "float32", device="tpu")
    with pytest.raises(ValueError, match="shape: expected non-negative ints"):
        td.nd.empty((-1,), "float32")


def test_dlpack_with_numpy_shares_memory(rng):
    x = rng.standard_normal((4, 6)).astype("float32")
    a = td.nd.array(x)
    view = np.from_dlpack(a)
    np.testing.assert_array_equal(view, x)
    a.copyfrom(np.ones((4, 6), "float32"))
    assert view.sum() == 24          # same memory, no copy
    del a
    gc.collect()
    assert view.sum() == 24          # the consumer keeps it alive
    b = td.nd.from_dlpack(np.arange(10, dtype="int64"))
    assert b.dtype == np.int64 and b.numpy().tolist() == list(range(10))


def test_dlpack_with_torch_both_ways():
    torch = pytest.importorskip("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = td.nd.from_dlpack(t)
    assert a.shape == (3, 4) and a.ptr == t.data_ptr()
    back = torch.from_dlpack(td.nd.array(np.eye(3, dtype="float64")))
    assert back.dtype == torch.float64 and torch.equal(back, torch.eye(3, dtype=torch.float64))
    with pytest.raises(BufferError, match="expected a C-contiguous tensor"):
        td.nd.from_dlpack(t.t())


def test_a_capsule_is_consumed_once():
    cap = td.nd.array(np.zeros(3, "float32")).__dlpack__()
    td.nd.from_dlpack(cap)
    with pytest.raises(BufferError, match="unconsumed 'dltensor'"):
        td.nd.from_dlpack(cap)


def test_cuda_module_refuses_numpy_arrays_and_names_the_argument():
    A = td.placeholder((8,), name="A")
    B = td.compute((8,), lambda i: A[i] + 1.0, name="B")
    s = td.create_schedule(B.op)
    s[B].bind(B.op.axis[0], td.thread_axis("threadIdx.x"))
    f = td.build(s, [A, B], target="cuda -arch=sm_90")
    with pytest.raises(TypeError, match="argument 'A': a function built for CUDA takes "
                                        "device arrays; got a numpy array"):
        f(np.zeros(8, "float32"), np.zeros(8, "float32"))
    with pytest.raises(TypeError, match="argument 'A': expected a td.nd array on the CUDA"):
        f(td.nd.array(np.zeros(8, "float32")), td.nd.array(np.zeros(8, "float32")))
    assert 'extern "C" __global__' in f.get_source()
    assert ".target sm_90" in f.get_source("ptx")


@pytest.mark.skipif(driver.is_available(), reason="this machine has a GPU")
def test_no_gpu_raises_device_not_available():
    with pytest.raises(td.DeviceNotAvailable, match="CUDA"):
        td.nd.array(np.zeros(3, "float32"), device="cuda")
    with pytest.raises(td.DeviceNotAvailable):
        td.nd.empty((3,), "float32", device="cuda")
    assert td.nd.is_cuda_available() is False


@pytest.mark.skipif(driver.is_available(), reason="this machine has a GPU")
def test_ops_on_device_arrays_compile_the_gpu_template_then_need_the_device():
    # a device array's metadata without device memory: enough to reach the launch
    fake = td.nd.NDArray(0, (32, 48), "float32", "cuda", 0, None)
    with pytest.raises(TypeError, match="argument 1 is a host array"):
        td.ops.matmul(fake, np.zeros((48, 16), "float32"))
    with pytest.raises(td.DeviceNotAvailable):
        td.ops.softmax(fake, axis=-1)
    from tensordsl.ops import _CACHE
    assert any(key[0] == "softmax" and key[-1] == "cuda" for key in _CACHE)
