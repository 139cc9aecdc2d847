"""``td.nd.sparse_array``: a sparse tensor's arrays on the host, in a format of
``format.py``, checked (``validate.py``) and ready to pass to a kernel built over a
``td.sparse_placeholder`` of the same format: ``f(*A.arrays(), x, y)``.

    A = td.nd.sparse_array(scipy.sparse.random_array((64, 32), density=0.1))   # csr
    A = td.nd.sparse_array(m, format="csc")          # converted from m's own format
    A = td.nd.sparse_array(dense, format="bsr")      # a numpy array: format= is needed
    A = td.nd.sparse_array({"pos1": p, "crd1": c, "vals": v}, format="csr", shape=(4, 5))
    A.arrays()                # [pos1, crd1, vals]: the placeholders' order, int32 pos/crd
    A.to_scipy(), A.to_torch(), A.to_dense()

Inputs: scipy.sparse matrices and arrays (csr, csc, coo, bsr; the other kinds through
csr), torch sparse tensors (COO, CSR, CSC, BSR), dense arrays, arrays by name. Entries
are sorted (every format here stores its levels ordered); duplicate coordinates are
summed for a format whose levels are unique and kept by COO. Converting between 2-D
csr, csc, coo, bsr and dcsr goes through scipy's compiled conversions where scipy is
installed, any other pair through coordinates (``assemble.py``).
"""
from __future__ import annotations

import numpy as np

from .assemble import check_shape, component_names, pack, unpack
from .format import Format, as_format
from .interop import (convert_with_scipy, from_scipy, from_torch, is_bsr, is_scipy,
                      is_torch_sparse, to_scipy, to_torch)
from .sliced import KINDS as SLICED_KINDS, sliced_ell
from .tensor import DERIVED
from .validate import VALUE_DTYPES, validate


class SparseArray:
    """A sparse tensor as the arrays its format stores: ``pos[k]`` and ``crd[k]`` (int32)
    for level ``k`` where the level stores them, and ``vals``. Build one with
    ``td.nd.sparse_array``; ``check=False`` skips the O(nnz) structure checks (the shape
    is always checked against the format)."""

    def __init__(self, shape, format, arrays: dict, check: bool = True):
        self.shape = tuple(int(d) for d in shape)
        self.format = format = as_format(format)
        check_shape(self.shape, format)
        names = component_names(format)
        missing = [n for n in names if n not in arrays]
        unknown = [n for n in arrays if n not in names]
        if missing or unknown:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            problems += [f"unknown {', '.join(map(repr, unknown))}"] if unknown else []
            raise ValueError(f"sparse array ({format}): expected the arrays "
                             f"{', '.join(names)}; {'; '.join(problems)}")
        self._arrays = {n: np.asarray(arrays[n]) for n in names}
        if check:
            validate(self)
        # int32 once checked: validate refuses what int32 cannot hold
        self._arrays = {n: np.ascontiguousarray(a, None if n == "vals" else np.int32)
                        for n, a in self._arrays.items()}
        self.pos = {int(n[3:]): a for n, a in self._arrays.items() if n.startswith("pos")}
        self.crd = {int(n[3:]): a for n, a in self._arrays.items() if n.startswith("crd")}
        self.vals = self._arrays["vals"]

    # ---- what it is ----
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> str:
        return self.__dict__.get("_dtype") or self.__dict__.setdefault(
            "_dtype", self.vals.dtype.name)

    @property
    def nnz(self) -> int:
        """The number of stored values (explicit zeros and COO's duplicates included;
        every value of each block for BSR), as scipy counts them."""
        return int(self.vals.size)

    def component(self, name: str) -> np.ndarray:
        """One array by its name: ``"pos1"``, ``"crd1"``, ``"vals"``, ...; also the arrays
        a kernel may read that the format does not store (``SparseTensor.row_ids``,
        ``transpose_ids``), derived once and kept:

        * ``"rows{k}"``: the parent of each position of compressed level ``k`` (CSR's
          row of each stored entry), from ``pos``;
        * ``"tpos{k}"``, ``"perm{k}"``: level ``k`` transposed (CSR's CSC): the
          positions in the order of their coordinates, stable, by a counting sort of
          ``crd`` (O(nnz + n)); ``perm[tpos[j]:tpos[j + 1]]`` are those of coordinate ``j``;
        * ``"spos1"``, ``"scrd1"``, ``"svals1"``, ``"slen1"``, ``"slane1"``: a CSR
          matrix's rows as sliced ELLPACK (``sliced.py``). ``svals`` holds values: it is
          this array's own, never shared with ``with_values``' results.
        """
        if name in self._arrays:
            return self._arrays[name]
        if name.startswith("svals"):
            own = self.__dict__.setdefault("_derived_values", {})
            if name not in own:
                own[name] = self._sliced(name)["svals"]
            return own[name]
        derived = self.__dict__.setdefault("_derived", {})
        if name not in derived:
            kind, level = self._derivable(name)
            if kind in SLICED_KINDS:
                layout = self._sliced(name)
                derived.update({f"{k}{level}": layout[k] for k in SLICED_KINDS
                                if k != "svals"})
                self.__dict__.setdefault("_derived_values", {}).setdefault(
                    f"svals{level}", layout["svals"])
            elif kind == "rows":
                pos = self.pos[level]
                derived[name] = np.repeat(np.arange(pos.size - 1, dtype=np.int32),
                                          np.diff(pos))
            else:
                extent = self._extent(level)
                derived[f"tpos{level}"], derived[f"perm{level}"] = \
                    transpose(self.crd[level], extent)
        return derived[name]

    def _derivable(self, name: str) -> tuple:
        """``(kind, level)`` of a derived component's name; KeyError for any other."""
        kind, level = name.rstrip("0123456789"), name[len(name.rstrip("0123456789")):]
        if kind not in DERIVED or not level or int(level) not in self.pos or \
                int(level) == 0:
            raise KeyError(f"sparse array ({self.format}): no component {name!r}; "
                           f"expected one of {', '.join(self._arrays)} or "
                           f"{'/'.join(DERIVED)} of a compressed level below another "
                           f"({', '.join(str(k) for k in self.pos if k)})")
        if kind in SLICED_KINDS and self.format.name != "csr":
            raise KeyError(f"sparse array ({self.format}): no component {name!r}; sliced "
                           f"rows are derived for CSR")
        return kind, int(level)

    def _sliced(self, name: str) -> dict:
        _, level = self._derivable(name)
        return sliced_ell(self.pos[level], self.crd[level], self.vals)

    def _extent(self, level: int) -> int:
        """The number of coordinates of ``level`` (its dimension over the block)."""
        d = self.format.order[level]
        return self.shape[d] // (self.format.block[d] if self.format.block else 1)

    def with_values(self, vals) -> "SparseArray":
        """A matrix with this one's structure (shared, and its derived rows) and the
        values ``vals``: the result of a kernel over the stored positions."""
        vals = np.ascontiguousarray(vals)
        if vals.shape != self.vals.shape:
            raise ValueError(f"with_values: expected {self.vals.shape} values, got "
                             f"{vals.shape}")
        if vals.dtype.name not in VALUE_DTYPES:
            raise ValueError(f"with_values: expected values of one of "
                             f"{', '.join(VALUE_DTYPES)}, got {vals.dtype}")
        # the structure is this one's, already checked and converted: shared as it is
        # (a kernel's result: no per-call checks of arrays known to be right)
        out = object.__new__(SparseArray)
        out.shape, out.format, out.pos, out.crd = self.shape, self.format, self.pos, self.crd
        out._arrays = {**self._arrays, "vals": vals}
        out.vals = vals
        out.__dict__["_derived"] = self.__dict__.setdefault("_derived", {})
        return out

    def components(self) -> dict:
        """The arrays by name, in a kernel's argument order."""
        return dict(self._arrays)

    def arrays(self, device: str | None = None, like=None) -> list:
        """The arrays in the order of ``SparseTensor.placeholders()``: each level's pos,
        then crd, then vals — and with ``like=`` (the ``td.sparse_placeholder`` a kernel
        was built over) the derived arrays it reads too, in its order. Contiguous numpy
        arrays, or with ``device=`` copies there (``td.nd.NDArray``)."""
        names = list(self._arrays) if like is None else list(like.components())
        arrays = [self.component(name) for name in names]
        if device is None:
            return arrays
        from ..nd import array
        return [array(a, device=device) for a in arrays]

    def __repr__(self):
        block = f", block={self.format.block}" if self.format.block else ""
        return (f"SparseArray({self.shape}, {self.format}{block}, {self.dtype}, "
                f"nnz={self.nnz})")

    # ---- conversions ----
    def asformat(self, format) -> "SparseArray":
        """This array in another format (itself if it is in that one already)."""
        target = _resolve(format, self.format)
        if target == self.format:
            return self
        check_shape(self.shape, target)
        arrays = convert_with_scipy(self, target)
        if arrays is None:
            coords, values = unpack(self._arrays, self.shape, self.format)
            arrays = pack(coords, values, self.shape, target)
        return SparseArray(self.shape, target, arrays, check=False)

    def astype(self, dtype) -> "SparseArray":
        """The same structure with the values cast to ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype.name not in VALUE_DTYPES:
            raise TypeError(f"dtype: expected one of {', '.join(VALUE_DTYPES)}, got {dtype}")
        return self.with_values(self.vals.astype(dtype))

    def to_dense(self) -> np.ndarray:
        """A dense numpy array (duplicates summed)."""
        coords, values = unpack(self._arrays, self.shape, self.format)
        out = np.zeros(self.shape, self.vals.dtype)
        if all(level.unique for level in self.format.levels):
            out[tuple(coords)] = values
        else:
            np.add.at(out, tuple(coords), values)
        return out

    def to_scipy(self, matrix: bool = False):
        """A scipy.sparse array (``matrix=True``: a matrix) sharing these arrays: csr,
        csc, bsr, coo; dcsr becomes csr, any other format coo."""
        return to_scipy(self, matrix)

    def to_torch(self):
        """A torch sparse tensor on the CPU sharing these arrays where torch can: CSR
        (from csr or dcsr), CSC, BSR, else COO."""
        return to_torch(self)


def transpose(crd: np.ndarray, extent: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tpos, perm)``: the positions ``0..len(crd)`` ordered by coordinate, stably, and
    where each coordinate's run starts (``extent + 1`` entries). A least-significant-
    digit radix sort on 16-bit digits: numpy's stable sort of 16-bit keys is a counting
    sort, so each pass is O(nnz + 2**16), not O(nnz log nnz)."""
    crd = np.asarray(crd, np.int64)
    perm = np.arange(crd.size, dtype=np.int64)
    for shift in range(0, max(int(extent) - 1, 1).bit_length(), 16):
        digit = ((crd[perm] >> shift) & 0xFFFF).astype(np.uint16)
        perm = perm[np.argsort(digit, kind="stable")]
    counts = np.bincount(crd, minlength=extent)
    tpos = np.zeros(extent + 1, np.int32)
    np.cumsum(counts, out=tpos[1:])
    return tpos, perm.astype(np.int32)


def _resolve(format, current: Format) -> Format:
    """The format asked for; ``"bsr"`` by name keeps a BSR input's block."""
    if format is None:
        return current
    if format == "bsr" and is_bsr(current):
        return current
    return as_format(format)


def sparse_array(data, format=None, shape=None, dtype=None, check: bool = True) -> SparseArray:
    """A ``SparseArray`` from a scipy.sparse matrix or array, a torch sparse tensor, a
    dense array (``format=`` needed) or a dict of its arrays by name (``format=`` and
    ``shape=`` needed).

    ``format``: csr, csc, coo, dcsr, bsr or a ``td.Format``; by default the input's own.
    ``dtype``: the values' type (by default the input's). ``check=False`` skips the
    O(nnz) structure checks, for trusted data.

    >>> A = td.nd.sparse_array(np.eye(3, dtype="float32"), format="csr")
    >>> [a.tolist() for a in A.arrays()]
    [[0, 1, 2, 3], [0, 1, 2], [1.0, 1.0, 1.0]]
    """
    if isinstance(data, SparseArray):
        array = data
    elif is_scipy(data):            # before dict: scipy's dok_array is one
        array = SparseArray(*from_scipy(data), check=check)
    elif isinstance(data, dict):
        if format is None or shape is None:
            raise TypeError("sparse_array: arrays by name need format= and shape=")
        array = SparseArray(shape, as_format(format), data, check=check)
    elif is_torch_sparse(data):
        array = SparseArray(*from_torch(data), check=check)
    else:
        array = _from_dense(data, format)
    if shape is not None and tuple(shape) != array.shape:
        raise ValueError(f"sparse_array: shape {tuple(shape)} was given, the data has "
                         f"shape {array.shape}")
    array = array.asformat(format)
    if dtype is not None and np.dtype(dtype) != array.vals.dtype:
        array = array.astype(dtype)
    return array


def _from_dense(data, format) -> SparseArray:
    if format is None:
        raise TypeError(f"sparse_array: a dense {type(data).__name__} needs format= (csr, "
                        f"csc, coo, dcsr, bsr or a td.Format)")
    dense = np.asarray(data)
    format = as_format(format)
    check_shape(dense.shape, format)
    where = np.nonzero(dense)
    arrays = pack(np.array(where, np.int64).reshape(dense.ndim, -1), dense[where],
                  dense.shape, format)
    # packing builds a valid structure; the values' dtype is still the caller's
    return SparseArray(dense.shape, format, arrays, check=True)
