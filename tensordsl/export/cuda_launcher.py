"""Exported GPU kernels: the CUBIN as a byte array and a C launcher over the CUDA driver API.

What ``targets/cuda/runtime.py: CudaModule.__call__`` does in Python, one C function per
function does with the driver API: check the sizes and the pointers' alignment, load the
CUBIN once per CUDA context (``cuModuleLoadData``, ``cuModuleGetFunction``), allocate the
intermediate buffers on the stream (``cuMemAllocAsync``), launch each kernel of the host
plan (``targets/cuda/plan.py``) with its grid (evaluated from the sizes) and block
(``cuLaunchKernel``), and free the buffers on the stream. The launch is asynchronous,
unless the kernels check indices read from data: then the entry waits for the stream to
read the error back.

Compiling the launcher needs ``cuda.h`` only (a CUDA toolkit, found as ``find_cuda_include``
says), never a GPU. Linking a shared library needs ``libcuda``: the driver's, or the
toolkit's stub (``lib64/stubs/libcuda.so``); without either, the launcher is exported as an
object or a static archive, and the program that uses it links ``-lcuda`` where the driver
is installed.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError
from ..ir import dtype as dt
from . import toolchain
from .abi import STATUS_CODE, kernel_abi, size_names
from .c_expr import C_HELPERS, c_byte_array, c_expr, size_checks


@dataclass
class CudaLink:
    include_dirs: list = field(default_factory=list)
    library_dirs: list = field(default_factory=list)
    libraries: list = field(default_factory=list)
    note: str = ""


def _cuda_roots() -> list[Path]:
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(str(Path(nvcc).resolve().parent.parent))
    roots.append("/usr/local/cuda")
    return [Path(r) for r in roots if r]


def find_cuda_include() -> Path:
    """The folder holding ``cuda.h``: ``$CUDA_HOME``/``$CUDA_PATH``, the toolkit of the
    ``nvcc`` on ``PATH``, ``/usr/local/cuda``, or NVIDIA's pip wheels (``nvidia/*/include``)."""
    for root in _cuda_roots():
        if (root / "include" / "cuda.h").exists():
            return root / "include"
    try:
        import nvidia
        for folder in nvidia.__path__:
            for header in sorted(Path(folder).glob("*/include/cuda.h")):
                return header.parent
    except ImportError:
        pass
    raise BuildError("export: the GPU launcher needs cuda.h, from a CUDA toolkit; none was "
                     "found (set CUDA_HOME)")


def find_libcuda() -> Path | None:
    """A folder with ``libcuda.so`` to link against (the toolkit's stub, or the driver's),
    or None."""
    candidates = []
    for root in _cuda_roots():
        candidates += [root / "lib64" / "stubs", root / "lib" / "stubs", root / "lib64",
                       root / "targets" / "x86_64-linux" / "lib" / "stubs"]
    candidates += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib64")]
    for folder in candidates:
        if (folder / "libcuda.so").exists():
            return folder
    return None


def arch(f) -> str:
    from targets.cuda import arch_of
    return arch_of(f.target)


_RUNTIME = """\
#include <cuda.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>

#define TD_EXPORT __attribute__((visibility("default")))
{helpers}
/* A CUBIN and its kernels, loaded once per CUDA context. */
typedef struct td_loaded {{
    CUcontext context;
    CUmodule module;
    struct td_loaded* next;
    CUfunction functions[];
}} td_loaded;

typedef struct {{
    const unsigned char* image;
    int n_kernels;
    const char* const* names;
    const int* dynamic_shared;   /* bytes each kernel takes beyond the static 48 KiB */
    pthread_mutex_t lock;
    td_loaded* loaded;
}} td_cuda_module;

/* The kernels of `m` in the calling thread's current context, loading them there first. */
static CUresult td_functions(td_cuda_module* m, CUfunction** out) {{
    CUcontext context = NULL;
    CUresult r = cuCtxGetCurrent(&context);
    if (r != CUDA_SUCCESS) return r;
    if (!context) return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&m->lock);
    td_loaded* l = m->loaded;
    while (l && l->context != context) l = l->next;
    if (!l) {{
        l = (td_loaded*)calloc(1, sizeof *l + (size_t)m->n_kernels * sizeof(CUfunction));
        r = l ? cuModuleLoadData(&l->module, m->image) : CUDA_ERROR_OUT_OF_MEMORY;
        for (int k = 0; r == CUDA_SUCCESS && k < m->n_kernels; k++) {{
            r = cuModuleGetFunction(&l->functions[k], l->module, m->names[k]);
            if (r == CUDA_SUCCESS && m->dynamic_shared[k])
                r = cuFuncSetAttribute(l->functions[k],
                                       CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                       m->dynamic_shared[k]);
        }}
        if (r != CUDA_SUCCESS) {{
            if (l && l->module) cuModuleUnload(l->module);
            free(l);
            pthread_mutex_unlock(&m->lock);
            return r;
        }}
        l->context = context;
        l->next = m->loaded;
        m->loaded = l;
    }}
    pthread_mutex_unlock(&m->lock);
    *out = l->functions;
    return CUDA_SUCCESS;
}}
"""


def launcher_source(index: int, abi, f) -> str:
    """The CUBIN of ``f`` and the entry ``abi.symbol`` launching its kernels."""
    func, plan = f.func, f.plan
    names = size_names(f, abi)
    ok, bad_sizes = STATUS_CODE["TD_STATUS_OK"], STATUS_CODE["TD_STATUS_BAD_SIZES"]
    cuda_error = STATUS_CODE["TD_STATUS_CUDA_ERROR"]
    kernel_names = ", ".join(f'"{k.name}"' for k in plan.kernels)
    dynamic = ", ".join(str(k.dynamic_shared) for k in plan.kernels)
    lines = [f"static const unsigned char td_cubin_{index}[] = {c_byte_array(f.cubin)};",
             f"static const char* const td_names_{index}[] = {{{kernel_names or '0'}}};",
             f"static const int td_dynamic_shared_{index}[] = {{{dynamic or '0'}}};",
             f"static td_cuda_module td_module_{index} = {{td_cubin_{index}, "
             f"{len(plan.kernels)}, td_names_{index}, td_dynamic_shared_{index}, "
             "PTHREAD_MUTEX_INITIALIZER, 0};"]
    if f.checked_reads:
        lines.append(f"static _Thread_local int64_t td_index_error_{index}[2];")
    lines += ["", f"TD_EXPORT {abi.prototype()} {{"]
    lines += size_checks(f, names, bad_sizes)
    for p, a in zip(f.params, abi.arrays):
        need = 32 if p.name in f._tensor_core_args else 16
        lines.append(f"    if ({a.name} % {need}) return "
                     f"{STATUS_CODE['TD_STATUS_MISALIGNED']};")
    lines += ["    CUfunction* fn;",
              f"    if (td_functions(&td_module_{index}, &fn) != CUDA_SUCCESS) "
              f"return {cuda_error};",
              f"    int32_t status = {ok};"]
    buffers = {id(p): a.name for p, a in zip(func.params, abi.arrays)}
    temps = []
    if f.checked_reads:
        temps.append(("td_error", "16"))
        buffers[id(func.attrs["index_error"])] = "td_error"
    for k, t in enumerate(plan.temps):
        nbytes = f"{c_expr(t.extent, names)} * {max(1, dt.bits(t.buffer.dtype) // 8)}"
        temps.append((f"td_temp{k}", nbytes))
        buffers[id(t.buffer)] = f"td_temp{k}"
    for name, _ in temps:
        lines.append(f"    CUdeviceptr {name} = 0;")
    for name, nbytes in temps:
        lines.append(f"    if (cuMemAllocAsync(&{name}, (size_t)td_max({nbytes}, 1), stream) "
                     f"!= CUDA_SUCCESS) {{ status = {cuda_error}; goto done; }}")
    if f.checked_reads:
        lines.append("    if (cuMemsetD8Async(td_error, 0, 16, stream) != CUDA_SUCCESS) "
                     f"{{ status = {cuda_error}; goto done; }}")
    from targets.cuda import tma
    with_maps = tma.compiled_for(arch(f))
    for k, kernel in enumerate(plan.kernels):
        grid = [c_expr(g, names) for g in kernel.grid]
        args = [f"&{buffers[id(b)]}" for b in kernel.buffers]
        scalars = [f"(long long){names[v]}" for v in kernel.scalars]
        lines += ["    {",
                  f"        int64_t gx = {grid[0]}, gy = {grid[1]}, gz = {grid[2]};"]
        for j, s in enumerate(scalars):
            lines.append(f"        long long s{j} = {s};")
            args.append(f"&s{j}")
        for j, m in enumerate(tma.tensor_maps(kernel.body) if with_maps else []):
            lines += _tensor_map_lines(j, m, buffers[id(m.src)], names, cuda_error)
            args.append(f"&map{j}")
        lines += [f"        void* args[] = {{{', '.join(args) or '0'}}};",
                  "        if (gx > 0 && gy > 0 && gz > 0 &&",
                  f"            cuLaunchKernel(fn[{k}], (unsigned)gx, (unsigned)gy, "
                  f"(unsigned)gz, {kernel.block[0]}, {kernel.block[1]}, {kernel.block[2]}, "
                  f"{kernel.dynamic_shared}, stream, args, NULL) != CUDA_SUCCESS) {{",
                  f"            status = {cuda_error};",
                  "            goto done;",
                  "        }",
                  "    }"]
    if f.checked_reads:
        lines += [f"    if (cuMemcpyDtoHAsync(td_index_error_{index}, td_error, 16, stream) "
                  "!= CUDA_SUCCESS ||",
                  "        cuStreamSynchronize(stream) != CUDA_SUCCESS) "
                  f"{{ status = {cuda_error}; goto done; }}",
                  f"    if (td_index_error_{index}[0] != 0) "
                  f"status = {STATUS_CODE['TD_STATUS_INDEX_OUT_OF_BOUNDS']};"]
    lines.append("done:")
    for name, _ in reversed(temps):
        lines.append(f"    if ({name}) cuMemFreeAsync({name}, stream);")
    lines += ["    return status;", "}", ""]
    if f.checked_reads:
        lines += [f"TD_EXPORT {abi.index_error_prototype()} {{",
                  f"    *code = td_index_error_{index}[0];",
                  f"    *index = td_index_error_{index}[1];",
                  "}", ""]
    return "\n".join(lines)


def _tensor_map_lines(j: int, m, pointer: str, names: dict, cuda_error: int) -> list[str]:
    """``CUtensorMap map<j>``, encoded for this call (``targets/cuda/tma.py``): the
    argument's sizes and row strides innermost first, the box, the swizzle. An argument
    the TMA cannot read (rows not 16 bytes apart) fails the encoding: a CUDA error."""
    from targets.cuda import tma
    dims = [f"(cuuint64_t)({c_expr(d, names)})" for d in reversed(m.src.shape)]
    strides, stride = [], str(m.element_bytes)
    for d in dims[:-1]:
        stride = f"{stride} * {d}"
        strides.append(f"(cuuint64_t)({stride})")
    box = ", ".join(str(b) for b in reversed(m.box))
    swizzle = "CU_TENSOR_MAP_SWIZZLE_128B" if m.swizzle else "CU_TENSOR_MAP_SWIZZLE_NONE"
    return [f"        CUtensorMap map{j};",
            f"        cuuint64_t map{j}_dims[] = {{{', '.join(dims)}}};",
            f"        cuuint64_t map{j}_strides[] = {{{', '.join(strides) or '0'}}};",
            f"        cuuint32_t map{j}_box[] = {{{box}}}, map{j}_steps[] = "
            f"{{{', '.join(['1'] * m.rank)}}};",
            f"        if (gx > 0 && gy > 0 && gz > 0 && cuTensorMapEncodeTiled(&map{j}, "
            f"CU_TENSOR_MAP_DATA_TYPE_{tma.DATA_TYPES[m.src.dtype]}, {m.rank}, "
            f"(void*){pointer}, map{j}_dims, map{j}_strides, map{j}_box, map{j}_steps, "
            f"CU_TENSOR_MAP_INTERLEAVE_NONE, {swizzle}, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, "
            "CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {",
            f"            status = {cuda_error};",
            "            goto done;",
            "        }"]


def build(gpu, tmp: Path):
    """``(abis, object path, CudaLink)`` of the GPU functions ``[(name, f)]``."""
    include = find_cuda_include()
    abis = [kernel_abi(name, f, device="cuda") for name, f in gpu]
    parts = [_RUNTIME.format(helpers=C_HELPERS)]
    for index, ((name, f), abi) in enumerate(zip(gpu, abis)):
        parts.append(launcher_source(index, abi, f))
    source = tmp / "launchers.c"
    source.write_text("\n".join(parts))
    obj = tmp / "launchers.o"
    toolchain.compile_c(str(source), str(obj), include_dirs=[str(include)])
    libcuda = find_libcuda()
    if libcuda is None:
        link = CudaLink([str(include)], [], [],
                        "no libcuda (driver or stub) was found to link a shared library with")
    else:
        link = CudaLink([str(include)], [str(libcuda)], ["cuda"])
    return abis, obj, link
