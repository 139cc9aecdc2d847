"""A sparse workload: an operator of ``kernels/sparse.py`` on one sparse matrix.

    matrix = Matrix.random(4096, 4096, 0.01, seed=0)     # or Matrix.file("a.mtx")
    w = SparseWorkload("spmm", matrix, [(4096, 64)])      # tensordsl tune spmm --random ...
    w.key   # {"op":"spmm","args":[["sparse",[4096,4096],"float32",167772],
            #                      ["array",[4096,64],"float32"]],"attrs":{}}

**The key** is the operator, the matrix's shape, dtype and number of stored entries
(nnz), and the dense operands' shapes: what ``td.ops`` knows of a call without reading
the pattern (hashing the pattern would cost O(nnz) per new array; TVM's sparse tuning
keys by nnz likewise). A kernel is compiled per shape with nnz symbolic, so every
matrix of one shape and nnz runs the same code; two such matrices with different
patterns (uniform, power-law) share records even though their best configurations may
differ — tune on the matrix you run, or one like it.

**The matrix is measured, not only its size**: it travels to the measuring workers as
the workload's ``source`` (a Matrix Market file's absolute path, or the arguments of the
seeded random generator), so every trial runs on that very pattern, and each record
keeps it, saying what it was measured on. Nothing is downloaded. A worker that reads a
different nnz or shape than the key says (the file changed) fails the trial with that
reason.
"""
from __future__ import annotations

import functools
import json
import os

import numpy as np

from .records import canonical

DENSE_OPERANDS = {"spmv": ("x",), "spmm": ("B",), "sddmm": ("X", "Y"), "sparse_mul": ("D",),
                  "sparse_softmax": ()}
TUNABLE = tuple(DENSE_OPERANDS)       # the sparse operators with a template (not sparse_add)


def sparse_key(op: str, shape, nnz: int, dtype: str, dense_shapes) -> str:
    """The record key of ``op`` on a CSR matrix of ``shape``, ``nnz`` and ``dtype`` with
    dense operands of ``dense_shapes`` (the same from the CLI and from ``td.ops``)."""
    args = [["sparse", [int(d) for d in shape], str(dtype), int(nnz)]]
    args += [["array", [int(d) for d in s], str(dtype)] for s in dense_shapes]
    return canonical({"op": op, "args": args, "attrs": {}})


def tuned_config(op: str, shape, nnz: int, dtype: str, dense_shapes,
                 target: str = "llvm") -> dict | None:
    """The best record's configuration for that key (``history.best_config``: an
    enclosing ``apply_history_best``, the local database, the shipped records)."""
    from .history import best_config
    return best_config(sparse_key(op, shape, nnz, dtype, dense_shapes), target, op)


class Matrix:
    """Where a workload's matrix comes from: ``{"file": path}`` (Matrix Market) or
    ``{"random": [rows, cols, density, seed], "rows": "uniform" | "power-law"}``."""

    def __init__(self, spec: dict):
        self.spec = dict(spec)

    @classmethod
    def file(cls, path: str) -> "Matrix":
        return cls({"file": os.path.abspath(path)})

    @classmethod
    def random(cls, rows: int, cols: int, density: float, seed: int = 0,
               power_law: bool = False) -> "Matrix":
        return cls({"random": [int(rows), int(cols), float(density), int(seed)],
                    "rows": "power-law" if power_law else "uniform"})

    def load(self, dtype: str):
        """The matrix as a checked CSR ``td.nd`` sparse array of ``dtype`` (cached: a
        worker measures many configurations on one matrix)."""
        return _load(canonical(self.spec), str(dtype))

    def __repr__(self):
        if "file" in self.spec:
            return self.spec["file"]
        rows, cols, density, seed = self.spec["random"]
        law = " power-law" if self.spec.get("rows") == "power-law" else ""
        return f"random{law} {rows}x{cols} density {density:g} seed {seed}"


@functools.lru_cache(maxsize=4)
def _load(spec_json: str, dtype: str):
    from tensordsl.sparse import sparse_array
    spec = json.loads(spec_json)
    if "file" in spec:
        matrix = read_matrix_market(spec["file"])
    else:
        rows, cols, density, seed = spec["random"]
        matrix = (power_law_matrix if spec.get("rows") == "power-law" else uniform_matrix)(
            rows, cols, density, seed)
    return sparse_array(matrix.tocsr(), format="csr", dtype=dtype)


def read_matrix_market(path: str):
    """A Matrix Market file as a scipy sparse matrix (real or pattern entries)."""
    import scipy.io
    import scipy.sparse
    if not os.path.isfile(path):
        raise ValueError(f"--matrix: no such file: {path!r}")
    try:
        matrix = scipy.io.mmread(path)
    except Exception as err:    # scipy raises ValueError, OSError, IndexError, ...
        raise ValueError(f"--matrix: {path!r} is not a readable Matrix Market file "
                         f"({type(err).__name__}: {err})") from None
    if not scipy.sparse.issparse(matrix):
        matrix = scipy.sparse.coo_matrix(matrix)     # an "array" (dense) file
    if matrix.dtype.kind not in "fiub":
        raise ValueError(f"--matrix: {path!r} holds {matrix.dtype} values; the sparse "
                         "operators take real values")
    return matrix


def uniform_matrix(rows: int, cols: int, density: float, seed: int):
    """``scipy.sparse.random``: every position equally likely, values uniform in [0, 1)."""
    import scipy.sparse
    return scipy.sparse.random(rows, cols, density, format="csr", dtype=np.float64,
                               random_state=np.random.default_rng(seed))


def power_law_matrix(rows: int, cols: int, density: float, seed: int):
    """Row lengths from a Pareto law (shape 1.5: a few long rows hold much of the
    entries, the skewed case of ``schedule="nonzeros"``), scaled to about
    ``density * rows * cols`` entries, distinct uniform columns in each row."""
    import scipy.sparse
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, rows) + 1.0
    lengths = np.minimum(cols, np.floor(weights / weights.sum() * density * rows * cols))
    lengths = lengths.astype(np.int64)
    indices = [np.sort(rng.choice(cols, size=k, replace=False)) for k in lengths]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    data = rng.random(int(indptr[-1]))
    return scipy.sparse.csr_matrix(
        (data, np.concatenate(indices) if indices else np.zeros(0, np.int64), indptr),
        shape=(rows, cols))


class SparseWorkload:
    """What ``tune`` measures for a sparse operator; the interface of ``Workload``
    (``key``, ``source``, ``template``, ``space``, ``default_config``, ``schedule``,
    ``build``, ``arrays``, ``flops``, ``tuned_config``)."""

    scheduler = "template"
    user = False

    def __init__(self, op: str, matrix: Matrix, dense_shapes=(), dtype: str = "float32",
                 shape=None, nnz: int | None = None):
        """``shape`` and ``nnz``: the matrix's, when known (a worker takes them from the
        key and checks the matrix against them); else read from the matrix."""
        if op not in TUNABLE:
            raise ValueError(f"{op}: not a tunable sparse operator; expected one of "
                             f"{', '.join(TUNABLE)}")
        self.op, self.matrix, self.dtype = op, matrix, str(dtype)
        self.dense_shapes = tuple(tuple(int(d) for d in s) for s in dense_shapes)
        if shape is None or nnz is None:
            S = matrix.load(self.dtype)
            shape, nnz = S.shape, S.nnz
        self.shape, self.nnz = tuple(int(d) for d in shape), int(nnz)

    # ------------------------------------------------------------ identity
    @property
    def key(self) -> str:
        return sparse_key(self.op, self.shape, self.nnz, self.dtype, self.dense_shapes)

    @property
    def source(self) -> str:
        return canonical({"matrix": self.matrix.spec})

    @classmethod
    def from_key(cls, key: str, source: str | None) -> "SparseWorkload":
        d = json.loads(key)
        (_, shape, dtype, nnz), *dense = d["args"]
        if source is None:
            raise ValueError(f"{d['op']}: the matrix (its file or random generator) is "
                             "needed to measure this workload; it travels as its source")
        return cls(d["op"], Matrix(json.loads(source)["matrix"]), [a[1] for a in dense],
                   dtype, shape, nnz)

    def __repr__(self):
        dense = "".join(", " + "x".join(map(str, s)) for s in self.dense_shapes)
        rows, cols = self.shape
        return f"{self.op}(csr {rows}x{cols} nnz={self.nnz} {self.dtype}{dense})"

    # ------------------------------------------------------------ template
    @property
    def template(self) -> str:
        return self.op    # schedules/cpu/sparse.py: TEMPLATES, SPACES

    def space(self) -> dict:
        from schedules.cpu.space import space_for
        return space_for(self.template)

    def default_config(self) -> dict:
        from schedules.cpu.space import defaults_for
        return defaults_for(self.template)

    def tuned_config(self, target: str = "llvm") -> dict | None:
        return tuned_config(self.op, self.shape, self.nnz, self.dtype, self.dense_shapes,
                            target)

    def schedule(self, config: dict | None = None):
        """(schedule, tensors) for ``config``, as ``td.ops`` builds it."""
        from tensordsl.sparse.ops import scheduled
        return scheduled(self.op, self.shape, self.dtype, self.dense_shapes, config)

    def build(self, config: dict | None = None):
        """(kernel, result shape, result dtype): the kernel ``td.ops`` would run, taking
        the sparse array itself first (``arrays``): which of its arrays a kernel reads
        depends on the configuration (SpMV's sliced rows read a derived layout)."""
        from tensordsl.sparse.ops import build
        f, tensors = build(self.op, self.shape, self.dtype, self.dense_shapes, config)
        n_components = len(tensors) - len(self.dense_shapes) - 1
        names = [t.name.split(".", 1)[1] for t in tensors[:n_components]]
        return OnMatrix(f, names), self._result_shape(tensors[-1]), tensors[-1].dtype

    def _result_shape(self, out) -> tuple:
        from tensordsl.sparse.ops import PATTERN_RESULTS
        if self.op in PATTERN_RESULTS:
            return (self.nnz,)
        return tuple(int(d.value) for d in out.shape)

    # ------------------------------------------------------------ running
    def arrays(self, seed: int = 0) -> list:
        """The matrix (a ``td.nd`` sparse array), then random dense operands."""
        S = self.matrix.load(self.dtype)
        if S.shape != self.shape or S.nnz != self.nnz:
            raise ValueError(f"the matrix {self.matrix!r} is now {S.shape[0]}x{S.shape[1]} "
                             f"with {S.nnz} stored entries, not the workload's "
                             f"{self.shape[0]}x{self.shape[1]} with {self.nnz} (it changed)")
        rng = np.random.default_rng(seed)
        dense = [rng.standard_normal(s).astype(self.dtype) for s in self.dense_shapes]
        return [S, *dense]

    def flops(self, out_shape=None) -> float | None:
        """Multiply-adds counted twice: nnz of them per dense column (SpMV: one)."""
        if self.op in ("spmv", "spmm", "sddmm"):
            width = self.dense_shapes[0][-1] if self.op != "spmv" else 1
            return 2.0 * self.nnz * width
        return None


class OnMatrix:
    """A sparse kernel called on the sparse array itself: ``f(S, *dense, out)`` passes
    ``S``'s arrays the kernel reads (by name; looked up once per array), then the rest."""

    def __init__(self, kernel, names: list):
        self.kernel, self.names = kernel, names
        self._matrix, self._components = None, []

    def __call__(self, S, *rest):
        if S is not self._matrix:
            self._matrix, self._components = S, [S.component(n) for n in self.names]
        return self.kernel(*self._components, *rest)
