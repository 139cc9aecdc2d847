"""The C functions a kernel calls (``td.call_extern``): linked in from the LLVM IR of
``s[T].pragma(axis, "import_llvm", code)``, or found in the process."""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm

from tensordsl.errors import BuildError
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import called_functions


def link_imports(kernel_ir: str, imports, triple: str, data_layout: str) -> str:
    """``kernel_ir`` with every imported module linked in."""
    if not imports:
        return kernel_ir
    module = llvm.parse_assembly(kernel_ir)
    for code in imports:
        other = _parse(code)
        other.triple, other.data_layout = triple, data_layout
        try:
            module.link_in(other)
        except RuntimeError as err:
            raise BuildError(f"pragma 'import_llvm': linking the module failed: {err}") \
                from None
    return str(module)


def check_resolvable(func: n.PrimFunc):
    """Raise ``BuildError`` for a called function that neither an imported module
    defines nor the process has (the JIT would abort the process on it)."""
    defined = {f.name for code in func.attrs.get("import_llvm", ())
               for f in _parse(code).functions if not f.is_declaration}
    for name in called_functions(func.body):
        if name not in defined and not _in_process(name):
            raise BuildError(
                f"call_extern {name!r}: no such function; give its LLVM IR to "
                f"s[T].pragma(axis, 'import_llvm', code), or load a library defining it "
                f"with ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)")


def _in_process(name: str) -> bool:
    """Whether the JIT will find ``name``: in a library loaded for it, or in the
    process's global scope (where ``RTLD_GLOBAL`` libraries are)."""
    return bool(llvm.address_of_symbol(name)) or hasattr(ctypes.CDLL(None), name)


def _parse(code: str):
    try:
        module = llvm.parse_assembly(code)
        module.verify()
    except RuntimeError as err:
        raise BuildError(f"pragma 'import_llvm': the LLVM IR does not parse: {err}") \
            from None
    return module
