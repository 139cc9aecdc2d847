"""Sparse arrays to and from scipy.sparse and torch.sparse, each in the format it holds
them in (csr, csc, coo, bsr; scipy's other kinds through csr). Neither library is
imported here: an object is one of theirs only if its library is loaded already, and
the way out imports it when asked.

``from_scipy`` / ``from_torch`` give ``(shape, format, arrays)`` with ``arrays`` keyed
by ``component_names``; the arrays are shared with the input where it is canonical
(sorted, no duplicates where the format says unique), else canonical copies. The way
out shares memory too: ``to_scipy(a).data is a.vals``. ``convert_with_scipy`` converts
between 2-D csr, csc, coo, bsr and dcsr with scipy's compiled conversions.
"""
from __future__ import annotations

import sys

import numpy as np

from .assemble import unpack
from .format import Format, Level

CSR, CSC = Format.named("csr"), Format.named("csc")
DCSR, COO = Format.named("dcsr"), Format.named("coo")


def coo_format(ndim: int) -> Format:
    """COO in ``ndim`` dimensions: a non-unique compressed level, then singletons."""
    if ndim == 2:
        return COO
    return Format([Level("compressed", unique=False)] + ["singleton"] * (ndim - 1))


def is_bsr(format: Format) -> bool:
    """Whether ``format`` is BSR (``Format.named("bsr", block=...)`` for any block)."""
    return format.block != () and format == Format.named("bsr", block=format.block)


def _coo_arrays(coords: np.ndarray, values: np.ndarray) -> dict:
    """COO's arrays, the entries sorted by coordinates (stably: duplicates stay)."""
    ndim, n = coords.shape
    if n > 1:
        key_steps = np.diff(coords, axis=1)
        # sorted already iff each step's first nonzero coordinate difference is positive
        nonzero = key_steps != 0
        first = np.argmax(nonzero, axis=0)
        lead = key_steps[first, np.arange(n - 1)]
        if (lead < 0).any():
            perm = np.lexsort(coords[::-1])
            coords, values = coords[:, perm], values[perm]
    arrays = {"pos0": np.array([0, n]), "crd0": coords[0]}
    arrays.update({f"crd{k}": coords[k] for k in range(1, ndim)})
    arrays["vals"] = values
    return arrays


# ---- scipy.sparse ----------------------------------------------------------------------

def is_scipy(obj) -> bool:
    scipy_sparse = sys.modules.get("scipy.sparse")
    return scipy_sparse is not None and scipy_sparse.issparse(obj)


def from_scipy(matrix) -> tuple:
    """(shape, format, arrays) of a scipy.sparse matrix or array, in its own format."""
    kind = matrix.format
    if kind not in ("csr", "csc", "coo", "bsr"):
        matrix, kind = matrix.tocsr(), "csr"
    shape = tuple(int(d) for d in matrix.shape)
    if kind == "coo":
        # scipy >= 1.13 calls them coords (n-D); before, a coo_matrix had row and col
        coords = np.stack([np.asarray(c) for c in getattr(matrix, "coords", None)
                           or (matrix.row, matrix.col)])
        return shape, coo_format(len(shape)), _coo_arrays(coords, matrix.data)
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()          # sorts the indices too
    arrays = {"pos1": matrix.indptr, "crd1": matrix.indices, "vals": matrix.data}
    if kind == "bsr":
        return shape, Format.named("bsr", block=matrix.blocksize), arrays
    return shape, CSR if kind == "csr" else CSC, arrays


def _csr_arrays(a) -> tuple:
    """(indptr, indices, data) of a 2-D array in CSR or DCSR."""
    if a.format == CSR:
        return a.pos[1], a.crd[1], a.vals
    indptr = np.zeros(a.shape[0] + 1, a.pos[1].dtype)
    indptr[a.crd[0] + 1] = np.diff(a.pos[1])
    return np.cumsum(indptr, dtype=a.pos[1].dtype), a.crd[1], a.vals


def to_scipy(a, matrix: bool = False):
    """``a`` as a scipy.sparse array (``matrix=True``: a matrix) of the same format:
    csr, csc, bsr, coo; a DCSR array becomes csr, any other format coo."""
    import scipy.sparse as sp
    kinds = {"csr": sp.csr_matrix if matrix else sp.csr_array,
             "csc": sp.csc_matrix if matrix else sp.csc_array,
             "bsr": sp.bsr_matrix if matrix else sp.bsr_array,
             "coo": sp.coo_matrix if matrix else sp.coo_array}
    if a.format in (CSR, DCSR):
        indptr, indices, data = _csr_arrays(a)
        return kinds["csr"]((data, indices, indptr), shape=a.shape)
    if a.format == CSC:
        return kinds["csc"]((a.vals, a.crd[1], a.pos[1]), shape=a.shape)
    if is_bsr(a.format):
        return kinds["bsr"]((a.vals, a.crd[1], a.pos[1]), shape=a.shape)
    if matrix and a.ndim != 2:
        raise ValueError(f"to_scipy: a scipy.sparse matrix is 2-D, this array is {a.ndim}-D "
                         f"(matrix=False gives an n-D coo_array)")
    coords, values = (np.stack([a.crd[k] for k in range(a.ndim)]), a.vals) \
        if a.format == coo_format(a.ndim) else unpack(a.components(), a.shape, a.format)
    return kinds["coo"]((values, tuple(coords)), shape=a.shape)


# ---- torch.sparse ----------------------------------------------------------------------

def is_torch_sparse(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor) and \
        obj.layout != torch.strided


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().resolve_conj().numpy()


def from_torch(tensor) -> tuple:
    """(shape, format, arrays) of a torch sparse tensor (COO, CSR, CSC, BSR) on any
    device, in its own format."""
    import torch
    shape = tuple(int(d) for d in tensor.shape)
    layout = tensor.layout
    if layout == torch.sparse_coo:
        if tensor.dense_dim():
            raise ValueError(f"torch sparse tensor: hybrid COO (values with "
                             f"{tensor.dense_dim()} dense dimensions) is not supported")
        # _indices/_values: the entries as stored, duplicates included (uncoalesced)
        coords, values = _numpy(tensor._indices()), _numpy(tensor._values())
        return shape, coo_format(len(shape)), _coo_arrays(coords, values)
    compressed = {torch.sparse_csr: ("crow_indices", "col_indices"),
                  torch.sparse_csc: ("ccol_indices", "row_indices"),
                  torch.sparse_bsr: ("crow_indices", "col_indices")}
    if layout not in compressed or len(shape) != 2 or tensor.dense_dim():
        raise ValueError(f"torch sparse tensor: expected a 2-D CSR, CSC or BSR tensor (no "
                         f"batch or dense dimensions) or COO, got {layout}, shape {shape}")
    pos, crd = (getattr(tensor, f)() for f in compressed[layout])
    arrays = {"pos1": _numpy(pos), "crd1": _numpy(crd), "vals": _numpy(tensor.values())}
    if layout == torch.sparse_bsr:
        return shape, Format.named("bsr", block=tuple(tensor.values().shape[1:])), arrays
    return shape, CSR if layout == torch.sparse_csr else CSC, arrays


def to_torch(a):
    """``a`` as a torch sparse tensor on the CPU: CSR (from csr or dcsr), CSC, BSR, else
    COO (coalesced where the format holds no duplicates)."""
    import torch
    tensor = torch.from_numpy
    if a.format in (CSR, DCSR):
        indptr, indices, data = _csr_arrays(a)
        return torch.sparse_csr_tensor(tensor(indptr), tensor(indices), tensor(data),
                                       size=a.shape, check_invariants=False)
    if a.format == CSC:
        return torch.sparse_csc_tensor(tensor(a.pos[1]), tensor(a.crd[1]), tensor(a.vals),
                                       size=a.shape, check_invariants=False)
    if is_bsr(a.format):
        return torch.sparse_bsr_tensor(tensor(a.pos[1]), tensor(a.crd[1]), tensor(a.vals),
                                       size=a.shape, check_invariants=False)
    coords, values = unpack(a.components(), a.shape, a.format)
    # unpack lists the entries in storage order: torch's coalesced order when that is
    # row-major, strictly ascending and unblocked
    coalesced = all(lv.ordered and lv.unique for lv in a.format.levels) and \
        a.format.order == tuple(range(a.ndim)) and not a.format.block
    return torch.sparse_coo_tensor(tensor(coords), tensor(np.ascontiguousarray(values)),
                                   size=a.shape, is_coalesced=coalesced or None,
                                   check_invariants=False)


# ---- conversions -----------------------------------------------------------------------

SCIPY_KINDS = {"csr": CSR, "csc": CSC, "coo": COO, "dcsr": DCSR}


def _scipy_kind(format: Format):
    """scipy's name for the 2-D format it converts to and from, or None."""
    if is_bsr(format):
        return "bsr"
    return next((kind for kind, f in SCIPY_KINDS.items() if f == format), None)


def convert_with_scipy(a, target: Format):
    """The arrays of ``a`` in ``target`` by scipy's conversions, or None where scipy
    lacks the pair or is not installed."""
    kind = _scipy_kind(target)
    if a.ndim != 2 or kind is None or _scipy_kind(a.format) is None:
        return None
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:
        return None
    m = to_scipy(a)
    m = {"csr": m.tocsr, "dcsr": m.tocsr, "csc": m.tocsc, "coo": m.tocoo}[kind]() \
        if kind != "bsr" else m.tobsr(blocksize=target.block)
    arrays = from_scipy(m)[2]
    if kind == "dcsr":
        indptr = arrays["pos1"]
        rows = np.flatnonzero(np.diff(indptr))
        arrays = {"pos0": np.array([0, len(rows)]), "crd0": rows,
                  "pos1": np.append(indptr[rows], indptr[-1]), "crd1": arrays["crd1"],
                  "vals": arrays["vals"]}
    return arrays
