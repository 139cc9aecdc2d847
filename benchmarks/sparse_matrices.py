"""The sparse suite's matrices: deterministic (seeded), generated on the spot, nothing
downloaded. Every matrix is a canonical ``scipy.sparse.csr_matrix`` (sorted column
indices, no duplicates, no explicit zeros), float32 values, int32 indices.

==============  =============================================================================
name            source
==============  =============================================================================
uniform         ``scipy.sparse.random_array`` 4096 x 4096 at 1% density (every position
                equally likely), values uniform in [0, 1): the issue's SpMM/SpMV matrix.
uniform_b       the same generator with another seed: the second operand of ``sparse_add``.
rmat            R-MAT (Chakrabarti, Zhan, Faloutsos, SDM 2004) with Graph500's Kronecker
                parameters a, b, c = 0.57, 0.19, 0.19, scale 14 (16384 x 16384), edge factor
                16; duplicate edges merged. Vertex labels are *not* permuted (Graph500's
                generator permutes them; the R-MAT paper does not): row ``i``'s expected
                length falls with the number of one bits in ``i``, so the long rows cluster at
                low indices, as in a graph stored in degree or crawl order. Power-law row
                lengths: the skewed case for row-split schedules.
grid2d          the graph Laplacian of a 256 x 256 grid (``networkx.grid_2d_graph``;
                ``networkx.laplacian_matrix`` of it, built here with Kronecker products:
                the same matrix, in 10 ms instead of 0.4 s): the 5-point stencil of a
                finite-difference PDE, 2-5 entries a row.
barabasi        the adjacency of ``networkx.barabasi_albert_graph(16384, 8, seed=0)``
                (preferential attachment: power-law degrees, the oldest nodes the hubs,
                at low indices), values uniform in [0.5, 1.5).
digits_knn      the symmetrized 16-nearest-neighbour graph of scikit-learn's handwritten
                digits (``sklearn.datasets.load_digits``: 1797 real 8x8 images, shipped
                with scikit-learn), Euclidean distances as values: the affinity graph of
                spectral clustering or a graph neural network over real data.
==============  =============================================================================

Their statistics (``python -m benchmarks.sparse_matrices`` prints them; ``DOCUMENTED``
holds them and tests/sparse/test_matrices.py checks them):

==========  =====  =====  ======  ========  =======  ========  ==========
name        rows   cols   nnz     mean row  max row  max/mean  empty rows
==========  =====  =====  ======  ========  =======  ========  ==========
uniform     4096   4096   167772  41.0      64       1.56      0
uniform_b   4096   4096   167772  41.0      73       1.78      0
rmat        16384  16384  228325  13.9      2424     174       5400
grid2d      65536  65536  326656  4.98      5        1.00      0
barabasi    16384  16384  262016  16.0      510      31.9      0
digits_knn  1797   1797   38922   21.7      52       2.40      0
==========  =====  =====  ======  ========  =======  ========  ==========

In ``rmat`` the first 8192 rows hold 74% of the nonzeros, in ``barabasi`` 71%: two
threads splitting the rows in halves get unequal work.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

# name -> (rows, cols, nnz, max row length, empty rows): what the generators give
DOCUMENTED = {
    "uniform": (4096, 4096, 167772, 64, 0),
    "uniform_b": (4096, 4096, 167772, 73, 0),
    "rmat": (16384, 16384, 228325, 2424, 5400),
    "grid2d": (65536, 65536, 326656, 5, 0),
    "barabasi": (16384, 16384, 262016, 510, 0),
    "digits_knn": (1797, 1797, 38922, 52, 0),
}

# Graph500's Kronecker initiator (its reference generator, kronecker_generator.m)
GRAPH500_ABC = (0.57, 0.19, 0.19)


def canonical(a, values: np.ndarray | None = None) -> sp.csr_matrix:
    """``a`` as a canonical float32 CSR matrix with int32 indices; ``values`` (one per
    stored entry, in CSR order) replace its values when given."""
    a = sp.csr_matrix(a)
    a.sum_duplicates()          # also sorts the column indices of every row
    a.eliminate_zeros()
    data = a.data if values is None else values
    return sp.csr_matrix((data.astype(np.float32), a.indices.astype(np.int32),
                          a.indptr.astype(np.int32)), shape=a.shape)


def uniform(rows: int, cols: int, density: float, seed: int = 0) -> sp.csr_matrix:
    """Every position equally likely (``scipy.sparse.random_array``), values in [0, 1)."""
    a = sp.random_array((rows, cols), density=density, format="csr", dtype=np.float32,
                        rng=np.random.default_rng(seed))
    return canonical(a)


def rmat(scale: int, edge_factor: int = 16, abc: tuple = GRAPH500_ABC, seed: int = 0,
         permute: bool = False) -> sp.csr_matrix:
    """R-MAT: ``edge_factor * 2**scale`` edges, each placed by ``scale`` recursive choices
    of a quadrant (a: top left, b: top right, c: bottom left, d = 1 - a - b - c), drawn
    as Graph500's reference generator draws them (row bit first, then the column bit
    conditioned on it). Duplicates merged; values uniform in [0.5, 1.5). ``permute``
    relabels the vertices at random, as Graph500 does."""
    a, b, c = abc
    n, edges = 1 << scale, edge_factor << scale
    rng = np.random.default_rng(seed)
    row = np.zeros(edges, np.int64)
    col = np.zeros(edges, np.int64)
    for level in range(scale):
        row_bit = rng.random(edges) > a + b
        col_bit = rng.random(edges) > np.where(row_bit, c / (1 - a - b), a / (a + b))
        row |= row_bit.astype(np.int64) << level
        col |= col_bit.astype(np.int64) << level
    if permute:
        label = rng.permutation(n)
        row, col = label[row], label[col]
    pattern = sp.coo_matrix((np.ones(edges), (row, col)), shape=(n, n))
    a = canonical(pattern)
    return canonical(a, rng.uniform(0.5, 1.5, a.nnz))


def grid_laplacian(side: int) -> sp.csr_matrix:
    """``networkx.laplacian_matrix(networkx.grid_2d_graph(side, side))``: node (i, j) is
    row ``i * side + j``; degree on the diagonal, -1 for each grid neighbour."""
    path = sp.diags([np.ones(side - 1), np.ones(side - 1)], [-1, 1])
    eye = sp.identity(side)
    adjacency = sp.kron(eye, path) + sp.kron(path, eye)
    degree = sp.diags(np.asarray(adjacency.sum(axis=1)).ravel())
    return canonical(degree - adjacency)


def barabasi_albert(n: int, m: int, seed: int = 0) -> sp.csr_matrix:
    """The adjacency of ``networkx.barabasi_albert_graph(n, m, seed)`` (nodes in label
    order), values uniform in [0.5, 1.5)."""
    import networkx as nx
    graph = nx.barabasi_albert_graph(n, m, seed=seed)
    a = canonical(nx.to_scipy_sparse_array(graph, nodelist=range(n), format="csr"))
    return canonical(a, np.random.default_rng(seed).uniform(0.5, 1.5, a.nnz))


def digits_knn(k: int = 16) -> sp.csr_matrix:
    """The ``k``-nearest-neighbour graph of scikit-learn's digits (Euclidean distances,
    brute force), made symmetric: an edge kept when either end counts the other among
    its ``k`` nearest."""
    from sklearn.datasets import load_digits
    from sklearn.neighbors import NearestNeighbors
    # queried without X, the graph leaves each point out of its own neighbours
    search = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(load_digits().data)
    knn = search.kneighbors_graph(mode="distance")
    return canonical(knn.maximum(knn.T))


GENERATORS = {
    "uniform": lambda: uniform(4096, 4096, 0.01, seed=0),
    "uniform_b": lambda: uniform(4096, 4096, 0.01, seed=1),
    "rmat": lambda: rmat(14, 16, seed=0),
    "grid2d": lambda: grid_laplacian(256),
    "barabasi": lambda: barabasi_albert(16384, 8, seed=0),
    "digits_knn": lambda: digits_knn(16),
}


@lru_cache(maxsize=None)
def matrix(name: str) -> sp.csr_matrix:
    """The named matrix (see the module's table). Treat it as read-only: it is cached."""
    if name not in GENERATORS:
        raise KeyError(f"sparse matrix {name!r}: expected one of {sorted(GENERATORS)}")
    return GENERATORS[name]()


def stats(a: sp.csr_matrix) -> dict:
    """Rows, columns, nnz, density and the row-length distribution of ``a``."""
    lengths = np.diff(a.indptr)
    mean = a.nnz / a.shape[0]
    return {"rows": a.shape[0], "cols": a.shape[1], "nnz": int(a.nnz),
            "density": a.nnz / (a.shape[0] * a.shape[1]), "mean_row": mean,
            "max_row": int(lengths.max()), "max/mean": float(lengths.max() / mean),
            "empty_rows": int((lengths == 0).sum())}


if __name__ == "__main__":
    for name in GENERATORS:
        print(name, stats(matrix(name)))
