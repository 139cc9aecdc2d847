"""Run a CUDA module's generated kernels on the CPU, to test them without a GPU.

The CUDA C that ``codegen`` writes for the GPU is compiled for the host by g++ together
with ``emulate.h``, which gives CUDA's built-ins their meaning: blocks run one after
another, the threads of a block are fibers that meet at ``__syncthreads()``, shared
memory is one copy per block, and every buffer access is bounds-checked. The only
difference from the GPU's source is that accesses are written ``TD_AT(buf, i)``.

    f = td.build(s, [A, B, C], target="cuda -arch=sm_90")
    emulate(f, a, b, c)          # numpy arrays; outputs written in place
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from targets import cache
from tensordsl.errors import BuildError, TensorDSLError
from tensordsl.ir import dtype as dt
from tensordsl.ir import nodes as n

from . import codegen
from .plan import HostPlan, evaluate, host_plan

_HEADER = Path(__file__).with_name("emulate.h")


class EmulationError(TensorDSLError, RuntimeError):
    """An emulated kernel went wrong: an access out of bounds, or a barrier that not every
    thread of a block reached."""


def _wrapper(plan: HostPlan) -> str:
    out = []
    for k, kernel in enumerate(plan.kernels):
        args = [f"({codegen.c_type(b.dtype)}*)td_ptrs_{k}[{i}]"
                for i, b in enumerate(kernel.buffers)]
        args += [f"td_scalars_{k}[{j}]" for j in range(len(kernel.scalars))]
        out.append(f"""
static void* td_ptrs_{k}[{max(1, len(kernel.buffers))}];
static long long td_scalars_{k}[{max(1, len(kernel.scalars))}];
static void td_entry_{k}() {{ {kernel.name}({", ".join(args)}); }}
extern "C" __attribute__((visibility("default"))) int td_launch_{k}(void** ptrs, const long long* nbytes, long long* scalars,
                             long long gx, long long gy, long long gz, char* message) {{
  td_emu::regions.clear();
  for (int i = 0; i < {len(kernel.buffers)}; ++i) {{
    td_ptrs_{k}[i] = ptrs[i];
    td_emu::regions.push_back({{ptrs[i], nbytes[i], td_names_{k}[i]}});
  }}
  for (int j = 0; j < {len(kernel.scalars)}; ++j) td_scalars_{k}[j] = scalars[j];
  int rc = td_emu::launch(gx, gy, gz, {kernel.block[0]}, {kernel.block[1]}, {kernel.block[2]},
                          td_entry_{k});
  if (rc) std::snprintf(message, 512, "%s", td_emu::message);
  return rc;
}}""")
        names = ", ".join(f'"{b.name}"' for b in kernel.buffers) or '""'
        out[-1] = f"static const char* td_names_{k}[] = {{{names}}};" + out[-1]
    return "\n".join(out)


@functools.lru_cache(maxsize=None)
def _compiler() -> str:
    for cxx in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cxx and shutil.which(cxx):
            return cxx
    raise BuildError("emulating CUDA kernels needs a C++ compiler (g++ or clang++)")


def compile_emulator(func: n.PrimFunc, plan: HostPlan) -> Path:
    """The host shared library of ``func``'s kernels (cached on disk by source hash)."""
    source = (f'#include "{_HEADER}"\n' + codegen.generate(func, checked=True, plan=plan)
              + _wrapper(plan))
    # hidden symbols bound within the library: every emulator library defines the same
    # kernel names and td_emu state, and none may ever resolve to another's
    flags = ["-std=c++17", "-O1", "-shared", "-fPIC", "-fno-strict-aliasing", "-fno-gnu-unique",
             "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-Wl,-Bsymbolic", "-w"]
    key = hashlib.sha256((source + _HEADER.read_text() + " ".join(flags)).encode()).hexdigest()
    path = cache.cache_dir() / "emulate" / f"{key}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.cpp"
        src.write_text(source)
        out = Path(tmp) / "kernel.so"
        cmd = [_compiler(), *flags, "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"the emulator could not compile the generated CUDA C:\n"
                             f"{proc.stderr[-4000:]}")
        os.replace(out, path)
    return path


class Emulator:
    """The kernels of one CUDA module, loaded for the host."""

    def __init__(self, func: n.PrimFunc):
        self.func = func
        self.plan = host_plan(func)
        self.lib = ctypes.CDLL(str(compile_emulator(func, self.plan)))
        self.launchers = []
        for k in range(len(self.plan.kernels)):
            fn = getattr(self.lib, f"td_launch_{k}")
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong,
                           ctypes.c_char_p]
            self.launchers.append(fn)

    def run(self, buffers: dict, scalars: dict):
        """``buffers``: id(Buffer) -> numpy array for every parameter; ``scalars``:
        Var -> int. Allocates the intermediates, then launches every kernel in order."""
        arrays = dict(buffers)
        for temp in self.plan.temps:
            size = evaluate(temp.extent, scalars)
            arrays[id(temp.buffer)] = np.zeros(size, _numpy_dtype(temp.buffer.dtype))
        for kernel, launch in zip(self.plan.kernels, self.launchers):
            bufs = [arrays[id(b)] for b in kernel.buffers]
            ptrs = (ctypes.c_void_p * max(1, len(bufs)))(*[a.ctypes.data for a in bufs])
            nbytes = (ctypes.c_longlong * max(1, len(bufs)))(*[a.nbytes for a in bufs])
            vals = (ctypes.c_longlong * max(1, len(kernel.scalars)))(
                *[int(scalars[v]) for v in kernel.scalars])
            grid = [evaluate(g, scalars) for g in kernel.grid]
            if min(grid) <= 0:
                continue  # an empty grid launches nothing
            message = ctypes.create_string_buffer(512)
            rc = launch(ptrs, nbytes, vals, *grid, message)
            if rc:
                raise EmulationError(f"{kernel.name}: {message.value.decode()}")


def _numpy_dtype(dtype: str):
    return np.dtype("uint16") if dtype == "bfloat16" else np.dtype(dt.numpy_name(dtype))


def emulate(module, *arrays):
    """Run a module built for ``target="cuda"`` on numpy arrays, on the CPU."""
    return module.emulate(*arrays)
