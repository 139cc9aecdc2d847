"""Run a CUDA module's generated kernels on the CPU, to test them without a GPU.

The CUDA C that ``codegen`` writes for the GPU is compiled for the host by g++ together
with ``emulate.h``, which gives CUDA's built-ins their meaning: blocks run one after
another, the threads of a block are fibers that meet at ``__syncthreads()`` and, a warp's
lanes, at warp intrinsics; shared memory is one copy per block. The emulator checks what
a GPU would punish: accesses out of bounds (a vector access in every element) or
misaligned, races on shared memory between barriers, barriers and warp intrinsics not
every thread takes part in; and it poisons uninitialized memory (NaN, 0xCD bytes). The
only differences from the GPU's source are that accesses are written ``TD_AT(buf, i)``
and the like, shared arrays get a shadow (``TD_SHARED_STATE``) and local ones poison.

    f = td.build(s, [A, B, C], target="cuda -arch=sm_90")
    f.emulate(a, b, c)                    # numpy arrays; outputs written in place
    f.emulate(a, b, c, seed=7)            # replay one order of the threads
    f.emulate(a, b, c, order="sequential", warp_lockstep=True)

Order: by default the blocks, and the threads of a block between two barriers, run in
an order drawn from a seed — ``seed=``, else the environment's ``TENSORDSL_EMU_SEED``,
else a fresh random one — so a kernel that depends on the order (a missing barrier)
gives different results from run to run. The seed is in every ``EmulationError``
(``.seed``) and in ``last_seed`` after each run. ``order="sequential"`` runs threads and
blocks by index. ``warp_lockstep=True`` runs each warp's lanes in lock-step (they take
turns at every shared-memory access), for warp-synchronous code.

``count_banks=True`` also counts shared-memory bank conflicts (``emulate_banks.h``) and
returns ``SharedTraffic(requests, wavefronts, matrix_requests, matrix_wavefronts)``:
warp-wide shared accesses and the wavefronts they take (1 per request when conflict-free
for 4-byte accesses), and apart the 8x8 matrices of 16-bit tensor-core tiles read by
ldmatrix and theirs (1 per matrix when conflict-free).

``emulate_source`` runs hand-written CUDA C the same way (tests of the emulator itself).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from targets import cache
from tensordsl.errors import BuildError, TensorDSLError
from tensordsl.ir import dtype as dt
from tensordsl.ir import nodes as n
from tensordsl.nd import aligned_numpy

from . import codegen, tma
from .plan import HostPlan, evaluate, host_plan

_HEADER = Path(__file__).with_name("emulate.h")   # includes emulate_*.h beside it
SEED_VARIABLE = "TENSORDSL_EMU_SEED"
ORDERS = ("random", "sequential")

last_seed: int | None = None
"""The seed of the latest emulated run (``None`` before any)."""


@dataclass(frozen=True)
class SharedTraffic:
    """Warp-wide shared-memory accesses of a run and the wavefronts they took; apart,
    the 8x8 matrices the tensor cores' tiles are read in (ldmatrix) and theirs."""
    requests: int
    wavefronts: int
    matrix_requests: int = 0
    matrix_wavefronts: int = 0

    @property
    def wavefronts_per_request(self) -> float:
        return self.wavefronts / self.requests if self.requests else 0.0

    @property
    def wavefronts_per_matrix(self) -> float:
        """1.0 when the tensor-core tiles are read free of bank conflicts."""
        return self.matrix_wavefronts / self.matrix_requests if self.matrix_requests else 0.0


class EmulationError(TensorDSLError, RuntimeError):
    """An emulated kernel went wrong: an access out of bounds or misaligned, a race on
    shared memory, a barrier or a warp intrinsic not every thread reached as it must.
    ``seed`` is the seed of the run (``None`` in sequential order)."""

    def __init__(self, message: str, seed: int | None = None):
        super().__init__(message)
        self.seed = seed


def choose_seed(seed: int | None = None) -> int:
    """``seed`` if given, else ``TENSORDSL_EMU_SEED`` if set, else a fresh random one."""
    if seed is not None:
        return int(seed)
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if text:
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError(f"{SEED_VARIABLE} must be an integer, got {text!r}") from None
    return random.SystemRandom().randrange(2**32)


def _launcher(k: int, call: str, names: list[str], nscalars: int, block, nmaps: int = 0) -> str:
    """``td_launch_<k>``, the C entry point that runs kernel call ``call`` on a grid."""
    quoted = ", ".join(f'"{name}"' for name in names) or '""'
    return f"""
static const char* td_names_{k}[] = {{{quoted}}};
static void* td_ptrs_{k}[{max(1, len(names))}];
static long long td_scalars_{k}[{max(1, nscalars)}];
static void* td_maps_{k}[{max(1, nmaps)}];
static void td_entry_{k}() {{ {call}; }}
extern "C" __attribute__((visibility("default"))) int td_launch_{k}(
    void** ptrs, const long long* nbytes, long long* scalars, void** maps, long long gx,
    long long gy, long long gz, unsigned long long seed, int flags, char* message) {{
  td_emu::regions.clear();
  for (int i = 0; i < {len(names)}; ++i) {{
    td_ptrs_{k}[i] = ptrs[i];
    td_emu::regions.push_back({{ptrs[i], nbytes[i], td_names_{k}[i]}});
  }}
  for (int j = 0; j < {nscalars}; ++j) td_scalars_{k}[j] = scalars[j];
  for (int j = 0; j < {nmaps}; ++j) td_maps_{k}[j] = maps[j];
  int rc = td_emu::launch(gx, gy, gz, {block[0]}, {block[1]}, {block[2]}, td_entry_{k},
                          seed, flags);
  if (rc) std::snprintf(message, 512, "%s", td_emu::message);
  return rc;
}}"""


def _wrapper(plan: HostPlan, maps: list) -> str:
    """The launchers of ``plan``'s kernels; ``maps[k]``: kernel k's tensor maps (the
    TMA version's extra parameters, where it is compiled)."""
    out = []
    for k, kernel in enumerate(plan.kernels):
        args = [f"({codegen.c_type(b.dtype)}*)td_ptrs_{k}[{i}]"
                for i, b in enumerate(kernel.buffers)]
        args += [f"td_scalars_{k}[{j}]" for j in range(len(kernel.scalars))]
        args += [f"*(const td_tensor_map*)td_maps_{k}[{j}]" for j in range(len(maps[k]))]
        out.append(_launcher(k, f"{kernel.name}({', '.join(args)})",
                             [b.name for b in kernel.buffers], len(kernel.scalars),
                             kernel.block, len(maps[k])))
    return "\n".join(out)


def _map_words(m: tma.TensorMap, array: np.ndarray, scalars: dict) -> np.ndarray:
    """The emulator's ``td_tensor_map`` of ``m`` over ``array`` (what the GPU's launch
    encodes with ``cuTensorMapEncodeTiled``): innermost dimension first."""
    shape = [evaluate(d, scalars) for d in m.src.shape]
    dims, strides = tma.map_geometry(m, shape, array.ctypes.data)
    pad = (lambda v: list(v) + [0] * (5 - len(v)))
    return np.array([array.ctypes.data, m.rank, m.element_bytes, m.swizzle] + pad(dims) +
                    pad([m.element_bytes] + strides) + pad(m.box[::-1]), dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _compiler() -> str:
    for cxx in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cxx and shutil.which(cxx):
            return cxx
    raise BuildError("emulating CUDA kernels needs a C++ compiler (g++ or clang++)")


def compile_source(source: str) -> Path:
    """The host shared library of ``source`` (CUDA C with its launchers) compiled with
    ``emulate.h``, cached on disk by the hash of the source and the headers."""
    source = f'#include "{_HEADER}"\n' + source
    # hidden symbols bound within the library: every emulator library defines the same
    # kernel names and td_emu state, and none may ever resolve to another's
    flags = ["-std=c++17", "-O1", "-shared", "-fPIC", "-fno-strict-aliasing", "-fno-gnu-unique",
             "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-Wl,-Bsymbolic", "-w"]
    headers = "".join(h.read_text() for h in sorted(_HEADER.parent.glob("emulate*.h")))
    key = hashlib.sha256((source + headers + " ".join(flags)).encode()).hexdigest()
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


def compile_emulator(func: n.PrimFunc, plan: HostPlan, arch: str | None = None) -> Path:
    """The host shared library of ``func``'s kernels (as built for ``arch``)."""
    return compile_source(codegen.generate(func, checked=True, plan=plan, arch=arch) +
                          _wrapper(plan, _tensor_maps(plan, arch)))


def _tensor_maps(plan: HostPlan, arch: str | None) -> list:
    return [tma.tensor_maps(k.body) if tma.compiled_for(arch) else [] for k in plan.kernels]


class _Library:
    """An emulator library loaded: ``launch(k, ...)`` runs its kernel ``k``."""

    def __init__(self, path: Path, count: int):
        try:
            self.lib = ctypes.CDLL(str(path))
        except OSError as err:      # a device function the emulator does not model
            raise BuildError(f"the emulator cannot load the kernels: {err}") from None
        self.launchers = []
        for k in range(count):
            fn = getattr(self.lib, f"td_launch_{k}")
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong,
                           ctypes.c_ulonglong, ctypes.c_int, ctypes.c_char_p]
            self.launchers.append(fn)
        self.lib.td_bank_reset.argtypes = [ctypes.c_int]
        self.lib.td_bank_counts.argtypes = [ctypes.c_void_p]

    def count_banks(self, enable: bool):
        """Start counting (or not) shared-memory requests and wavefronts afresh."""
        self.lib.td_bank_reset(int(enable))

    def bank_counts(self) -> SharedTraffic:
        out = (ctypes.c_longlong * 4)()
        self.lib.td_bank_counts(out)
        return SharedTraffic(*(int(v) for v in out))

    def launch(self, k: int, name: str, arrays: list, scalars: list, grid, seed: int,
               order: str, warp_lockstep: bool, maps: list = ()):
        ptrs = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        map_ptrs = (ctypes.c_void_p * max(1, len(maps)))(*[m.ctypes.data for m in maps])
        nbytes = (ctypes.c_longlong * max(1, len(arrays)))(*[a.nbytes for a in arrays])
        vals = (ctypes.c_longlong * max(1, len(scalars)))(*[int(v) for v in scalars])
        # each kernel of a run draws its order from its own stream of the run's seed
        stream = (seed + k * 0x9E3779B97F4A7C15) % 2**64
        flags = (order == "random") | (2 if warp_lockstep else 0)
        message = ctypes.create_string_buffer(512)
        if self.launchers[k](ptrs, nbytes, vals, map_ptrs, *grid, stream, flags, message):
            raise EmulationError(f"{name}: {message.value.decode()} "
                                 f"({_replay_hint(seed, order)})",
                                 seed if order == "random" else None)


def _replay_hint(seed: int, order: str) -> str:
    if order == "sequential":
        return "emulated in sequential order"
    return (f"emulated with seed {seed}; replay with {SEED_VARIABLE}={seed} or "
            f"emulate(..., seed={seed})")


def _start_run(seed, order: str) -> int:
    global last_seed
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    last_seed = choose_seed(seed)
    return last_seed


class Emulator:
    """The kernels of one CUDA module, loaded for the host."""

    def __init__(self, func: n.PrimFunc, arch: str | None = None):
        self.func = func
        self.plan = host_plan(func)
        self.maps = _tensor_maps(self.plan, arch)
        self.library = _Library(compile_emulator(func, self.plan, arch),
                                len(self.plan.kernels))

    def run(self, buffers: dict, scalars: dict, *, seed: int | None = None,
            order: str = "random", warp_lockstep: bool = False, count_banks: bool = False):
        """``buffers``: id(Buffer) -> numpy array for every parameter; ``scalars``:
        Var -> int. Allocates the intermediates (poisoned), then launches every kernel
        in order. ``seed``, ``order``, ``warp_lockstep``, ``count_banks``: see the
        module's docstring (with ``count_banks``, returns the ``SharedTraffic``)."""
        seed = _start_run(seed, order)
        self.library.count_banks(count_banks)
        arrays = dict(buffers)
        for temp in self.plan.temps:
            size = evaluate(temp.extent, scalars)
            arrays[id(temp.buffer)] = poisoned(size, _numpy_dtype(temp.buffer.dtype),
                                               temp.buffer.dtype)
        for k, kernel in enumerate(self.plan.kernels):
            grid = [evaluate(g, scalars) for g in kernel.grid]
            if min(grid) <= 0:
                continue  # an empty grid launches nothing
            maps = [_map_words(m, arrays[id(m.src)], scalars) for m in self.maps[k]]
            self.library.launch(k, kernel.name, [arrays[id(b)] for b in kernel.buffers],
                                [scalars[v] for v in kernel.scalars], grid, seed, order,
                                warp_lockstep, maps)
        return self.library.bank_counts() if count_banks else None


def poisoned(size: int, np_dtype, dtype: str) -> np.ndarray:
    """A fresh 64-byte aligned array as uninitialized GPU memory shows in the emulator:
    NaN for floating point (bfloat16's NaN bits 0x7fff), 0xCD bytes for integers."""
    out = aligned_numpy((size,), np_dtype)
    if dt.element(dtype) == "bfloat16":
        out[...] = 0x7FFF
    elif np.issubdtype(out.dtype, np.floating):
        out[...] = np.nan
    else:
        out.view(np.uint8)[...] = 0xCD
    return out


def _numpy_dtype(dtype: str):
    return np.dtype("uint16") if dtype == "bfloat16" else np.dtype(dt.numpy_name(dtype))


def emulate(module, *arrays, **options):
    """Run a module built for ``target="cuda"`` on numpy arrays, on the CPU."""
    return module.emulate(*arrays, **options)


def emulate_source(source: str, kernel: str, grid, block, *arrays, seed: int | None = None,
                   order: str = "random", warp_lockstep: bool = False,
                   count_banks: bool = False):
    """Run hand-written CUDA C: ``kernel(T0* arg0, T1* arg1, ...)``, one pointer per
    numpy array (its elements' C type), on ``grid`` x ``block`` (3-tuples). Accesses
    written ``TD_AT(argN, i)`` (and the other macros of ``emulate.h``) are checked."""
    if not all(a.flags.c_contiguous for a in arrays):
        raise ValueError("emulate_source takes C-contiguous arrays")
    types = [codegen.c_type(a.dtype.name) for a in arrays]
    call = f"{kernel}({', '.join(f'({t}*)td_ptrs_0[{i}]' for i, t in enumerate(types))})"
    names = [f"arg{i}" for i in range(len(arrays))]
    library = _Library(compile_source(source + _launcher(0, call, names, 0, block)), 1)
    seed = _start_run(seed, order)
    library.count_banks(count_banks)
    library.launch(0, kernel, list(arrays), [], grid, seed, order, warp_lockstep)
    return library.bank_counts() if count_banks else None
