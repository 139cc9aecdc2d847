"""The CPU backend: LLVM IR via llvmlite, JIT-loaded into the process."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import llvmlite.binding as llvm

from tensordsl.ir import nodes as n

from ..base import Target, register_backend
from . import codegen, compile, runtime


@functools.lru_cache(maxsize=None)
def _codegen_version() -> str:
    """A hash of this backend's source: a changed code generator never reuses objects
    cached by an older one."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


class LLVMBackend:
    name = "llvm"

    def fingerprint(self, target: Target) -> str:
        return f"{target}|{compile.fingerprint()}|{_codegen_version()}"

    def codegen(self, func: n.PrimFunc, target: Target) -> str:
        compile.host_machine()
        module = codegen.generate(func, llvm.get_process_triple(),
                                  str(compile.host_machine().target_data))
        return str(module)

    def compile(self, source: str, target: Target) -> bytes:
        return compile.compile_object(source, int(dict(target.options).get("opt", 3)))

    def load(self, binary: bytes, func: n.PrimFunc, target: Target):
        n_ptr = sum(isinstance(p, n.Buffer) for p in func.params)
        return runtime.load(binary, func.name, n_ptr, len(func.params) - n_ptr)

    def source_text(self, source: str, kind: str, target: Target) -> str:
        if kind in ("ll", "llvm", None):
            return source
        if kind == "asm":
            return compile.assembly(source)
        if kind == "ll-opt":
            return str(compile.optimize(source))
        raise ValueError(f"get_source: kind must be 'll', 'll-opt' or 'asm', got {kind!r}")


register_backend("llvm", LLVMBackend())
