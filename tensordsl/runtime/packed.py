"""Python functions that compiled code calls: ``td.register_func`` and the trampoline.

``td.extern(..., lambda ins, outs: td.call_packed("name", ins[0], outs[0]))`` lowers to
a ``call_packed`` intrinsic; the CPU backend renders it as a call of the C function
``tensordsl_call_packed(name, signature, pointers, sizes, count)``, which is this module's
ctypes callback (``CALLBACK_ADDRESS``, given to the JIT linker by
``targets/llvm/runtime.py``). It finds the function registered under ``name`` and calls
it with numpy views of the buffers (``signature`` gives each argument's dtype and rank,
``sizes`` the shapes and integer arguments), holding the GIL. An exception it raises is
kept and raised again by the module's ``__call__`` once the kernel returns (a callback
cannot unwind through machine code).
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from ..ir import dtype as dt

_registry: dict = {}
_pending = threading.local()


def register_func(name, f=None, override: bool = False):
    """Register ``f`` under ``name`` for ``td.call_packed`` (TVM ``register_func``);
    usable as a decorator, ``@td.register_func("my_func")``."""
    if callable(name) and f is None:
        return register_func(name.__name__, name, override)
    if not isinstance(name, str):
        raise TypeError(f"register_func: the name must be a string, got {name!r}")

    def register(func):
        if not callable(func):
            raise TypeError(f"register_func {name!r}: expected a function, got {func!r}")
        if name in _registry and not override:
            raise ValueError(f"register_func: {name!r} is registered already (pass "
                             "override=True to replace it)")
        _registry[name] = func
        return func

    return register if f is None else register(f)


def get_global_func(name: str, allow_missing: bool = False):
    """The function registered under ``name`` (TVM ``get_global_func``)."""
    if name not in _registry and not allow_missing:
        raise ValueError(f"no function is registered as {name!r} (td.register_func)")
    return _registry.get(name)


def _arguments(signature: str, pointers, sizes) -> list:
    args, p, s = [], 0, 0
    for part in signature.split(";") if signature else []:
        if part == "int64":
            args.append(int(sizes[s]))
            s += 1
            continue
        dtype, ndim = part.rsplit(":", 1)
        shape = tuple(int(sizes[s + d]) for d in range(int(ndim)))
        s += int(ndim)
        np_dtype = np.dtype(dt.numpy_name(dtype))
        count = int(np.prod(shape, dtype=np.int64))
        raw = (ctypes.c_char * (count * np_dtype.itemsize)).from_address(pointers[p] or 0) \
            if count else bytearray()
        args.append(np.frombuffer(raw, np_dtype, count).reshape(shape))
        p += 1
    return args


def _trampoline(name, signature, pointers, sizes, count) -> int:
    try:
        func = get_global_func(name.decode())
        func(*_arguments(signature.decode(), pointers, sizes))
        return 0
    except BaseException as exc:          # noqa: BLE001 (raised again after the kernel)
        if getattr(_pending, "error", None) is None:
            _pending.error = exc
        return 1


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_char_p, ctypes.c_char_p,
                             ctypes.POINTER(ctypes.c_void_p),
                             ctypes.POINTER(ctypes.c_int64), ctypes.c_int32)(_trampoline)
CALLBACK_ADDRESS = ctypes.cast(_CALLBACK, ctypes.c_void_p).value
SYMBOL = "tensordsl_call_packed"


def raise_pending():
    """Raise the first exception a packed function raised during the last call."""
    error = getattr(_pending, "error", None)
    if error is not None:
        _pending.error = None
        raise error
