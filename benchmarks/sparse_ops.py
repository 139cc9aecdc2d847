"""What each system times in the sparse suite (``sparse.py``): one place, so every side
computes the same thing on the same operands. Used by the worker processes.

Operators (``S``, ``A``, ``B`` sparse CSR from ``sparse_matrices``; ``X``, ``Y``, ``x``
dense float32, seeded):

- ``spmm``: ``A @ B``, B dense cols x f. scipy ``A @ B``; torch ``A_csr @ B``.
- ``spmv``: ``A @ x``. scipy ``A @ x``; torch ``A_csr @ x``.
- ``sddmm``: ``S ⊙ (X @ Y.T)`` at S's pattern (X rows x f, Y cols x f), a CSR result.
  numpy: the nonzeros' rows of X and Y gathered and dotted, 2048 nonzeros at a time
  (the gathered blocks stay in cache: 3x faster than one gather of all nonzeros here),
  the row index of every nonzero precomputed once per pattern, outside the timer;
  torch: ``torch.sparse.sampled_addmm(S, X, Y.T, beta=0)``, its values then scaled in
  place by S's (it samples X @ Y.T but leaves S's values out).
- ``sparse_add``: ``A + B``, two patterns, an assembled CSR result. scipy ``A + B``;
  torch ``A_csr + B_csr``.

Ours is ``td.ops.<op>(...)`` with the case's options (``{"schedule": "rows"}`` or
``{"schedule": "nonzeros"}`` ...) passed as keyword arguments; an option the function's
signature does not take is dropped, and the worker reports which were applied; the rest
are ``td.ops``' defaults. The sparse operands are ``td.nd.sparse_array``s built (and
checked) once outside the timer, as torch's CSR tensors are; a scipy matrix given to
``td.ops`` directly is checked on every call. torch's
CSR tensors share scipy's int32 index arrays (on them MKL's SpMM ran 25% faster here
than on int64, its SpMV 1.8x). Every side allocates its result on each call.
"""
from __future__ import annotations

import inspect

import numpy as np
import scipy.sparse as sp

from .sparse_matrices import matrix

OPS = ("spmm", "spmv", "sddmm", "sparse_add")
SDDMM_CHUNK = 2048


def inputs(op: str, p: dict) -> list:
    """The operands of ``op`` on the case's matrix: ``p["matrix"]`` (and
    ``p["matrix_b"]`` for ``sparse_add``), ``p["f"]`` the dense operands' width."""
    a = matrix(p["matrix"])
    rng = np.random.default_rng(0)
    rows, cols = a.shape
    if op == "spmm":
        return [a, rng.standard_normal((cols, p["f"]), dtype=np.float32)]
    if op == "spmv":
        return [a, rng.standard_normal(cols, dtype=np.float32)]
    if op == "sddmm":
        return [a, rng.standard_normal((rows, p["f"]), dtype=np.float32),
                rng.standard_normal((cols, p["f"]), dtype=np.float32)]
    if op == "sparse_add":
        return [a, matrix(p["matrix_b"])]
    raise KeyError(f"sparse op {op!r}: expected one of {OPS}")


def reference(op: str, p: dict):
    """The result in float64 by scipy: a dense array, or a CSR matrix."""
    ops = [o.astype(np.float64) for o in inputs(op, p)]
    if op in ("spmm", "spmv"):
        return ops[0] @ ops[1]
    if op == "sddmm":
        s, x, y = ops
        # X @ Y.T by blocks of rows: the whole dense product of a 16384^2 pattern is 2 GiB
        step = 1024
        return sp.csr_matrix(sp.vstack([s[i:i + step].multiply(x[i:i + step] @ y.T)
                                        for i in range(0, s.shape[0], step)]))
    return sp.csr_matrix(ops[0] + ops[1])


def tensordsl_fn(op: str, p: dict, options: dict | None = None):
    """``(call, applied)``: our one-call path with the options its signature takes."""
    import tensordsl as td
    fn = getattr(td.ops, op)
    applied = _accepted(fn, options or {})
    ops = list(inputs(op, p))
    # the sparse operands as td.nd sparse arrays, checked once outside the timer (as
    # torch's CSR tensors are): a call then runs the kernel, not the O(nnz) check
    ops = [td.nd.sparse_array(a) if sp.issparse(a) else a for a in ops]
    return (lambda: fn(*ops, **applied)), applied


def _accepted(fn, options: dict) -> dict:
    params = inspect.signature(fn).parameters
    if any(q.kind is inspect.Parameter.VAR_KEYWORD for q in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def scipy_fn(op: str, p: dict):
    if op == "sddmm":
        raise KeyError("scipy has no SDDMM: its row is numpy's (system 'numpy')")
    a, b = inputs(op, p)
    if op == "sparse_add":
        return lambda: a + b
    return lambda: a @ b


def numpy_fn(op: str, p: dict):
    if op != "sddmm":
        raise KeyError(f"numpy side of {op!r}: only sddmm has one (scipy's are scipy_fn)")
    s, x, y = inputs(op, p)
    rows = np.repeat(np.arange(s.shape[0], dtype=np.int32), np.diff(s.indptr))
    cols, vals = s.indices, s.data

    def sddmm():
        out = np.empty(s.nnz, np.float32)
        for start in range(0, s.nnz, SDDMM_CHUNK):
            end = min(start + SDDMM_CHUNK, s.nnz)
            out[start:end] = np.einsum("ij,ij->i", x[rows[start:end]], y[cols[start:end]])
        out *= vals
        return sp.csr_matrix((out, s.indices, s.indptr), shape=s.shape)
    return sddmm


def torch_csr(a: sp.csr_matrix):
    """``a`` as a torch CSR tensor sharing its arrays (int32 indices), checked once."""
    import torch
    return torch.sparse_csr_tensor(torch.from_numpy(a.indptr), torch.from_numpy(a.indices),
                                   torch.from_numpy(a.data), size=a.shape,
                                   check_invariants=True)


def torch_fn(op: str, p: dict):
    import torch
    ops = inputs(op, p)
    if op == "sddmm":
        s, x, y = torch_csr(ops[0]), torch.from_numpy(ops[1]), torch.from_numpy(ops[2])
        vals = s.values()

        def sddmm():
            out = torch.sparse.sampled_addmm(s, x, y.T, beta=0.0)
            out.values().mul_(vals)
            return out
        return sddmm
    a = torch_csr(ops[0])
    if op == "sparse_add":
        b = torch_csr(ops[1])
        return lambda: a + b
    b = torch.from_numpy(ops[1])
    return lambda: a @ b


def as_scipy_or_numpy(result):
    """A side's result as a numpy array or a scipy CSR matrix, for comparison."""
    if sp.issparse(result):
        return sp.csr_matrix(result)
    if hasattr(result, "to_scipy"):   # a td.nd sparse array (our sparse operands' results)
        return sp.csr_matrix(result.to_scipy())
    if hasattr(result, "layout"):   # a torch tensor
        import torch
        if result.layout == torch.sparse_csr:
            return sp.csr_matrix((result.values().numpy(), result.col_indices().numpy(),
                                  result.crow_indices().numpy()), shape=tuple(result.shape))
        return result.numpy()
    return np.asarray(result)


def relative_error(result, ref) -> float:
    """Largest absolute difference from the reference over its largest magnitude."""
    result = as_scipy_or_numpy(result)
    if sp.issparse(ref):
        if not sp.issparse(result) or result.shape != ref.shape:
            raise ValueError(f"expected a sparse {ref.shape} result, got {type(result)} "
                             f"{getattr(result, 'shape', None)}")
        return float(abs(result.astype(np.float64) - ref).max() / abs(ref).max())
    if result.shape != ref.shape:
        raise ValueError(f"expected a {ref.shape} result, got {result.shape}")
    return float(np.abs(result - ref).max() / np.abs(ref).max())


def check(op: str, p: dict, system: str, options: dict | None = None) -> dict:
    """``system``'s result against scipy's in float64: ``{"error": ..., "applied": ...}``
    (``applied``: the options our side took)."""
    applied = None
    if system == "tensordsl":
        fn, applied = tensordsl_fn(op, p, options)
    else:
        fn = {"scipy": scipy_fn, "numpy": numpy_fn, "torch": torch_fn}[system](op, p)
    return {"error": relative_error(fn(), reference(op, p)), "applied": applied}
