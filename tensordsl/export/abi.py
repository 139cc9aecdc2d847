"""The C interface of an exported kernel, and the header that declares it.

One C function per kernel, ``int32_t tensordsl_<name>(arrays..., sizes...)``:

- the arrays in the order of the kernel's arguments (``td.build(s, [A, B, C])``: A, B,
  C), each a pointer to its first element, row-major and C-contiguous (the last index
  varies fastest), aligned at least to its element size; inputs are ``const``;
- then, as ``int64_t``, each symbolic size (``td.var``) in the order the JIT kernel's
  arguments bind them (first appearance in an argument's shape);
- returns ``0``, or a nonzero ``TD_STATUS_*`` code (the header lists them).

A GPU kernel's entry takes device pointers (``CUdeviceptr``) and a ``CUstream`` first.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.printer import print_ir
from .c_expr import c_identifier

SYMBOL_PREFIX = "tensordsl_"

# status codes every entry returns (documented in the header)
STATUS = (
    ("TD_STATUS_OK", 0, "success"),
    ("TD_STATUS_OUT_OF_MEMORY", 1, "a temporary buffer could not be allocated"),
    ("TD_STATUS_INDEX_OUT_OF_BOUNDS", 2,
     "an index the kernel read from data was outside a tensor (nothing is read there)"),
    ("TD_STATUS_BAD_SIZES", 3,
     "the sizes make the kernel read outside its inputs; nothing ran"),
    ("TD_STATUS_CUDA_ERROR", 4, "a CUDA driver call failed (GPU kernels only)"),
    ("TD_STATUS_MISALIGNED", 5,
     "a device pointer is not on 16 bytes (32 for tensor-core operands; GPU kernels only)"),
)
STATUS_CODE = {name: code for name, code, _ in STATUS}

_C_TYPES = {
    "bool": ("uint8_t", "bool, one byte: 0 or 1"),
    "int8": ("int8_t", ""), "uint8": ("uint8_t", ""), "int16": ("int16_t", ""),
    "int32": ("int32_t", ""), "int64": ("int64_t", ""),
    "float16": ("uint16_t", "IEEE half-precision bits"),
    "bfloat16": ("uint16_t", "bfloat16 bits: the upper half of a float"),
    "float32": ("float", ""), "float64": ("double", ""),
}


def c_type(dtype: str) -> tuple[str, str]:
    """``(C element type, note)`` of a tensor of ``dtype``."""
    return _C_TYPES[dt.element(dtype)]


@dataclass(frozen=True)
class ArrayArg:
    name: str          # C parameter name
    dtype: str
    ctype: str
    shape: tuple       # each dimension as text: "64", "n", "(n + 2)"
    is_output: bool


@dataclass(frozen=True)
class KernelABI:
    name: str                      # the export name
    arrays: tuple[ArrayArg, ...]
    sizes: tuple[str, ...]         # C names of the int64_t size arguments
    device: str = "cpu"            # "cpu" or "cuda"
    checked_reads: bool = False    # indices read from data, checked as the kernel runs

    @property
    def symbol(self) -> str:
        return SYMBOL_PREFIX + self.name

    def prototype(self) -> str:
        if self.device == "cuda":
            params = ["CUstream stream"] + [f"CUdeviceptr {a.name}" for a in self.arrays]
        else:
            params = [f"{'' if a.is_output else 'const '}{a.ctype}* {a.name}"
                      for a in self.arrays]
        params += [f"int64_t {s}" for s in self.sizes]
        return f"int32_t {self.symbol}({', '.join(params) or 'void'})"

    def index_error_prototype(self) -> str:
        """After TD_STATUS_INDEX_OUT_OF_BOUNDS: which checked read failed, at what index."""
        return f"void {self.symbol}_index_error(int64_t* code, int64_t* index)"


def size_vars(module) -> list[n.Var]:
    """The symbolic sizes a caller passes: the module's scalars but the team size, which
    the entry decides itself."""
    return [v for v in module.scalars if v is not module.team_size_var]


def kernel_abi(name: str, module, device: str = "cpu") -> KernelABI:
    """The C interface of ``module`` (a ``td.build`` result) exported as ``name``."""
    names = {}
    used: set[str] = set()

    def unique(ident: str) -> str:
        while ident in used:
            ident += "_"
        used.add(ident)
        return ident

    arrays = []
    for p in module.params:
        ctype, _ = c_type(p.dtype)
        shape = tuple(print_ir(d) for d in p.shape)
        arrays.append(ArrayArg(unique(c_identifier(p.name)), p.dtype, ctype, shape,
                               p.is_output))
    for v in size_vars(module):
        names[v] = unique(c_identifier(v.name))
    return KernelABI(name, tuple(arrays), tuple(names[v] for v in size_vars(module)), device,
                     bool(module.checked_reads))


def size_names(module, abi: KernelABI) -> dict:
    """Each size variable of ``module`` -> its C parameter name in ``abi``."""
    return dict(zip(size_vars(module), abi.sizes))


_ABI_TEXT = """\
/*
 * {guard_name}: kernels exported by tensordsl {version} ({description}).
 *
 * ABI (every function below):
 *   - Returns int32_t: 0 on success, else one of the TD_STATUS_* codes below.
 *   - Arguments: the kernel's arrays in the order it was built with (td.build(s, [A, B, C])
 *     gives A, B, C), then one int64_t per symbolic size (td.var), in order of first
 *     appearance in the arrays' shapes. Each array's shape is given in its comment.
 *   - Layout: row-major, C-contiguous (the last index varies fastest), no padding.
 *     Pointers must be aligned to the element size (16- or 64-byte alignment is faster,
 *     not required). Outputs must not overlap any other argument. Inputs are const.
 *   - dtypes: float32 = float, float64 = double, intN_t/uint8_t as named, bool = one byte
 *     (0 or 1), float16/bfloat16 = their 16 bits in a uint16_t.
 *   - Sizes are not checked against the memory you pass (C cannot know it): pass the
 *     extents of the arrays you allocated. Sizes that would make a kernel read outside its
 *     inputs are refused (TD_STATUS_BAD_SIZES) before anything runs.
{device_text} */
"""

_CPU_TEXT = """\
 *   - CPU code: compiled for the exporting machine's CPU ({cpu}); it may use every
 *     instruction that CPU has (like -march=native), so run it on the same kind of CPU.
 *   - Threads: kernels with parallel loops run them on OpenMP threads (libgomp,
 *     GOMP_parallel), as many as omp_get_max_threads(): set OMP_NUM_THREADS before the
 *     program starts, or call omp_set_num_threads(n) in the calling thread. Link with
 *     -lgomp (the shared library already does). Kernels without parallel loops run on the
 *     calling thread only.{parallel_note}
 *   - Thread-safety: any function may be called from several threads at once, on
 *     distinct outputs. Each calling thread keeps one scratch buffer per kernel that
 *     needs one (reused across calls, freed when the thread exits). One caveat: a kernel
 *     flags a failed heap allocation (TD_STATUS_OUT_OF_MEMORY) in a variable its
 *     concurrent calls share, so under memory exhaustion that status may reach another
 *     of them, or be lost.
"""

_CUDA_TEXT = """\
 *   - GPU kernels take a CUstream (0: the default stream), then CUdeviceptr arrays of the
 *     calling thread's current CUDA context (cuCtxSetCurrent, cuDevicePrimaryCtxRetain),
 *     16-byte aligned (32 for tensor-core operands; cuMemAlloc gives 256). The CUBIN
 *     embedded is for {arch} only; it is loaded (cuModuleLoadData) on the first call in
 *     each context. Kernels run asynchronously on the stream (temporaries are allocated
 *     and freed on it, cuMemAllocAsync); a kernel that checks indices read from data waits
 *     for the stream to read its error back. Link with -lcuda (and -lpthread).
"""


def header(guard_name: str, abis: list[KernelABI], version: str, description: str,
           cpu: str = "", parallel: tuple = (), arch: str = "") -> str:
    """The C header declaring ``abis``: the ABI above each declaration, the status codes,
    and per kernel its arrays' shapes."""
    guard = c_identifier(guard_name).upper() + "_H"
    device_text = ""
    if any(a.device == "cpu" for a in abis):
        note = ("\n *     Parallel here: " + ", ".join(parallel) + ".") if parallel else \
            "\n *     None of these kernels has a parallel loop."
        device_text += _CPU_TEXT.format(cpu=cpu, parallel_note=note)
    if any(a.device == "cuda" for a in abis):
        device_text += _CUDA_TEXT.format(arch=arch)
    lines = [_ABI_TEXT.format(guard_name=guard_name, version=version,
                              description=description, device_text=device_text),
             f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>"]
    if any(a.device == "cuda" for a in abis):
        lines.append("#include <cuda.h>")
    lines += ["", "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    for name, code, text in STATUS:
        lines.append(f"#define {name} {code}  /* {text} */")
    for abi in abis:
        lines += ["", f"/* {abi.name}: {'GPU' if abi.device == 'cuda' else 'CPU'} kernel"]
        for a in abi.arrays:
            role = "output" if a.is_output else "input"
            _, note = c_type(a.dtype)
            lines.append(f" *   {a.name}: {role}, {a.dtype}[{', '.join(a.shape)}]"
                         + (f" ({note})" if note else ""))
        for s in abi.sizes:
            lines.append(f" *   {s}: size")
        lines.append(" */")
        lines.append(abi.prototype() + ";")
        if abi.checked_reads:
            lines += ["/* after TD_STATUS_INDEX_OUT_OF_BOUNDS, on the same thread: the failed "
                      "read's number (1-based)", " * and the index it found */",
                      abi.index_error_prototype() + ";"]
    lines += ["", "#ifdef __cplusplus", "}", "#endif", "", f"#endif  /* {guard} */", ""]
    return "\n".join(lines)
