"""The CUDA driver, through ``cuda.bindings.driver``: the device, its memory, modules and
launches. Nothing here runs until a GPU is actually needed, so building CUDA code and
emulating it work on machines without one.

A missing driver shows up as an exception from ``cuInit`` (cuda-python cannot find
``libcuda``), a driver without a GPU as ``CUDA_ERROR_NO_DEVICE``; both become
``td.DeviceNotAvailable``.
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

from tensordsl.errors import DeviceNotAvailable, TensorDSLError


class CudaError(TensorDSLError, RuntimeError):
    """A CUDA driver call failed."""


@dataclass
class Device:
    ordinal: int
    handle: object
    context: object
    name: str
    compute_capability: tuple[int, int]

    @property
    def arch(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def compile_arch(self) -> str:
        """What to compile for this device: its architecture with its own features
        (``sm_90a`` on compute capability 9.0: wgmma), which only it runs."""
        return self.arch + "a" if self.compute_capability == (9, 0) else self.arch


_lock = threading.Lock()
_devices: dict[int, Device] = {}
_unavailable: list[str] = []


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError as e:
        raise DeviceNotAvailable("CUDA: cuda-python is not installed "
                                 "(pip install 'cuda-python[all]')") from e
    return driver


def check(result, what: str):
    """The values of a driver call's result tuple; raises on an error code."""
    driver = _driver()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        _, text = driver.cuGetErrorString(err)
        raise CudaError(f"CUDA {what} failed: {err.name} "
                        f"({text.decode() if isinstance(text, bytes) else text})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device(ordinal: int = 0) -> Device:
    """The GPU ``ordinal``, initialized once (its primary context made current)."""
    with _lock:
        if ordinal in _devices:
            dev = _devices[ordinal]
            check(_driver().cuCtxSetCurrent(dev.context), "cuCtxSetCurrent")
            return dev
        if _unavailable:
            raise DeviceNotAvailable(_unavailable[0])
        driver = _driver()
        try:
            result = driver.cuInit(0)
        except Exception as e:  # noqa: BLE001 - cuda-python raises when libcuda is absent
            _unavailable.append(f"CUDA: no GPU driver on this machine ({e})")
            raise DeviceNotAvailable(_unavailable[0]) from None
        err = result[0]
        if err != driver.CUresult.CUDA_SUCCESS:
            _unavailable.append(f"CUDA: no usable GPU (cuInit: {err.name})")
            raise DeviceNotAvailable(_unavailable[0])
        count = check(driver.cuDeviceGetCount(), "cuDeviceGetCount")
        if not 0 <= ordinal < count:
            raise DeviceNotAvailable(f"CUDA: device {ordinal} requested, "
                                     f"this machine has {count}")
        handle = check(driver.cuDeviceGet(ordinal), "cuDeviceGet")
        context = check(driver.cuDevicePrimaryCtxRetain(handle), "cuDevicePrimaryCtxRetain")
        check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        attr = driver.CUdevice_attribute
        major = check(driver.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, handle), "attribute")
        minor = check(driver.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, handle), "attribute")
        raw = check(driver.cuDeviceGetName(256, handle), "cuDeviceGetName")
        name = raw.split(b"\0")[0].decode() if isinstance(raw, bytes) else str(raw)
        dev = Device(ordinal, handle, context, name, (int(major), int(minor)))
        _devices[ordinal] = dev
        return dev


def is_available() -> bool:
    try:
        device(0)
        return True
    except DeviceNotAvailable:
        return False


# ---------------------------------------------------------------- memory


def mem_alloc(nbytes: int) -> int:
    device()
    return int(check(_driver().cuMemAlloc(max(1, nbytes)), "cuMemAlloc"))


def mem_free(ptr: int):
    check(_driver().cuMemFree(ptr), "cuMemFree")


def copy_to_device(dst: int, src_host: int, nbytes: int):
    if nbytes:
        check(_driver().cuMemcpyHtoD(dst, src_host, nbytes), "cuMemcpyHtoD")


def copy_to_host(dst_host: int, src: int, nbytes: int):
    if nbytes:
        check(_driver().cuMemcpyDtoH(dst_host, src, nbytes), "cuMemcpyDtoH")


def copy_device(dst: int, src: int, nbytes: int):
    if nbytes:
        check(_driver().cuMemcpyDtoD(dst, src, nbytes), "cuMemcpyDtoD")


def synchronize():
    check(_driver().cuCtxSynchronize(), "cuCtxSynchronize")


# ---------------------------------------------------------------- modules


class LoadedModule:
    """A CUBIN loaded into the current context, with its kernels by name."""

    def __init__(self, cubin: bytes, names: list[str]):
        driver = _driver()
        device()
        self.module = check(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        self.functions = {k: check(driver.cuModuleGetFunction(self.module, k.encode()),
                                   f"cuModuleGetFunction({k})") for k in names}
        self.allowed: dict = {}   # kernel -> the dynamic shared memory it may use

    def launch(self, name: str, grid, block, args: list, dynamic_shared: int = 0):
        """``args``: ctypes values (pointers as ``c_void_p``, scalars as ``c_longlong``),
        passed the way cuda-python documents: a tuple of values and one of their types.
        ``dynamic_shared``: bytes of dynamic shared memory (the kernel is first allowed
        that many, beyond the default 48 KiB)."""
        driver = _driver()
        function = self.functions[name]
        if dynamic_shared and self.allowed.get(name) != dynamic_shared:
            attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            check(driver.cuFuncSetAttribute(function, attribute, dynamic_shared),
                  f"cuFuncSetAttribute({name}, {dynamic_shared} bytes of shared memory)")
            self.allowed[name] = dynamic_shared
        if any(isinstance(a, TensorMapArg) for a in args):
            # a 128-byte struct goes by address: the array of every parameter's address
            addresses = (ctypes.c_void_p * len(args))(*[
                a.address if isinstance(a, TensorMapArg) else ctypes.addressof(a)
                for a in args])
            params = ctypes.addressof(addresses)
        else:
            params = (tuple(a.value or 0 for a in args), tuple(type(a) for a in args))
        check(driver.cuLaunchKernel(function, *grid, *block, dynamic_shared, 0, params, 0),
              f"launch of {name}")


class TensorMapArg:
    """A ``CUtensorMap`` kernel parameter (by value: 128 bytes the launch copies)."""

    def __init__(self, tensor_map):
        self.tensor_map = tensor_map        # kept alive through the launch
        self.address = tensor_map.getPtr()


def encode_tensor_map(m, shape, address: int) -> TensorMapArg:
    """The tensor map of ``m`` (``tma.TensorMap``) over a device array of ``shape`` at
    ``address`` (``cuTensorMapEncodeTiled``; dimensions innermost first)."""
    driver = _driver()
    tensor_map = check(driver.cuTensorMapEncodeTiled(*tensor_map_arguments(driver, m, shape,
                                                                           address)),
                       f"cuTensorMapEncodeTiled({m.src.name})")
    return TensorMapArg(tensor_map)


def tensor_map_arguments(driver, m, shape, address: int) -> tuple:
    """``cuTensorMapEncodeTiled``'s arguments as cuda-python takes them (its sizes,
    strides and box as ``cuuint64_t``/``cuuint32_t`` objects: plain ints are refused)."""
    from . import tma
    dims, strides = tma.map_geometry(m, shape, address)
    kind = getattr(driver.CUtensorMapDataType,
                   "CU_TENSOR_MAP_DATA_TYPE_" + tma.DATA_TYPES[m.src.dtype])
    swizzle = driver.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B if m.swizzle else \
        driver.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_NONE
    wide, narrow = driver.cuuint64_t, driver.cuuint32_t
    return (kind, m.rank, address, [wide(d) for d in dims], [wide(s) for s in strides],
            [narrow(b) for b in m.box[::-1]], [narrow(1)] * m.rank,
            driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
            driver.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
