"""Loading object code into the process and calling it.

Each object gets its own MCJIT engine (kept alive by the returned kernel: its code
lives as long as the engine). ``libgomp`` is loaded once so that ``GOMP_parallel`` and
friends resolve; C library symbols (``aligned_alloc``, ``tanhf``) resolve from the
process. ctypes releases the GIL for the duration of a call.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import llvmlite.binding as llvm

from tensordsl.errors import BuildError
from tensordsl.runtime import packed

from .compile import new_host_machine


@functools.lru_cache(maxsize=None)
def load_openmp() -> bool:
    for name in ("libgomp.so.1", ctypes.util.find_library("gomp")):
        if not name:
            continue
        try:
            llvm.load_library_permanently(name)
            return True
        except RuntimeError:
            continue
    return False


class Kernel:
    """A loaded function: ``kernel(ptr0, ptr1, ..., n0, n1, ...) -> status``."""

    def __init__(self, engine, address: int, n_pointers: int, n_scalars: int):
        self.engine = engine  # keeps the machine code mapped
        argtypes = [ctypes.c_void_p] * n_pointers + [ctypes.c_int64] * n_scalars
        self.cfunc = ctypes.CFUNCTYPE(ctypes.c_int32, *argtypes)(address)

    def __call__(self, *args) -> int:
        return self.cfunc(*args)


def load(obj: bytes, name: str, n_pointers: int, n_scalars: int) -> Kernel:
    if not load_openmp():
        raise BuildError("parallel loops need libgomp (gcc's OpenMP runtime), which was "
                         "not found; install libgomp1")
    llvm.add_symbol(packed.SYMBOL, packed.CALLBACK_ADDRESS)   # td.call_packed
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_host_machine())
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    address = engine.get_function_address(name)
    if not address:
        raise BuildError(f"function {name!r} not found in the compiled object")
    return Kernel(engine, address, n_pointers, n_scalars)
