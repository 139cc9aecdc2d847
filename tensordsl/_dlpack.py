"""The DLPack structures (dlpack.h, unversioned ``dltensor`` capsules) through ctypes."""
from __future__ import annotations

import ctypes

import numpy as np

_CAPSULE = b"dltensor"
_USED = b"used_dltensor"
_KDL_INT, _KDL_UINT, _KDL_FLOAT, _KDL_BFLOAT, _KDL_BOOL = 0, 1, 2, 4, 6


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                            ("deleter", _Deleter)]

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]

# Exported tensors stay here (with the array they view) until the consumer's deleter
# runs, or the capsule dies unconsumed.
_exported: dict[int, tuple] = {}


@_Deleter
def _delete_exported(managed):
    _exported.pop(ctypes.addressof(managed.contents), None)


_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# The destructor sees a capsule whose reference count is already zero: no py_object
# (which would take a reference) may wrap it, so these take the raw pointer.
_raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", ctypes.pythonapi))
_raw_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


@_CapsuleDestructor
def _capsule_destructor(capsule_ptr):
    if _raw_is_valid(capsule_ptr, _CAPSULE):   # never consumed: release it ourselves
        _exported.pop(_raw_get_pointer(capsule_ptr, _CAPSULE), None)


def _dl_dtype(dtype: np.dtype) -> DLDataType:
    if dtype == np.bool_:
        return DLDataType(_KDL_BOOL, 8, 1)
    code = {"i": _KDL_INT, "u": _KDL_UINT, "f": _KDL_FLOAT}.get(dtype.kind)
    if code is None:
        raise BufferError(f"DLPack: dtype {dtype} cannot be exported")
    return DLDataType(code, dtype.itemsize * 8, 1)


def _np_dtype(dl: DLDataType) -> np.dtype:
    if dl.lanes != 1:
        raise BufferError(f"DLPack: vector dtypes ({dl.lanes} lanes) are not supported")
    if dl.code == _KDL_BOOL:
        return np.dtype(np.bool_)
    if dl.code == _KDL_BFLOAT and dl.bits == 16:
        return np.dtype("uint16")   # bfloat16 is stored as uint16 by tensordsl
    kind = {_KDL_INT: "i", _KDL_UINT: "u", _KDL_FLOAT: "f"}.get(dl.code)
    if kind is None:
        raise BufferError(f"DLPack: type code {dl.code} is not supported")
    return np.dtype(f"{kind}{dl.bits // 8}")


def export(arr):
    managed = DLManagedTensor()
    shape = (ctypes.c_int64 * max(1, arr.ndim))(*arr.shape)
    t = managed.dl_tensor
    t.data = arr.ptr
    t.device = DLDevice(*arr.__dlpack_device__())
    t.ndim = arr.ndim
    t.dtype = _dl_dtype(arr.dtype)
    t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    t.strides = None            # compact row-major
    t.byte_offset = 0
    managed.deleter = _delete_exported
    address = ctypes.addressof(managed)
    _exported[address] = (managed, shape, arr)
    return _api.PyCapsule_New(address, _CAPSULE, ctypes.cast(_capsule_destructor,
                                                              ctypes.c_void_p))


class _Imported:
    """Owns a consumed DLManagedTensor: calls its deleter when the last view goes."""

    def __init__(self, address: int, managed, producer):
        self.address, self.managed, self.producer = address, managed, producer

    def __del__(self):
        deleter = self.managed.deleter
        if deleter:
            deleter(ctypes.cast(self.address, ctypes.POINTER(DLManagedTensor)))


def import_(obj):
    from .nd import NDArray
    if hasattr(obj, "__dlpack__"):
        producer = obj
        try:
            capsule = obj.__dlpack__(stream=None)
        except TypeError:
            capsule = obj.__dlpack__()
    elif type(obj).__name__ == "PyCapsule":
        producer, capsule = None, obj
    else:
        raise TypeError(f"from_dlpack: expected an object with __dlpack__ or a DLPack "
                        f"capsule, got {type(obj).__name__}")
    if not _api.PyCapsule_IsValid(capsule, _CAPSULE):
        raise BufferError("from_dlpack: the capsule is not an unconsumed 'dltensor' "
                          "(it may have been used already)")
    address = _api.PyCapsule_GetPointer(capsule, _CAPSULE)
    managed = DLManagedTensor.from_address(address)
    t = managed.dl_tensor
    dev_type, dev_id = t.device.device_type, t.device.device_id
    if dev_type == 1:
        device = "cpu"
    elif dev_type == 2:
        device = "cuda"
    else:
        raise BufferError(f"from_dlpack: device type {dev_type} is not supported "
                          "(CPU = 1 and CUDA = 2 are)")
    shape = tuple(t.shape[d] for d in range(t.ndim))
    dtype = _np_dtype(t.dtype)
    if t.strides:
        expected, acc = [], 1
        for d in reversed(shape):
            expected.append(acc)
            acc *= d
        strides = tuple(t.strides[d] for d in range(t.ndim))
        if any(s != e and n > 1 for s, e, n in zip(strides, reversed(expected), shape)):
            raise BufferError(f"from_dlpack: expected a C-contiguous tensor, got strides "
                              f"{strides} (in elements) for shape {shape}; make it "
                              "contiguous first")
    _api.PyCapsule_SetName(capsule, _USED)
    owner = _Imported(address, managed, producer)
    return NDArray((t.data or 0) + t.byte_offset, shape, dtype, device, dev_id, owner)
