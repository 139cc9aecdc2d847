"""``td.ops.spmv``, ``spmm``, ``sddmm``, ``sparse_mul``, ``sparse_softmax``: the sparse
operators of ``kernels/sparse.py`` on ``scipy.sparse`` matrices (or ``td.nd`` sparse
arrays) and numpy arrays.

    y = td.ops.spmv(A, x)                 # A: scipy.sparse (CSR, or converted), x: numpy
    C = td.ops.sparse_add(A, B)           # scipy CSR: the union of the patterns
    C = td.ops.spmm(A, B)                 # numpy (m, f)
    S2 = td.ops.sddmm(S, X, Y)            # scipy CSR with S's pattern: S ⊙ (X @ Y.T)

The sparse operand's structure is checked before any generated code runs (O(nnz);
``check=False`` trusts it). A kernel is compiled once per (operator, shape, dtypes,
dense shapes, configuration) — not per sparsity pattern: the number of stored entries
is a symbolic size. ``schedule="rows"`` splits the rows over the threads evenly,
``schedule="nonzeros"`` so that each thread gets an equal share of the stored entries
(skewed rows); SpMV's ``schedule="sliced"`` runs over the rows as sliced ELLPACK
(``sliced.py``), a layout derived from the CSR arrays on the first call and kept with a
``td.nd`` sparse array. The results with the operand's pattern split the stored
positions.

Without ``schedule=``, the configuration is the best tuning record (``tensordsl tune
spmm --matrix a.mtx --shape 64``) of the operator on (shape, nnz, dtype, dense shapes)
— looked up once per such key, when a sparse array first meets the kernel
(``_prepared``), never per call — else the template's defaults: sliced rows for SpMV on a
``td.nd`` sparse array (on a scipy matrix, converted on each call, the row split: the
layout would be derived again each time), the row split for the others. An explicit
``schedule=`` wins: the template's defaults with that split, records unread.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from ..autotune.history import source_token
from .array import SparseArray, sparse_array
from .interop import is_scipy, is_torch_sparse

OPERATORS = ("spmv", "spmm", "sddmm", "sparse_mul", "sparse_softmax", "sparse_add")
ASSEMBLED = ("sparse_add",)          # a result with a pattern of its own
PATTERN_RESULTS = ("sddmm", "sparse_mul", "sparse_softmax")   # values on A's pattern
SCHEDULES = ("rows", "nonzeros", "sliced")

_LOCK = threading.Lock()
_KERNELS: dict = {}
_TUNED: dict = {}     # (operator, shape, dtype, dense shapes, nnz, records) -> config


BLOCKED = ("spmv", "spmm")           # operators with BSR kernels of their own


def _operand(name: str, A, check: bool):
    """The sparse operand as a CSR ``td.nd`` sparse array (converted, and checked unless
    ``check=False``, when it is a scipy matrix or a torch sparse tensor) — or BSR as it
    is, for the operators with BSR kernels."""
    kept = ("csr", "bsr") if name in BLOCKED else ("csr",)
    if type(A) is SparseArray:
        return A if A.format.name in kept else A.asformat("csr")
    if not (isinstance(A, SparseArray) or is_scipy(A) or is_torch_sparse(A)):
        # (a dense array would be converted silently: almost surely a mistaken argument)
        raise TypeError(f"{name}: the sparse operand must be a scipy.sparse matrix, a torch "
                        f"sparse tensor or a td.nd sparse array, got {type(A).__name__}")
    if isinstance(A, SparseArray):
        return A if A.format.name in kept else A.asformat("csr")
    blocked = "bsr" in kept and getattr(A, "format", None) == "bsr"
    return sparse_array(A, format="bsr" if blocked else "csr", check=check)


def _dense(name: str, k: int, value, dtype) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != dtype:
        raise TypeError(f"{name}: dense operand {k} must be {dtype} like the sparse "
                        f"operand, got {array.dtype}")
    return np.require(array, requirements="CA")


def _plain(flags) -> bool:
    return flags.c_contiguous and flags.aligned


def call(name: str, A, *dense, out=None, schedule: str | None = None, check: bool = True):
    if out is None and type(A) is SparseArray:
        hit = A.__dict__.get("_repeat", {}).get((name, schedule, threading.get_ident()))
        if hit is not None and len(dense) == len(hit[0]):
            result = _repeat(A, name, hit, dense)
            if result is not None:
                return result
    allowed = SCHEDULES if name == "spmv" else SCHEDULES[:2]
    if schedule is not None and schedule not in allowed:
        raise ValueError(f"{name}: schedule must be one of {', '.join(allowed)}, got "
                         f"{schedule!r}")
    scipy_in = not type(A).__module__.startswith("tensordsl")
    S = _operand(name, A, check)
    vals_dtype = S.vals.dtype
    arrays = [d if type(d) is np.ndarray and d.dtype == vals_dtype and _plain(d.flags)
              else _dense(name, k + 1, d, S.dtype) for k, d in enumerate(dense)]
    # (the records in force are part of the key: apply_history_best(db) changes them)
    key = (name, S.shape, S.dtype, tuple(a.shape for a in arrays), schedule, source_token(),
           S.format.block)
    entry, components, want = _prepared(S, key, kept=S is A)
    if out is None:
        out = np.empty(want, vals_dtype)
    elif not isinstance(out, np.ndarray) or out.shape != want or out.dtype != vals_dtype \
            or not _plain(out.flags):
        got = (getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__))
        raise ValueError(f"{name}: out= must be a contiguous, aligned {S.dtype} array "
                         f"of shape {want}, got {got}")
    if callable(entry):
        entry(*components, *arrays, out)
    else:
        if entry[0](*components, *arrays, out, *entry[1]):
            raise MemoryError(f"{name}: a temporary buffer could not be allocated")
        if type(A) is SparseArray and A is S:
            repeats = A.__dict__.setdefault("_repeat", {})
            if len(repeats) > 64:
                repeats.clear()
            repeats[(name, schedule, threading.get_ident())] = (
                tuple(a.shape for a in arrays), vals_dtype, key[5], entry[0], components,
                entry[1], want)
    if name not in PATTERN_RESULTS:
        return out
    result = S.with_values(out)
    return result.to_scipy(matrix=_is_spmatrix(A)) if scipy_in else result


def _repeat(S, name: str, hit, dense):
    """A call like one this thread made before on ``S`` (same operator, schedule, dense
    shapes and dtype, records in force): the dense arrays checked and the kernel's
    entry called, no key built; None if anything differs (the general path then)."""
    shapes, dtype, token, cfunc, components, trailing, want = hit
    for d, shape in zip(dense, shapes):
        if type(d) is not np.ndarray or d.dtype != dtype or d.shape != shape or \
                not _plain(d.flags):
            return None
    if source_token() != token:
        return None
    out = np.empty(want, dtype)
    if cfunc(*components, *dense, out, *trailing):
        raise MemoryError(f"{name}: a temporary buffer could not be allocated")
    return S.with_values(out) if name in PATTERN_RESULTS else out


def _reshaped_output(f, shape, *arrays):
    f(*arrays[:-1], arrays[-1].reshape(shape))


def _prepared(S, key, kept: bool = True):
    """``(entry, components, result shape)`` of the kernel of ``key`` on the sparse array
    ``S``, kept on ``S`` (its arrays never change) for this thread: ``entry`` is the
    kernel's bound entry point ``(cfunc, trailing)`` with ``components`` the pointers of
    ``S``'s arrays — the arrays are checked (contiguous, of the kernel's dtypes and
    shapes: the dense shapes are in its key, the structure was validated), so a call
    goes straight to it, the dense arrays and the result passed as they are (cheaper
    than their addresses) — or the function itself with the arrays where it has
    none."""
    cache = S.__dict__.setdefault("_prepared", {})
    here = (key, threading.get_ident())
    hit = cache.get(here)
    if hit is None:
        block = key[6]
        config = configuration(*key[:5], S.nnz, block, kept=kept)
        f, names, shape = _kernel(*key[:4], config, block)
        arrays = [S.component(n) for n in names]
        want = shape if shape is not None else (S.nnz,)
        if S.format.block:       # the kernel's rows by block: the same memory
            want = (S.shape[0], *shape[2:])
            f = functools.partial(_reshaped_output, f, shape)
        n_dense = len(key[3]) + 1              # the dense operands and the result
        objects = (False,) * len(arrays) + (True,) * n_dense
        sizes = symbolic_sizes(S, names, arrays)
        pointers = [a.ctypes.data for a in arrays]
        packed = getattr(f, "packed_call", lambda *args: None)(pointers, sizes, objects)
        bound = packed or getattr(f, "bound_call", lambda sizes, objects: None)(
            sizes, objects)
        if packed is not None:
            # S's arrays and the sizes in one block, passed as the first argument (the
            # ctypes array itself: whoever holds the arguments keeps it alive), then the
            # dense arrays
            cfunc, block = packed
            hit = ((cfunc, ()), [block], want)
        elif bound is not None:
            hit = (bound, pointers, want)
        else:
            hit = (f, arrays, want)
        if len(cache) > 64:      # many threads or kernels on one array: start over
            cache.clear()
        cache[here] = hit
    return hit


def symbolic_sizes(S, names, arrays) -> dict:
    """The kernel's symbolic sizes by name (``A.nnz1``, and ``A.steps1`` of sliced
    rows), from the sparse array ``S`` and the components ``arrays`` it passes."""
    sizes = {f"A.nnz{k}": S.crd[k].size for k in S.crd}
    for name, array in zip(names, arrays):
        if name.startswith("scrd"):
            sizes[f"A.steps{name[4:]}"] = array.shape[0]
    return sizes


def add(name: str, A, B, check: bool = True):
    """The assembled results (``sparse_add``): count, allocate, fill."""
    scipy_in = not type(A).__module__.startswith("tensordsl")
    matrix_in = scipy_in and _is_spmatrix(A)
    S, T = _operand(name, A, check), _operand(name, B, check)
    if S.shape != T.shape or S.dtype != T.dtype:
        raise ValueError(f"{name}: b must be {S.dtype}{list(S.shape)} like a, got "
                         f"{T.dtype}{list(T.shape)}")
    key = (name, S.shape, S.dtype)
    with _LOCK:
        kernel = _KERNELS.get(key)
        if kernel is None:
            import kernels.sparse as definitions
            from .tensor import sparse_placeholder
            a = sparse_placeholder(S.shape, "csr", S.dtype, name="A")
            b = sparse_placeholder(S.shape, "csr", S.dtype, name="B")
            # the structures were checked (or trusted): no per-access checks
            kernel = _KERNELS[key] = getattr(definitions, name)(a, b).build(
                check_indices=False)
    result = kernel(S, T)
    return result.to_scipy(matrix=matrix_in) if scipy_in else result


def _is_spmatrix(A) -> bool:
    """A ``scipy.sparse`` matrix (not an array): the result keeps the kind."""
    import scipy.sparse
    return isinstance(A, scipy.sparse.spmatrix)


def configuration(name: str, shape, dtype: str, dense_shapes, schedule, nnz: int,
                  block=(), kept: bool = True) -> dict:
    """The template configuration of a call: ``{"schedule": schedule}`` when one is
    given, else the best record for the operator on this shape, nnz, dtype and dense
    shapes (looked up once per such key and records source), else ``{}`` (the
    template's defaults). A BSR operand (``block``) has no records.

    ``kept``: the operand is a ``td.nd`` sparse array the caller keeps, so an array
    derived from it on the first call serves the next ones. Else (a scipy matrix,
    converted on each call) the default avoids a schedule that reads a derived layout:
    SpMV's sliced rows take 5 ms to derive for 168k entries, 7x the conversion."""
    if schedule is not None:
        return {"schedule": schedule}
    if block:
        return {}
    key = (name, shape, dtype, dense_shapes, nnz, source_token())
    config = _TUNED.get(key)
    if config is None:
        from ..autotune.sparse_workload import tuned_config
        config = _TUNED[key] = tuned_config(name, shape, nnz, dtype, dense_shapes) or {}
    if not config and not kept:
        from schedules.cpu.sparse import DERIVED_LAYOUT_FALLBACK
        return dict(DERIVED_LAYOUT_FALLBACK.get(name, {}))
    return config


def _kernel(name: str, shape, dtype: str, dense_shapes, config: dict, block=()):
    key = (name, shape, dtype, dense_shapes, tuple(sorted(config.items())), block)
    with _LOCK:
        hit = _KERNELS.get(key)
        if hit is None:
            hit = _KERNELS[key] = _compile(name, shape, dtype, dense_shapes, config, block)
    return hit


def scheduled(name: str, shape, dtype: str, dense_shapes, config: dict | None, block=()):
    """``(schedule, tensors)`` of operator ``name``'s template with ``config`` (None:
    the defaults), the tensors in call order (``A``'s arrays, the dense operands, the
    result): the kernel ``td.ops`` builds and ``tensordsl tune`` measures. ``block``:
    a BSR operand's."""
    import kernels.sparse as definitions
    import tensordsl as td
    from schedules.cpu.sparse import TEMPLATES, definition
    from .format import Format
    from .tensor import sparse_placeholder
    A = sparse_placeholder(shape, Format.named("bsr", block) if block else "csr", dtype,
                           name="A")
    dense = [td.placeholder(s, dtype, f"d{k}") for k, s in enumerate(dense_shapes)]
    out = getattr(definitions, definition(name, config))(A, *dense)
    s = td.create_schedule(out.op)
    TEMPLATES[name](s, out, A, config)
    return s, [*A.placeholders(), *dense, out]


def build(name: str, shape, dtype: str, dense_shapes, config: dict | None, block=()):
    """The compiled kernel of ``scheduled``: the structure was checked (or trusted,
    ``check=False``), so no per-read index checks."""
    import tensordsl as td
    s, tensors = scheduled(name, shape, dtype, dense_shapes, config, block)
    return td.build(s, tensors, target="llvm", name=name, check_indices=False), tensors


def _compile(name, shape, dtype, dense_shapes, config, block=()):
    f, tensors = build(name, shape, dtype, dense_shapes, config, block)
    n_components = len(tensors) - len(dense_shapes) - 1
    names = [t.name.split(".", 1)[1] for t in tensors[:n_components]]
    out = tensors[-1]
    result = None if name in PATTERN_RESULTS else tuple(int(d.value) for d in out.shape)
    return f, names, result


# the operands of each operator, named as td.ops names them (a sparse ``a`` first)
OPERANDS = {"spmv": ("a", "x"), "spmm": ("a", "b"), "sddmm": ("a", "x", "y"),
            "sparse_mul": ("a", "b"), "sparse_softmax": ("a",), "sparse_add": ("a", "b")}

_CALL_DOC = """
    Through ``td.ops``: ``a`` is a ``scipy.sparse`` matrix or array (converted to CSR) or
    a ``td.nd.sparse_array``; the dense operands are numpy arrays of ``a``'s dtype. The
    result is a new numpy array, or for a result with ``a``'s pattern a matrix of ``a``'s
    kind (scipy in, scipy out). Keywords of every sparse operator:

    out : numpy.ndarray, optional
        Where to write the result: the dense result, or the ``nnz`` values of a result
        with ``a``'s pattern; returned (as such a matrix's values).
    schedule : str, optional
        ``"rows"`` (the rows split evenly over the threads) or ``"nonzeros"`` (an equal
        share of the stored entries each: skewed rows), with the template's other
        defaults; for ``spmv`` also ``"sliced"`` (the rows as sliced ELLPACK, derived
        once per ``td.nd`` sparse array). Without it: the best record of ``tensordsl
        tune`` for ``a``'s shape, number of stored entries and dtype and the dense
        shapes, else ``"sliced"`` for ``spmv`` on a ``td.nd`` sparse array and
        ``"rows"`` otherwise.
    check : bool
        False: ``a``'s structure is trusted, not checked (O(nnz) per call for a scipy
        matrix; a ``td.nd.sparse_array`` was checked when it was made).
"""

_ASSEMBLED_DOC = """
    Through ``td.ops``: ``a`` and ``b`` are ``scipy.sparse`` matrices or arrays
    (converted to CSR) or ``td.nd.sparse_array``s of one shape and dtype; the result is
    of ``a``'s kind (scipy in, scipy out), with sorted columns.

    check : bool
        False: the operands' structures are trusted, not checked.
"""


FAST_KEYWORDS = {"out", "schedule", "check"}


@functools.cache
def entry(name: str):
    import inspect
    import kernels.sparse as definitions
    positional = [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for p in OPERANDS[name]]
    keywords = [inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None),
                inspect.Parameter("schedule", inspect.Parameter.KEYWORD_ONLY,
                                  default=None),
                inspect.Parameter("check", inspect.Parameter.KEYWORD_ONLY, default=True)]
    if name in ASSEMBLED:
        keywords = keywords[2:]      # the result's size is known only once counted
    signature = inspect.Signature(positional + keywords)

    n_operands = len(OPERANDS[name])

    def operator(*args, **kwargs):
        if len(args) == n_operands and name not in ASSEMBLED and \
                kwargs.keys() <= FAST_KEYWORDS:
            return call(name, *args, **kwargs)   # (binding the signature costs 6 us)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}(): {e}") from None
        bound.apply_defaults()
        values = bound.arguments
        if name in ASSEMBLED:
            return add(name, *(values[p] for p in OPERANDS[name]), check=values["check"])
        return call(name, *(values[p] for p in OPERANDS[name]), out=values["out"],
                    schedule=values["schedule"], check=values["check"])

    operator.__name__ = operator.__qualname__ = name
    operator.__module__ = "tensordsl.ops"
    operator.__signature__ = signature
    operator.__doc__ = (inspect.cleandoc(getattr(definitions, name).__doc__ or "") + "\n\n"
                        + inspect.cleandoc(_ASSEMBLED_DOC if name in ASSEMBLED
                                           else _CALL_DOC))
    return operator
