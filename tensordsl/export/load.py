"""``td.load_module``: an exported library back in Python, its kernels callable on numpy arrays.

Each kernel is a ``runtime.module.Module`` over the library's C entry: the same argument
checks as ``td.build``'s functions (rebuilt from the signature the library carries,
``library.py: kernel_info``), then the C entry with the array pointers and the sizes; the
entry does the rest (workspace, team size) as a C program's call would.
"""
from __future__ import annotations

import base64
import ctypes
import json
import pickle
from pathlib import Path

from targets.base import Target

from ..runtime.module import Module
from .abi import STATUS_CODE, size_vars
from .library import INFO_FORMAT, INFO_SYMBOL


class LibraryFunction(Module):
    """A kernel of a loaded library: ``f(*arrays)`` checks them and calls the C entry."""

    def __init__(self, func, entry, index_error=None):
        super().__init__(func, entry, None, Target("llvm"), None)
        self.index_error = index_error

    def get_source(self, kind: str = "ll") -> str:
        raise ValueError(f"{self.entry_name}: an exported library keeps machine code only; "
                         "get_source needs the function td.build returned")

    def __call__(self, *arrays):
        pointers, sizes = self.check_args(arrays)
        sizes = [s for v, s in zip(self.scalars, sizes) if v is not self.team_size_var]
        status = self.kernel(*pointers, *sizes)
        if status == STATUS_CODE["TD_STATUS_OK"]:
            return
        if status == STATUS_CODE["TD_STATUS_OUT_OF_MEMORY"]:
            raise MemoryError(f"{self.entry_name}: a temporary buffer could not be allocated")
        if status == STATUS_CODE["TD_STATUS_INDEX_OUT_OF_BOUNDS"] and self.index_error:
            code, index = ctypes.c_int64(), ctypes.c_int64()
            self.index_error(ctypes.byref(code), ctypes.byref(index))
            self.raise_index_error(code.value, index.value, arrays)
        raise RuntimeError(f"{self.entry_name}: the exported kernel returned status {status}")


class LoadedLibrary:
    """The kernels of an exported library: ``lib["name"]`` or ``lib.name``; called
    directly when it holds one kernel (TVM's ``load_module(path)(*args)``)."""

    def __init__(self, path: Path, handle, functions: dict, gpu_kernels=()):
        self.path, self._handle, self.functions = path, handle, functions
        self.gpu_kernels = list(gpu_kernels)

    def __getitem__(self, name: str) -> LibraryFunction:
        if name in self.gpu_kernels:
            raise KeyError(f"{name!r} is a GPU kernel: call tensordsl_{name} from C with "
                           "device pointers (td.load_module loads CPU kernels)")
        if name not in self.functions:
            raise KeyError(f"{self.path.name} has no kernel {name!r}; it has "
                           f"{', '.join(self.functions)}")
        return self.functions[name]

    def __getattr__(self, name: str):
        functions = self.__dict__.get("functions", {})
        if name in functions:
            return functions[name]
        raise AttributeError(name)

    def __call__(self, *arrays):
        if len(self.functions) != 1:
            raise TypeError(f"{self.path.name} holds {len(self.functions)} kernels "
                            f"({', '.join(self.functions)}); call one: lib['name'](...)")
        return next(iter(self.functions.values()))(*arrays)

    def __repr__(self):
        return f"<tensordsl library {self.path} kernels={list(self.functions)}>"


def load_module(path) -> LoadedLibrary:
    """Load a shared library written by ``td.export`` / ``f.export_library``.

    Example: ``lib = td.load_module("libmatmul.so"); lib["matmul"](a, b, c)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_module: no such file: {str(path)!r}")
    handle = ctypes.CDLL(str(path.resolve()))
    try:
        raw = ctypes.c_char.in_dll(handle, INFO_SYMBOL)
    except ValueError:
        raise ValueError(f"load_module: {str(path)!r} was not written by td.export (it has "
                         f"no {INFO_SYMBOL})") from None
    info = json.loads(ctypes.string_at(ctypes.addressof(raw)).decode())
    if info.get("format") != INFO_FORMAT:
        raise ValueError(f"load_module: {str(path)!r} has library format "
                         f"{info.get('format')}, this tensordsl reads {INFO_FORMAT}")
    functions, gpu = {}, []
    for k in info["kernels"]:
        if k["device"] != "cpu":
            gpu.append(k["name"])      # launched from C with device pointers
            continue
        function = LibraryFunction(pickle.loads(base64.b64decode(k["signature"])), None)
        entry = getattr(handle, k["symbol"])
        entry.restype = ctypes.c_int32
        entry.argtypes = [ctypes.c_void_p] * len(function.params) + \
            [ctypes.c_int64] * len(size_vars(function))
        function.kernel = entry
        if k["checked_reads"]:
            function.index_error = getattr(handle, k["symbol"] + "_index_error")
            function.index_error.restype = None
        functions[k["name"]] = function
    return LoadedLibrary(path, handle, functions, gpu)
