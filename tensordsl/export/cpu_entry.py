"""The C entries of exported CPU kernels: what the Python runtime does around a JIT call.

The JIT kernel (``targets/llvm/codegen.py``) takes its tensors, then the workspace buffers
the runtime provides (``lower/plan_workspace.py``: large temporaries, one slice per thread
inside parallel loops; ``lower/checked_reads.py``: the two-word index error), then the
sizes and, with per-thread workspace, the team size. ``tensordsl/runtime/module.py`` fills
those in Python; here one C function per kernel fills them the same way:

- the size checks of ``lower/check_bounds.py`` (the reads the sizes decide) before any run;
- the team size from ``omp_get_max_threads()`` (what ``GOMP_parallel(..., 0, ...)`` starts);
- workspace from a per-thread block, allocated on the thread's first call and grown when a
  call needs more, freed by a ``pthread_key`` destructor when the thread exits;
- the status: the kernel's own (1: an allocation failed), then the index error.

Everything is plain C (libc, pthreads, libgomp): nothing from the Python process.
"""
from __future__ import annotations

from ..ir import nodes as n
from .abi import STATUS_CODE, KernelABI, size_names
from .c_expr import C_HELPERS, size_checks

_RUNTIME = """\
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>

#define TD_EXPORT __attribute__((visibility("default")))
#define TD_N_KERNELS {n_kernels}
{openmp}
{helpers}
/* Per thread, one scratch block per kernel: the JIT runtime's workspace buffers. */
typedef struct {{ void* base; size_t bytes; }} td_block;
static pthread_once_t td_scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t td_scratch_key;

static void td_scratch_release(void* blocks) {{
    td_block* b = (td_block*)blocks;
    for (int k = 0; k < TD_N_KERNELS; k++) free(b[k].base);
    free(b);
}}

static void td_scratch_init(void) {{ pthread_key_create(&td_scratch_key, td_scratch_release); }}

/* This thread's block of at least `bytes` (64-byte aligned) for kernel `k`; NULL if out
 * of memory. (Unused where no kernel needs scratch.) */
__attribute__((unused)) static char* td_scratch(int k, size_t bytes) {{
    pthread_once(&td_scratch_once, td_scratch_init);
    td_block* b = (td_block*)pthread_getspecific(td_scratch_key);
    if (!b) {{
        b = (td_block*)calloc(TD_N_KERNELS, sizeof *b);
        if (!b || pthread_setspecific(td_scratch_key, b)) {{ free(b); return NULL; }}
    }}
    if (b[k].bytes < bytes) {{
        free(b[k].base);
        b[k].base = aligned_alloc(64, (bytes + 63) / 64 * 64);
        b[k].bytes = b[k].base ? bytes : 0;
    }}
    return (char*)b[k].base;
}}
"""


def runtime_source(n_kernels: int, openmp: bool) -> str:
    """What every exported CPU library's entries share."""
    return _RUNTIME.format(n_kernels=n_kernels, helpers=C_HELPERS,
                           openmp="int omp_get_max_threads(void);\n" if openmp else "")


def _round64(x: str) -> str:
    return f"(({x} + 63) / 64 * 64)"


def entry_source(index: int, abi: KernelABI, module, hidden_symbol: str) -> str:
    """The C entry ``abi.symbol`` calling the kernel ``hidden_symbol`` of ``module``."""
    func = module.func
    names = size_names(module, abi)
    n_pointers = sum(isinstance(p, n.Buffer) for p in func.params)
    n_scalars = len(func.params) - n_pointers
    decl = ", ".join(["void*"] * n_pointers + ["int64_t"] * n_scalars) or "void"
    lines = [f"int32_t {hidden_symbol}({decl});", "",
             f"TD_EXPORT {abi.prototype()} {{"]
    lines += size_checks(module, names, STATUS_CODE["TD_STATUS_BAD_SIZES"])
    team = module.team_size_var is not None
    if team:
        lines.append("    int64_t team = omp_get_max_threads();")
    workspace = []
    if module.workspace_bytes:
        sizes = [f"(size_t){nbytes}" + (" * (size_t)team" if per_thread else "")
                 for nbytes, per_thread in module.workspace_bytes]
        lines.append(f"    size_t offsets[{len(sizes) + 1}] = {{0}};")
        for k, size in enumerate(sizes):
            lines.append(f"    offsets[{k + 1}] = offsets[{k}] + {_round64(size)};")
        lines.append(f"    char* scratch = td_scratch({index}, offsets[{len(sizes)}]);")
        lines.append(f"    if (!scratch) return {STATUS_CODE['TD_STATUS_OUT_OF_MEMORY']};")
        workspace = [f"scratch + offsets[{k}]" for k in range(len(sizes))]
    error = None
    if module.checked_reads:
        # lower/checked_reads.py puts the index error first among the workspace buffers
        error = "((int64_t*)scratch)"
        lines.append(f"    {error}[0] = 0;")
    args = [a.name for a in abi.arrays] + workspace
    args = [f"(void*)({a})" for a in args]
    args += ["team" if v is module.team_size_var else names[v] for v in module.scalars]
    lines.append(f"    if ({hidden_symbol}({', '.join(args)}) != 0)")
    lines.append(f"        return {STATUS_CODE['TD_STATUS_OUT_OF_MEMORY']};")
    if error:
        lines.append(f"    if ({error}[0] != 0) "
                     f"return {STATUS_CODE['TD_STATUS_INDEX_OUT_OF_BOUNDS']};")
    lines += [f"    return {STATUS_CODE['TD_STATUS_OK']};", "}", ""]
    if error:
        lines += index_error_source(index, abi).splitlines() + [""]
    return "\n".join(lines)


def index_error_source(index: int, abi: KernelABI) -> str:
    """After a call returned TD_STATUS_INDEX_OUT_OF_BOUNDS on this thread: which read
    (``code``, 1-based, in the kernel's list of checked reads) and at what index."""
    return "\n".join([
        f"TD_EXPORT {abi.index_error_prototype()} {{",
        f"    int64_t* error = (int64_t*)td_scratch({index}, 16);",
        "    *code = error ? error[0] : 0;",
        "    *index = error ? error[1] : 0;",
        "}"])
