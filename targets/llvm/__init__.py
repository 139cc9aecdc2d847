"""The CPU backend: LLVM IR via llvmlite, JIT-loaded into the process."""
from __future__ import annotations

import llvmlite.binding as llvm

from tensordsl.ir import nodes as n
from tensordsl.ir.printer import print_func

from ..base import Target, register_backend
from ..cache import make_key, module_closure_hash
from . import codegen, compile, export, externs, runtime


class LLVMBackend:
    name = "llvm"

    def fingerprint(self, target: Target) -> str:
        return f"{target}|{compile.fingerprint()}|{module_closure_hash('targets.llvm')}"

    def cache_key(self, func: n.PrimFunc, target: Target, source) -> str:
        # Rendering LLVM IR costs as much as a cache hit saves: key on the printed IR
        # and every module the code generator imports instead.
        return make_key(print_func(func), self.fingerprint(target))

    def codegen(self, func: n.PrimFunc, target: Target) -> str:
        compile.host_machine()
        triple, layout = llvm.get_process_triple(), str(compile.host_machine().target_data)
        module = codegen.generate(func, triple, layout)
        return externs.link_imports(str(module), func.attrs.get("import_llvm", ()), triple,
                                    layout)

    def compile(self, source: str, target: Target) -> bytes:
        return compile.compile_object(source, int(dict(target.options).get("opt", 3)))

    def load(self, binary: bytes, func: n.PrimFunc, target: Target):
        externs.check_resolvable(func)
        n_ptr = sum(isinstance(p, n.Buffer) for p in func.params)
        return runtime.load(binary, codegen.symbol_name(func.name), n_ptr,
                            len(func.params) - n_ptr)

    def export_object(self, source: str, func: n.PrimFunc, target: Target,
                      hidden_symbol: str) -> tuple[bytes, set[str]]:
        """The kernel's object for a shared library, from the module the JIT runs, with
        the kernel renamed to ``hidden_symbol``; and the external functions it calls."""
        return export.export_object(source, codegen.symbol_name(func.name), hidden_symbol,
                                    int(dict(target.options).get("opt", 3)))

    def source_text(self, source: str, kind: str, target: Target) -> str:
        if kind in ("ll", "llvm", None):
            return source
        if kind == "asm":
            return compile.assembly(source)
        if kind == "ll-opt":
            return str(compile.optimize(source))
        raise ValueError(f"get_source: kind must be 'll', 'll-opt' or 'asm', got {kind!r}")


register_backend("llvm", LLVMBackend())
