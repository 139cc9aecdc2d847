"""The C functions a kernel calls (``td.call_extern``): linked in from the LLVM IR of
``s[T].pragma(axis, "import_llvm", code)``, or found in the process."""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm

from tensordsl.errors import BuildError
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import called_functions


def link_imports(kernel_ir: str, imports, triple: str, data_layout: str) -> str:
    """``kernel_ir`` with every imported module linked in (the same text once), after
    checking that each function the kernel calls has the type it is defined with. The
    imported definitions become internal: two kernels importing one module export
    side by side, and LLVM may inline them."""
    if not imports:
        return kernel_ir
    module = llvm.parse_assembly(kernel_ir)
    called = {f.name: str(f.global_value_type) for f in module.functions if f.is_declaration}
    defined = []
    for code in dict.fromkeys(imports):
        other = _parse(code)
        other.triple, other.data_layout = triple, data_layout
        for f in other.functions:
            if f.is_declaration:
                continue
            defined.append(f.name)
            want = called.get(f.name)
            if want is not None and want != str(f.global_value_type):
                raise BuildError(f"call_extern {f.name!r}: called as {want}, but the "
                                 f"imported LLVM IR defines it as {f.global_value_type}; "
                                 "give call_extern the function's return type and "
                                 "arguments of its parameter types")
        try:
            module.link_in(other)
        except RuntimeError as err:
            raise BuildError(f"pragma 'import_llvm': linking the module failed: {err}") \
                from None
    for name in defined:
        module.get_function(name).linkage = "internal"
    return str(module)


def check_resolvable(func: n.PrimFunc):
    """Raise ``BuildError`` for a function the kernel or an imported module calls (or a
    global it uses) that no imported module defines and the process does not have:
    the JIT would abort the process on it, or leave a null pointer to crash on."""
    modules = [_parse(code) for code in func.attrs.get("import_llvm", ())]
    defined = {v.name for m in modules for v in list(m.functions) + list(m.global_variables)
               if not v.is_declaration}
    needed = [(name, "the kernel") for name in called_functions(func.body)]
    needed += [(v.name, "the imported LLVM IR") for m in modules
               for v in list(m.functions) + list(m.global_variables)
               if v.is_declaration and not v.name.startswith("llvm.")]
    for name, user in needed:
        if name not in defined and not _in_process(name):
            raise BuildError(
                f"{'call_extern ' if user == 'the kernel' else ''}{name!r} (used by "
                f"{user}): no such function; give its LLVM IR to s[T].pragma(axis, "
                f"'import_llvm', code), or load a library defining it with "
                f"ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)")


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
