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
from tensordsl.runtime.addresses import array_data_offset

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
        self.address, self.n_pointers, self.n_scalars = address, n_pointers, n_scalars
        argtypes = [ctypes.c_void_p] * n_pointers + [ctypes.c_int64] * n_scalars
        self.cfunc = ctypes.CFUNCTYPE(ctypes.c_int32, *argtypes)(address)
        self._object_entries: dict = {}

    def __call__(self, *args) -> int:
        return self.cfunc(*args)

    def object_entry(self, objects: tuple):
        """The function taking the pointer arguments flagged in ``objects`` as numpy
        arrays themselves (their data pointers read in machine code), the others as
        integers; None where this Python's arrays are not laid out as expected.

        Asking an array for its address from Python (``a.ctypes.data``) costs more than
        a small kernel's run (0.8 us each, here); a ctypes ``py_object`` argument costs
        next to nothing. The caller vouches for each array (type, dtype, shape,
        contiguity, alignment), as for the pointers it passes."""
        entry = self._object_entries.get(objects)
        if entry is None and array_data_offset() is not None:
            entry = self._object_entries[objects] = _object_entry(self, objects)
        return entry


    def packed_entry(self, objects: tuple):
        """The function taking one pointer to the fixed arguments — every pointer not
        flagged in ``objects`` then every scalar, as 64-bit words in order — followed by
        the flagged ones as numpy arrays: ``entry(block, *arrays)``. A caller that calls
        one kernel on the same fixed arrays many times (a sparse matrix's, with its
        sizes) passes two or three arguments instead of a dozen (ctypes converts each:
        1.3 us for 13, 0.5 for 3, here). None as for ``object_entry``."""
        key = ("packed", objects)
        entry = self._object_entries.get(key)
        if entry is None and array_data_offset() is not None:
            entry = self._object_entries[key] = _object_entry(self, objects, packed=True)
        return entry


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


def _object_entry(kernel: Kernel, objects: tuple, packed: bool = False):
    """A wrapper compiled beside ``kernel``: the flagged arguments' data pointers loaded
    at ``array_data_offset()`` of the objects, then the kernel called with them. With
    ``packed``, the other arguments are read from one block of 64-bit words (its first
    parameter) instead of being parameters of their own."""
    if len(objects) != kernel.n_pointers:
        raise ValueError(f"object_entry: expected {kernel.n_pointers} flags, one per "
                         f"pointer argument, got {len(objects)}")
    offset = array_data_offset()
    body, args, fixed = [], [], 0

    def word(kind: str, k) -> str:
        nonlocal fixed
        body.extend([f"  %w{k} = getelementptr i64, i64* %block, i64 {fixed}",
                     f"  %v{k} = load i64, i64* %w{k}"])
        fixed += 1
        if kind == "i64":
            return f"i64 %v{k}"
        body.append(f"  %q{k} = inttoptr i64 %v{k} to i8*")
        return f"i8* %q{k}"

    params = ["i64* %block"] if packed else []
    for k, is_object in enumerate(objects):
        if not is_object:
            args.append(word("i8*", f"a{k}") if packed else f"i8* %a{k}")
            params += [] if packed else [f"i8* %a{k}"]
            continue
        params.append(f"i8* %a{k}")
        body += [f"  %f{k} = getelementptr i8, i8* %a{k}, i64 {offset}",
                 f"  %p{k} = bitcast i8* %f{k} to i8**",
                 f"  %d{k} = load i8*, i8** %p{k}"]
        args.append(f"i8* %d{k}")
    for k in range(kernel.n_scalars):
        args.append(word("i64", f"s{k}") if packed else f"i64 %s{k}")
        params += [] if packed else [f"i64 %s{k}"]
    types = ", ".join(a.split(" ")[0] for a in args)
    ir = "\n".join([
        f"define i32 @entry({', '.join(params)}) {{",
        *body,
        f"  %fn = inttoptr i64 {kernel.address} to i32 ({types})*",
        f"  %r = call i32 %fn({', '.join(args)})",
        "  ret i32 %r",
        "}", ""])
    if packed:
        argtypes = [ctypes.c_void_p] + [ctypes.py_object] * sum(map(bool, objects))
    else:
        argtypes = [ctypes.py_object if is_object else ctypes.c_void_p
                    for is_object in objects] + [ctypes.c_int64] * kernel.n_scalars
    return _compiled_entry(ir, argtypes)


def _compiled_entry(ir: str, argtypes: list):
    """The function ``@entry`` of the LLVM IR text ``ir`` (returning i32), compiled for
    this CPU and callable with ``argtypes``; it keeps its machine code mapped."""
    module = llvm.parse_assembly(ir)
    module.verify()
    engine = llvm.create_mcjit_compiler(module, new_host_machine())
    engine.finalize_object()
    cfunc = ctypes.CFUNCTYPE(ctypes.c_int32, *argtypes)(engine.get_function_address("entry"))
    cfunc.engine = engine
    return cfunc


def program_entry(calls: list):
    """One function that runs kernels in order, ``entry(slots) -> 0``, or ``k + 1``
    when the ``k``-th returned a failure (the later ones then do not run). ``calls``:
    per kernel, ``(kernel, slots, trailing)``: its pointer arguments are the 64-bit
    words ``slots[i]`` of the array ``entry`` is given (``ctypes.c_int64 * n``), the
    rest ``trailing``, fixed (a workspace's pointers, then its scalars) and compiled in.

    ``td.build_program``'s call then crosses from Python into machine code once, not
    once per kernel: a training step's 26 ctypes calls, with their arguments converted
    one by one, cost about 3% of a small model's step."""
    body = []
    for k, (kernel, slots, trailing) in enumerate(calls):
        if len(slots) + len(trailing) != kernel.n_pointers + kernel.n_scalars:
            raise ValueError(f"program_entry: kernel {k} takes "
                             f"{kernel.n_pointers + kernel.n_scalars} arguments, got "
                             f"{len(slots)} slots and {len(trailing)} fixed")
        args = []
        for i, slot in enumerate(slots):
            body += [f"  %g{k}_{i} = getelementptr i64, i64* %slots, i64 {slot}",
                     f"  %w{k}_{i} = load i64, i64* %g{k}_{i}",
                     f"  %p{k}_{i} = inttoptr i64 %w{k}_{i} to i8*"]
            args.append(f"i8* %p{k}_{i}")
        for i, value in enumerate(trailing, start=len(slots)):
            args.append(f"i8* inttoptr (i64 {int(value or 0)} to i8*)"
                        if i < kernel.n_pointers else f"i64 {int(value)}")
        types = ", ".join(a.split(" ")[0] for a in args)
        body += [f"  %f{k} = inttoptr i64 {kernel.address} to i32 ({types})*",
                 f"  %r{k} = call i32 %f{k}({', '.join(args)})",
                 f"  %bad{k} = icmp ne i32 %r{k}, 0",
                 f"  br i1 %bad{k}, label %fail{k}, label %ok{k}",
                 f"fail{k}:",
                 f"  ret i32 {k + 1}",
                 f"ok{k}:"]
    ir = "\n".join(["define i32 @entry(i64* %slots) {", *body, "  ret i32 0", "}", ""])
    return _compiled_entry(ir, [ctypes.c_void_p])
