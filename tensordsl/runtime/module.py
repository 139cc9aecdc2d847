"""A compiled function, callable on numpy arrays in ``args`` order.

Before every call the arguments are checked against the signature: count, type, dtype,
number of dimensions, C-contiguity, alignment, sizes (binding each ``td.var`` from the
first shape it appears in and checking every other use), writability of outputs, and
that no output overlaps another argument. A violation raises ``TypeError`` or
``ValueError`` naming the argument, what was expected and what was given — the kernel
itself never sees a bad pointer.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from ..arith.simplify import simplify_expr
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.visitor import substitute
from . import packed


def max_threads() -> int:
    """How many threads a parallel region may start (OpenMP's nthreads-var)."""
    import ctypes
    import ctypes.util
    for name in ("libgomp.so.1", ctypes.util.find_library("gomp")):
        if name:
            try:
                return max(1, int(ctypes.CDLL(name).omp_get_max_threads()))
            except OSError:
                continue
    return 1


class _Param:
    def __init__(self, buffer: n.Buffer, is_output: bool):
        self.name = buffer.name
        self.dtype = buffer.dtype
        self.np_dtype = np.dtype(dt.numpy_name(buffer.dtype)) \
            if buffer.dtype != "bfloat16" else np.dtype("uint16")
        self.shape = buffer.shape
        self.ndim = len(buffer.shape)
        self.is_output = is_output
        # per dimension: an int (fixed), a Var (bound from the array) or None (derived)
        self.dims = tuple(d.value if isinstance(d, n.IntImm) else d if isinstance(d, n.Var)
                          else None for d in buffer.shape)
        self.derived = any(d is None for d in self.dims)


class Module:
    """``f(*arrays)`` runs the kernel; outputs are written in place."""

    def __init__(self, func: n.PrimFunc, kernel, backend, target, source):
        self.func = func
        self.kernel = kernel
        self.backend, self.target = backend, target
        self._source = source
        outputs = set(map(id, func.outputs))
        workspace = func.attrs.get("workspace", ())
        per_thread = set(map(id, func.attrs.get("per_thread_workspace", ())))
        self.workspace_bytes = [(int(b.shape[0].value) * max(1, dt.bits(b.dtype) // 8),
                                 id(b) in per_thread) for b in workspace]
        self.team_size_var = func.attrs.get("team_size")
        self._workspace = threading.local()
        self.params = [_Param(p, id(p) in outputs) for p in func.params
                       if isinstance(p, n.Buffer) and p.scope != "workspace"]
        self.scalars = [p for p in func.params if isinstance(p, n.Var)]
        self.entry_name = func.name
        self.access_checks = func.attrs.get("access_checks", ())
        self.checked_reads = func.attrs.get("checked_reads", ())

    def get_source(self, kind: str = "ll") -> str:
        """The kernel's source: ``"ll"`` LLVM IR as generated, ``"ll-opt"`` after
        optimization, ``"asm"`` the host assembly."""
        return self.backend.source_text(self._source(), kind, self.target)

    def export_library(self, path, header: bool = True) -> list:
        """Write this function as a C library (``.so``, ``.a`` or ``.o``, by the suffix of
        ``path``) and a header beside it (TVM's ``export_library``; ``td.export`` for
        several functions, ``tensordsl/export/``). Returns the paths written."""
        from ..export import export
        return export({self.entry_name: self}, path, header=header)

    def __call__(self, *arrays):
        pointers, sizes = self.check_args(arrays)
        workspace = self.workspace_pointers()
        if self.team_size_var is not None:
            sizes[self.scalars.index(self.team_size_var)] = self._workspace.team_size
        if self.checked_reads:
            error = (ctypes.c_int64 * 2).from_address(workspace[0])
            error[0] = 0
        status = self.kernel(*pointers, *workspace, *sizes)
        packed.raise_pending()              # an exception in a td.call_packed function
        if status != 0:
            raise MemoryError(f"{self.entry_name}: a temporary buffer could not be allocated")
        if self.checked_reads:
            self.raise_index_error(error[0], error[1], arrays)

    def bound_call(self, sizes: dict | None = None, objects: tuple | None = None):
        """``(cfunc, trailing)``: ``cfunc(*pointers, *trailing)`` runs the kernel on this
        thread with arrays the caller has already checked (``td.build_program``'s kernels,
        whose shapes were fixed when they were built; a sparse kernel whose symbolic sizes
        — the numbers of stored entries — the caller gives by name in ``sizes``),
        returning the status; None when a call needs more than that (other sizes bound
        from the arrays, checked reads). The reads whose bounds depend on the sizes are
        checked here, once (a ``ValueError`` if one is out of bounds).

        ``objects`` (a flag per array argument): the flagged arguments are passed as the
        numpy arrays themselves, not their addresses (cheaper from Python, see
        ``targets/llvm/runtime.py: Kernel.object_entry``); None when the backend cannot."""
        cfunc = getattr(self.kernel, "cfunc", None)
        if objects is not None and cfunc is not None:
            workspace = (False,) * len(self.workspace_bytes)
            by_object = getattr(self.kernel, "object_entry", lambda flags: None)
            cfunc = by_object(tuple(map(bool, objects)) + workspace)
        sizes = sizes or {}
        if cfunc is None or self.checked_reads or \
                any(v is not self.team_size_var and v.name not in sizes
                    for v in self.scalars):
            return None
        if self.access_checks:
            # the reads whose bounds depend on the sizes: checked once, for these sizes
            self._check_accesses({v: int(sizes[v.name]) for v in self.scalars
                                  if v is not self.team_size_var})
        workspace = self.workspace_pointers()
        values = [self._workspace.team_size if v is self.team_size_var else int(sizes[v.name])
                  for v in self.scalars]
        return cfunc, (*workspace, *values)

    def packed_call(self, pointers: list, sizes: dict | None, objects: tuple):
        """``(cfunc, block)``: ``cfunc(ctypes.addressof(block), *arrays)`` runs the kernel
        with its unflagged array arguments fixed to ``pointers`` (in order) and its sizes
        to ``sizes``, in ``block`` (keep it alive), the arrays flagged in ``objects``
        passed as themselves — for a caller that runs one kernel on the same fixed
        arrays many times (``bound_call``'s contract otherwise); None where
        ``bound_call`` gives None or the backend has no such entry."""
        bound = self.bound_call(sizes, objects)
        entry = getattr(self.kernel, "packed_entry", None)
        if bound is None or entry is None:
            return None
        cfunc = entry(tuple(map(bool, objects)) + (False,) * len(self.workspace_bytes))
        if cfunc is None:
            return None
        words = [*pointers, *bound[1]]
        return cfunc, (ctypes.c_int64 * len(words))(*words)

    def raise_index_error(self, code: int, index: int, arrays):
        """After a call: the first read a checked kernel found out of bounds, if any
        (``lower/checked_reads.py``)."""
        if not code:
            return
        read = self.checked_reads[code - 1]
        param = next((p for p in self.params if p.name == read.tensor), None)
        extent = arrays[self.params.index(param)].shape[read.dim] if param else "?"
        raise ValueError(f"{self.entry_name}: {read.message(index, extent)}")

    def workspace_pointers(self) -> list[int]:
        """This thread's temporary buffers (allocated on its first call, then reused, so
        their pages are faulted in once)."""
        ptrs = getattr(self._workspace, "pointers", None)
        if ptrs is None:
            team = self._workspace.team_size = max_threads()
            arrays = [np.empty(nbytes * (team if per_thread else 1) + 64, np.uint8)
                      for nbytes, per_thread in self.workspace_bytes]
            ptrs = [a.ctypes.data + (-a.ctypes.data) % 64 for a in arrays]
            self._workspace.arrays, self._workspace.pointers = arrays, ptrs
        return ptrs

    def check_args(self, arrays, check_one=None):
        check_one = check_one or self._check_array
        if len(arrays) != len(self.params):
            names = ", ".join(p.name for p in self.params)
            raise TypeError(f"{self.entry_name}() takes {len(self.params)} arrays ({names}), "
                            f"got {len(arrays)}")
        bound: dict = {}
        pointers = []
        for p, a in zip(self.params, arrays):
            pointers.append(check_one(p, a, bound))
        for p, a in zip(self.params, arrays):
            if not p.derived:
                continue
            for d, (extent, got) in enumerate(zip(p.shape, a.shape)):
                if isinstance(extent, (n.IntImm, n.Var)):
                    continue
                want = simplify_expr(substitute(extent, {v: n.IntImm("int64", bound[v])
                                                         for v in bound}))
                if not isinstance(want, n.IntImm) or want.value != got:
                    raise ValueError(f"argument {p.name!r}: dimension {d} must be "
                                     f"{getattr(want, 'value', want)}, got {got}")
        self._check_overlap(arrays, pointers)
        if self.access_checks:
            self._check_accesses(bound)
        return pointers, [0 if v is self.team_size_var else bound[v] for v in self.scalars]

    def _check_accesses(self, bound: dict):
        """The reads whose bounds depend on the sizes (``lower/check_bounds.py``); sizes
        that passed once are remembered (evaluating the checks costs more than a small
        kernel's run)."""
        key = tuple(sorted((v.name, int(x)) for v, x in bound.items()))
        passed = self.__dict__.setdefault("_accesses_passed", set())
        if key in passed:
            return
        self._evaluate_accesses(bound)
        if len(passed) > 256:
            passed.clear()
        passed.add(key)

    def _evaluate_accesses(self, bound: dict):
        values = {v: n.IntImm("int64", x) for v, x in bound.items()}

        def value(e):
            e = simplify_expr(substitute(e, values))
            if not isinstance(e, n.IntImm):
                raise ValueError(f"{self.entry_name}: cannot evaluate {e} from the "
                                 "argument shapes")
            return int(e.value)

        for c in self.access_checks:
            if not value(c.nonempty):
                continue
            lo, hi, extent = value(c.lo), value(c.hi), value(c.extent)
            if lo <= hi and (lo < 0 or hi >= extent):
                raise ValueError(f"{self.entry_name}: {c.violation(lo, hi, extent)}")

    def _check_array(self, p: _Param, a, bound: dict) -> int:
        """Check one argument; returns its data pointer."""
        if not isinstance(a, np.ndarray):
            raise TypeError(f"argument {p.name!r}: expected a numpy.ndarray of {p.dtype}, "
                            f"got {type(a).__name__}")
        if a.dtype != p.np_dtype:
            raise TypeError(f"argument {p.name!r}: expected dtype {p.np_dtype}, got {a.dtype}")
        self._check_shape(p, a, bound)
        flags = a.flags
        if not flags.c_contiguous:
            raise ValueError(f"argument {p.name!r}: expected a C-contiguous array, got strides "
                             f"{a.strides} (use numpy.ascontiguousarray)")
        ptr = a.__array_interface__["data"][0]
        if ptr % a.dtype.alignment:
            raise ValueError(f"argument {p.name!r}: data pointer is not aligned to "
                             f"{a.dtype.alignment} bytes")
        if p.is_output and not flags.writeable:
            raise ValueError(f"argument {p.name!r}: it is an output, but the array is read-only")
        return ptr

    def _check_shape(self, p: _Param, a, bound: dict):
        """Number of dimensions and every fixed or bound size (binds new variables)."""
        if a.ndim != p.ndim:
            raise ValueError(f"argument {p.name!r}: expected {p.ndim} dimensions, "
                             f"got an array of shape {a.shape}")
        for d, (want, got) in enumerate(zip(p.dims, a.shape)):
            if want is None:
                continue
            if isinstance(want, int):
                if want != got:
                    raise ValueError(f"argument {p.name!r}: expected shape "
                                     f"{self._shape_text(p, bound)}, got {a.shape}")
            elif want in bound:
                if bound[want] != got:
                    raise ValueError(
                        f"argument {p.name!r}: dimension {d} is {want.name} = "
                        f"{bound[want]} (bound by an earlier argument), got {got}")
            else:
                bound[want] = got

    def _shape_text(self, p: _Param, bound) -> str:
        parts = []
        for e in p.shape:
            if isinstance(e, n.IntImm):
                parts.append(str(e.value))
            elif isinstance(e, n.Var):
                parts.append(str(bound.get(e, e.name)))
            else:
                parts.append("?")
        return "(" + ", ".join(parts) + ")"

    def _check_overlap(self, arrays, pointers):
        # Every argument is contiguous, so its bytes are exactly [ptr, ptr + nbytes).
        for i, (p, a) in enumerate(zip(self.params, arrays)):
            if not p.is_output or a.size == 0:
                continue
            lo, hi = pointers[i], pointers[i] + a.nbytes
            for j, (q, b) in enumerate(zip(self.params, arrays)):
                if i != j and b.size and pointers[j] < hi and lo < pointers[j] + b.nbytes:
                    raise ValueError(f"argument {p.name!r} is an output and overlaps argument "
                                     f"{q.name!r}; pass separate arrays")
