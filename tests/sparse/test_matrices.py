"""The sparse benchmark matrices (benchmarks/sparse_matrices.py): deterministic, canonical,
and with the properties their documentation states."""
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks import sparse_matrices as sm

NAMES = sorted(sm.GENERATORS)


@pytest.fixture(scope="module")
def built():
    """Every matrix generated twice, bypassing ``matrix``'s cache."""
    return {name: (sm.GENERATORS[name](), sm.GENERATORS[name]()) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_generated_twice_identically(built, name):
    first, second = built[name]
    np.testing.assert_array_equal(first.indptr, second.indptr)
    np.testing.assert_array_equal(first.indices, second.indices)
    np.testing.assert_array_equal(first.data, second.data)


@pytest.mark.parametrize("name", NAMES)
def test_canonical_float32_csr_with_int32_indices(built, name):
    a = built[name][0]
    assert isinstance(a, sp.csr_matrix)
    assert a.dtype == np.float32
    assert a.indptr.dtype == np.int32 and a.indices.dtype == np.int32
    # sorted and unique column indices in every row, checked directly (not via the flag)
    row_of = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    same_row = row_of[1:] == row_of[:-1]
    assert np.all(np.diff(a.indices.astype(np.int64))[same_row] > 0)
    assert np.all(a.data != 0)


@pytest.mark.parametrize("name", NAMES)
def test_documented_statistics(built, name):
    s = sm.stats(built[name][0])
    assert (s["rows"], s["cols"], s["nnz"], s["max_row"], s["empty_rows"]) == \
        sm.DOCUMENTED[name]


def test_docstring_table_matches_documented():
    lines = {line.split()[0]: line.split() for line in sm.__doc__.splitlines()
             if line.split() and line.split()[0] in sm.DOCUMENTED and len(line.split()) == 8}
    for name, (rows, cols, nnz, max_row, empty) in sm.DOCUMENTED.items():
        doc = lines[name]
        assert [int(doc[1]), int(doc[2]), int(doc[3]), int(doc[5]), int(doc[7])] == \
            [rows, cols, nnz, max_row, empty], name


def test_uniform_density_values_and_seed():
    a = sm.matrix("uniform")
    assert a.nnz == round(0.01 * 4096 * 4096)
    assert a.data.min() >= 0 and a.data.max() < 1
    b = sm.matrix("uniform_b")
    assert (a != b).nnz > 0.9 * a.nnz  # another seed, another pattern


def test_rmat_power_law_rows_cluster_at_low_indices():
    a = sm.matrix("rmat")
    lengths = np.diff(a.indptr)
    s = sm.stats(a)
    assert s["max/mean"] > 100
    # a + b = 0.76 of the edges fall in the top half before duplicates merge
    share = lengths[: a.shape[0] // 2].sum() / a.nnz
    assert 0.7 < share < 0.8
    assert a.data.min() >= 0.5 and a.data.max() < 1.5
    # row 0 (no one bits) is the longest row of its generator's expectation
    assert lengths[0] == lengths.max()


def test_rmat_permuted_spreads_the_long_rows():
    a = sm.rmat(12, 16, seed=0, permute=True)
    share = np.diff(a.indptr)[: a.shape[0] // 2].sum() / a.nnz
    assert 0.35 < share < 0.65
    assert sm.stats(a)["max/mean"] > 20  # still skewed, only relabelled


def test_rmat_seed_changes_the_pattern():
    assert (sm.rmat(10, 8, seed=0) != sm.rmat(10, 8, seed=1)).nnz > 0


@pytest.mark.parametrize("side", [1, 2, 5])
def test_grid_laplacian_is_networkx_laplacian(side):
    ours = sm.grid_laplacian(side)
    theirs = nx.laplacian_matrix(nx.grid_2d_graph(side, side)).astype(np.float64)
    np.testing.assert_array_equal(ours.toarray(), theirs.toarray())


def test_grid2d_is_a_laplacian():
    a = sm.matrix("grid2d")
    np.testing.assert_allclose(np.asarray(a.sum(axis=1)).ravel(), 0)
    assert abs(a - a.T).max() == 0
    assert set(np.unique(a.diagonal())) == {2.0, 3.0, 4.0}


def test_barabasi_albert_graph():
    a = sm.matrix("barabasi")
    n, m = 16384, 8
    assert a.nnz == 2 * m * (n - m)  # m edges per node after the first m, both directions
    pattern = (a != 0).astype(np.int8)
    assert (pattern != pattern.T).nnz == 0
    assert a.diagonal().max() == 0
    assert a.data.min() >= 0.5 and a.data.max() < 1.5
    lengths = np.diff(a.indptr)
    assert lengths.min() >= m and lengths[:100].mean() > 5 * lengths[-100:].mean()


def test_digits_knn_distances():
    from sklearn.datasets import load_digits
    a = sm.matrix("digits_knn")
    images = load_digits().data
    assert abs(a - a.T).max() == 0
    assert a.diagonal().max() == 0
    assert np.diff(a.indptr).min() >= 16
    coo = a.tocoo()
    expected = np.linalg.norm(images[coo.row] - images[coo.col], axis=1)
    np.testing.assert_allclose(coo.data, expected, rtol=1e-6)
    # each row holds at least its 16 nearest neighbours
    for i in (0, 500, 1796):
        d = np.linalg.norm(images - images[i], axis=1)
        d[i] = np.inf
        nearest = set(np.argsort(d, kind="stable")[:16])
        kth = np.sort(d)[15]
        row = set(a.indices[a.indptr[i]:a.indptr[i + 1]])
        # ties at the 16th distance may pick either neighbour
        assert {j for j in nearest if d[j] < kth} <= row


def test_unknown_matrix_named_in_error():
    with pytest.raises(KeyError, match="'nope'.*expected one of"):
        sm.matrix("nope")


def test_stats_of_a_small_matrix():
    a = sm.canonical(sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 0], [3, 4, 5]], np.float32)))
    assert sm.stats(a) == {"rows": 3, "cols": 3, "nnz": 5, "density": 5 / 9,
                           "mean_row": 5 / 3, "max_row": 3, "max/mean": 3 / (5 / 3),
                           "empty_rows": 1}
