"""``td.export``: built functions → a shared library, object or static archive, and a header.

    f = td.build(s, [A, B, C], name="matmul")
    td.export([f], "libkernels.so")          # also writes libkernels.h
    f.export_library("libmatmul.so")         # TVM's name, one function

The library holds, per kernel, the object emitted from the same optimized LLVM module the
JIT runs (``targets/llvm/export.py``; GPU kernels: their CUBIN and a launcher,
``cuda_launcher.py``), a C entry named ``tensordsl_<name>`` (``cpu_entry.py``, ABI in
``abi.py``), and a description of the kernels (``tensordsl_module_info``) from which
``td.load_module`` rebuilds the argument checks. It is linked with ``--no-undefined``
against libc, libm, pthreads and, where a kernel has parallel loops, libgomp: a symbol
only the Python process has (``td.call_packed``) cannot slip in.
"""
from __future__ import annotations

import base64
import json
import pickle
import shutil
import tempfile
from pathlib import Path

from ..errors import BuildError
from ..ir import nodes as n
from ..ir.visitor import called_functions
from ..runtime import packed
from . import cpu_entry, toolchain
from .abi import header as render_header
from .abi import kernel_abi
from .c_expr import c_byte_array

KINDS = {".so": "so", ".a": "a", ".o": "o"}
INFO_SYMBOL = "tensordsl_module_info"
INFO_FORMAT = 1


def export(funcs, path, header: bool = True) -> list[Path]:
    """Write the built functions ``funcs`` to ``path`` (``.so``: shared library, ``.a``:
    static archive, ``.o``: object) and, with ``header``, a C header beside it
    (``libx.so`` → ``libx.h``). Returns the paths written.

    ``funcs``: one function (the object ``td.build`` returns), a list of them (each
    exported under its build ``name``), or a dict ``{name: function}``. Kernel ``name``
    is the C function ``tensordsl_<name>``.

    Example: ``td.export({"matmul": f, "gelu": g}, "build/libnet.so")``.
    """
    path = Path(path)
    kind = KINDS.get(path.suffix)
    if kind is None:
        raise ValueError(f"export: path must end in .so, .a or .o, got {str(path)!r}")
    return write_library(named_functions(funcs), path.parent, path.stem, [kind], header)


def named_functions(funcs) -> list[tuple[str, object]]:
    """``[(export name, function)]`` from a function, a list or a dict; names checked."""
    from ..runtime.module import Module
    if isinstance(funcs, Module):
        funcs = [funcs]
    if isinstance(funcs, dict):
        named = list(funcs.items())
    elif isinstance(funcs, (list, tuple)):
        named = [(getattr(f, "entry_name", None), f) for f in funcs]
    else:
        raise TypeError(f"export: expected a built function, a list of them or a dict "
                        f"{{name: function}}, got {type(funcs).__name__}")
    if not named:
        raise ValueError("export: no functions given")
    seen = set()
    for name, f in named:
        if not isinstance(f, Module):
            raise TypeError(f"export: {name!r}: expected a function td.build returned, got "
                            f"{type(f).__name__}")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"export: kernel name must be a C identifier, got {name!r}")
        if name in seen:
            raise ValueError(f"export: two kernels are named {name!r}; build them with "
                             "distinct name=... or pass a dict {name: function}")
        seen.add(name)
    return named


def write_library(named, directory, stem: str, kinds, with_header: bool = True) -> list[Path]:
    """Write ``directory/stem.{kinds}`` (and ``stem.h``) for the ``(name, function)``
    pairs ``named``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cpu = [(name, f) for name, f in named if f.backend.name == "llvm"]
    gpu = [(name, f) for name, f in named if f.backend.name == "cuda"]
    other = [name for name, f in named if f.backend.name not in ("llvm", "cuda")]
    if other:
        raise BuildError(f"export: no exporter for the target of {', '.join(other)}")
    cpu_abis = [kernel_abi(name, f) for name, f in cpu]
    written = []
    with tempfile.TemporaryDirectory(prefix="tensordsl-export-") as tmp:
        tmp = Path(tmp)
        objects, libraries, parallel = _cpu_objects(cpu, cpu_abis, tmp)
        libraries = ["m", "pthread"] + libraries
        infos = [kernel_info(abi, f) for (_, f), abi in zip(cpu, cpu_abis)]
        gpu_abis, link = [], None
        if gpu:
            from . import cuda_launcher
            gpu_abis, cuda_obj, link = cuda_launcher.build(gpu, tmp)
            infos += [kernel_info(abi, f) for (_, f), abi in zip(gpu, gpu_abis)]
        objects.append(_info_object(infos, tmp))
        # every symbol must resolve from the system's libraries (for .a and .o too):
        # the CPU part here, the GPU launchers where libcuda is there to link with
        cpu_joined = tmp / "cpu.o"
        toolchain.join_objects([str(o) for o in objects], str(cpu_joined))
        toolchain.link_shared(str(cpu_joined), str(tmp / "cpu.so"), libraries)
        joined, shared = cpu_joined, tmp / "cpu.so"
        if gpu:
            joined = tmp / "joined.o"
            toolchain.join_objects([str(cpu_joined), str(cuda_obj)], str(joined))
            shared = None
            if link.libraries:
                shared = tmp / "joined.so"
                toolchain.link_shared(str(joined), str(shared), libraries + link.libraries,
                                      link.library_dirs)
        for kind in kinds:
            out = directory / f"{stem}.{kind}"
            if kind == "so":
                if shared is None:
                    raise BuildError(f"export: {link.note}; export the GPU kernels to .a or "
                                     ".o and link the program with -lcuda where the driver "
                                     "is installed")
                shutil.copyfile(shared, out)
            elif kind == "a":
                toolchain.archive(str(joined), str(out))
            else:
                shutil.copyfile(joined, out)
            written.append(out)
        if with_header:
            out = directory / f"{stem}.h"
            out.write_text(_header(stem, cpu_abis + gpu_abis, parallel, gpu))
            written.append(out)
    return written


def _in_c_libraries(name: str) -> bool:
    """Whether libc or libm, which every exported library links, has ``name``."""
    import ctypes
    import ctypes.util
    for lib in ("c", "m"):
        path = ctypes.util.find_library(lib)
        if path and hasattr(ctypes.CDLL(path), name):
            return True
    return False


def _cpu_objects(cpu, abis, tmp: Path):
    """The kernels' objects and the object of their C entries; the libraries they need;
    the names of the kernels with parallel loops."""
    objects, entries, parallel = [], [], []
    for index, ((name, f), abi) in enumerate(zip(cpu, abis)):
        hidden = f"tensordsl_impl_{name}"
        obj, externals = f.backend.export_object(f._source(), f.func, f.target, hidden)
        if packed.SYMBOL in externals:
            raise BuildError(f"export: kernel {name!r} calls a Python function "
                             "(td.call_packed), which exists only inside a Python process; "
                             "it cannot be exported")
        unlinked = [e for e in called_functions(f.func.body)
                    if e in externals and not _in_c_libraries(e)]
        if unlinked:
            raise BuildError(f"export: kernel {name!r} calls the C function {unlinked[0]!r} "
                             "(td.call_extern) from a library of this process, which the "
                             "exported library cannot link; give its LLVM IR to "
                             "s[T].pragma(axis, 'import_llvm', code) to build it in")
        if any(e.startswith(("GOMP_", "omp_")) for e in externals):
            parallel.append(name)
        path = tmp / f"kernel{index}.o"
        path.write_bytes(obj)
        objects.append(path)
        entries.append(cpu_entry.entry_source(index, abi, f, hidden))
    if not cpu:
        return objects, [], parallel
    openmp = any(f.team_size_var is not None for _, f in cpu)
    c_path = tmp / "entries.c"
    c_path.write_text("\n".join([cpu_entry.runtime_source(len(cpu), openmp), *entries]))
    toolchain.compile_c(str(c_path), str(tmp / "entries.o"))
    objects.append(tmp / "entries.o")
    return objects, (["gomp"] if parallel or openmp else []), parallel


def kernel_info(abi, f) -> dict:
    """What ``td.load_module`` needs of one kernel: its C symbol, and its signature as a
    ``PrimFunc`` without a body (the argument checks of ``runtime/module.py`` read only the
    parameters and these attributes)."""
    func = f.func
    keep = ("workspace", "per_thread_workspace", "team_size", "access_checks",
            "checked_reads", "index_error")
    signature = n.PrimFunc(func.name, func.params, n.Evaluate(n.IntImm("int32", 0)),
                           func.outputs, {k: func.attrs[k] for k in keep if k in func.attrs})
    return {"name": abi.name, "symbol": abi.symbol, "device": abi.device,
            "prototype": abi.prototype(), "checked_reads": abi.checked_reads,
            "signature": base64.b64encode(pickle.dumps(signature)).decode()}


def _info_object(infos: list[dict], tmp: Path) -> Path:
    """``tensordsl_module_info``: the kernels' description as a JSON text (weak, so that
    two libraries' archives can be linked into one program)."""
    from .. import __version__
    data = json.dumps({"format": INFO_FORMAT, "tensordsl": __version__,
                       "kernels": infos}).encode() + b"\0"
    source = tmp / "info.c"
    source.write_text(f'__attribute__((weak, visibility("default"))) const char '
                      f"{INFO_SYMBOL}[{len(data)}] = {c_byte_array(data)};\n")
    toolchain.compile_c(str(source), str(tmp / "info.o"))
    return tmp / "info.o"


def _header(stem: str, abis, parallel, gpu) -> str:
    import llvmlite.binding as llvm
    from .. import __version__
    from .cuda_launcher import arch as cuda_arch
    arch = ", ".join(sorted({cuda_arch(f) for _, f in gpu})) if gpu else ""
    description = ", ".join(a.name for a in abis)
    return render_header(stem, abis, __version__, description, cpu=llvm.get_host_cpu_name(),
                  parallel=tuple(parallel), arch=arch)
