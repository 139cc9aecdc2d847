"""Arrays on a device (``td.nd``), and their exchange with other frameworks via DLPack.

    x = td.nd.array(np.ones((4, 4), "float32"), device="cuda")   # copies to the GPU
    y = td.nd.empty((4, 4), "float32", device="cuda")
    f(x, y)                                                       # a module built for cuda
    y.numpy()                                                     # copies back
    t = torch.from_dlpack(y)            # no copy: PyTorch sees the same memory
    z = td.nd.from_dlpack(t)            # nor back
    A = td.nd.sparse_array(scipy_csr)   # a sparse tensor's arrays (tensordsl/sparse/array.py)

An ``NDArray`` is dense and C-contiguous; it keeps alive whatever owns its memory (a
numpy array, a device allocation, or another framework's tensor).
"""
from __future__ import annotations

import ctypes
import math
import operator
import weakref

import numpy as np

from .errors import DeviceNotAvailable
from .runtime.addresses import data_address

_DEVICES = ("cpu", "cuda")
_KDL_CPU, _KDL_CUDA = 1, 2


def _device_name(device) -> tuple[str, int]:
    if isinstance(device, str):
        name, _, ordinal = device.partition(":")
        if name in _DEVICES and (not ordinal or ordinal.isdigit()):
            return name, int(ordinal or 0)
    raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _np_dtype(dtype) -> np.dtype:
    try:
        return np.dtype("uint16" if str(dtype) == "bfloat16" else dtype)
    except TypeError:
        raise TypeError(f"dtype: expected a numpy dtype name, got {dtype!r}") from None


class _DeviceAllocation:
    """GPU memory, freed when the last array using it goes away."""

    def __init__(self, nbytes: int):
        from targets.cuda import driver
        self.ptr = driver.mem_alloc(nbytes)
        self._finalizer = weakref.finalize(self, _free_device, self.ptr)


def _free_device(ptr: int):
    try:
        from targets.cuda import driver
        driver.mem_free(ptr)
    except Exception:  # noqa: BLE001 - at interpreter exit the driver may be gone
        pass


class NDArray:
    """A dense, C-contiguous array on ``device`` (``"cpu"`` or ``"cuda"``)."""

    def __init__(self, ptr: int, shape, dtype, device: str, ordinal: int, owner):
        self.ptr = int(ptr)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = _np_dtype(dtype)
        self.device = device
        self.device_id = ordinal
        self._owner = owner

    # numpy-like facts
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self):
        where = self.device if self.device == "cpu" else f"{self.device}:{self.device_id}"
        return f"td.nd.NDArray(shape={self.shape}, dtype={self.dtype}, device={where!r})"

    def numpy(self) -> np.ndarray:
        """A numpy copy of the contents."""
        out = np.empty(self.shape, self.dtype)
        if self.device == "cpu":
            ctypes.memmove(out.ctypes.data, self.ptr, self.nbytes)
        else:
            from targets.cuda import driver
            driver.device(self.device_id)
            driver.copy_to_host(out.ctypes.data, self.ptr, self.nbytes)
        return out

    def copyfrom(self, source) -> "NDArray":
        """Overwrite the contents with a numpy array of the same shape and dtype."""
        src = np.ascontiguousarray(source)
        if src.shape != self.shape or src.dtype != self.dtype:
            raise ValueError(f"copyfrom: expected an array of shape {self.shape} and dtype "
                             f"{self.dtype}, got shape {src.shape} and dtype {src.dtype}")
        if self.device == "cpu":
            ctypes.memmove(self.ptr, src.ctypes.data, self.nbytes)
        else:
            from targets.cuda import driver
            driver.device(self.device_id)
            driver.copy_to_device(self.ptr, src.ctypes.data, self.nbytes)
        return self

    # DLPack (producer)
    def __dlpack_device__(self):
        return (_KDL_CPU if self.device == "cpu" else _KDL_CUDA, self.device_id)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        if copy:
            raise BufferError("__dlpack__: copy=True is not supported; td.nd shares memory")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"__dlpack__: the array lives on {self.__dlpack_device__()}, "
                              f"{tuple(dl_device)} was requested")
        if self.device == "cuda" and stream not in (None, 1, 2):
            # we launch on the legacy default stream, which orders with every other one
            from targets.cuda import driver
            driver.synchronize()
        return _dlpack.export(self)


def array(data, device: str = "cpu", dtype=None) -> NDArray:
    """A new array on ``device`` holding a copy of ``data`` (array-like)."""
    name, ordinal = _device_name(device)
    src = np.ascontiguousarray(data, dtype=None if dtype is None else _np_dtype(dtype))
    out = empty(src.shape, src.dtype, device)
    return out.copyfrom(src)


def empty(shape, dtype="float32", device: str = "cpu") -> NDArray:
    """A new uninitialized array."""
    name, ordinal = _device_name(device)
    if isinstance(shape, int):
        shape = (shape,)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
        raise ValueError(f"shape: expected non-negative ints, got {shape!r}")
    dt = _np_dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if name == "cpu":
        host = aligned_numpy(shape, dt)
        return NDArray(host.ctypes.data, shape, dt, "cpu", 0, host)
    from targets.cuda import driver
    driver.device(ordinal)
    alloc = _DeviceAllocation(nbytes)
    return NDArray(alloc.ptr, shape, dt, "cuda", ordinal, alloc)


def aligned_numpy(shape, dtype="float32", alignment: int = 64) -> np.ndarray:
    """An uninitialized numpy array whose data starts on an ``alignment``-byte boundary
    (numpy's large arrays start 16 bytes into a page: whole-vector and streaming stores
    want 64)."""
    dt = np.dtype(dtype)
    shape = (operator.index(shape),) if np.ndim(shape) == 0 else tuple(shape)  # (as numpy)
    nbytes = math.prod(shape) * dt.itemsize
    raw = np.empty(max(dt.itemsize, nbytes) + alignment, np.uint8)
    # (the one-call constructor: slicing, viewing and reshaping cost a small call's time)
    return np.ndarray(shape, dt, raw, (-data_address(raw)) % alignment)


def from_dlpack(obj) -> NDArray:
    """An NDArray sharing the memory of ``obj`` (anything with ``__dlpack__``, or a
    DLPack capsule). The producer's memory stays alive as long as the NDArray."""
    return _dlpack.import_(obj)


def is_cuda_available() -> bool:
    try:
        from targets.cuda import driver
        driver.device(0)
        return True
    except DeviceNotAvailable:
        return False


from . import _dlpack  # noqa: E402  (needs NDArray)
from .sparse.array import SparseArray, sparse_array  # noqa: E402,F401  (td.nd's sparse arrays)
