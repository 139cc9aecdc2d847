"""An exported kernel's object file: the JIT's optimized module, emitted for a shared library.

``compile.optimize`` gives the module the JIT runs (same IR, same pass pipeline, same host
machine). Here only its emission differs: position-independent code with the default code
model (the JIT's object uses absolute addresses, which a shared library cannot hold), and
the kernel renamed to a hidden symbol, so that the exported C entry (``tensordsl/export``)
is the one name a program sees and a kernel named ``main`` cannot collide with a
program's ``main``.
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm

from tensordsl.errors import BuildError

from . import compile as llvm_compile


@functools.lru_cache(maxsize=None)
def pic_machine():
    """The host CPU's machine emitting position-independent code (never given to an engine)."""
    llvm_compile.host_machine()       # initializes the native target
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="pic", codemodel="default")


def export_object(llvm_ir: str, symbol: str, hidden_symbol: str,
                  opt_level: int = 3) -> tuple[bytes, set[str]]:
    """``(object bytes, external functions it calls)``: the optimized module with its
    kernel ``symbol`` renamed to ``hidden_symbol`` (hidden visibility)."""
    module = llvm_compile.optimize(llvm_ir, opt_level)
    try:
        kernel = module.get_function(symbol)
    except NameError:
        raise BuildError(f"function {symbol!r} not found in the compiled module") from None
    kernel.name = hidden_symbol
    kernel.visibility = "hidden"
    externals = {f.name for f in module.functions
                 if f.is_declaration and not f.name.startswith("llvm.")}
    return pic_machine().emit_object(module), externals
