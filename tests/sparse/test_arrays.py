"""td.nd.sparse_array: built from scipy.sparse, torch.sparse, dense arrays and arrays by
name, converted between formats and back, compared with scipy's own structures and with
dense numpy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import tensordsl as td
from tensordsl.nd import SparseArray

NAMED = ["csr", "csc", "coo", "dcsr", "bsr"]
BSR22 = td.Format.named("bsr", block=(2, 2))


def matrix(shape=(6, 8), density=0.3, seed=0, dtype="float32"):
    """A random dense matrix with an empty row, the second row dense."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random(shape) < density, rng.standard_normal(shape), 0).astype(dtype)
    if shape[0] > 2:
        dense[1] = rng.standard_normal(shape[1])
        dense[2] = 0
    return dense


def target(name):
    return BSR22 if name == "bsr" else name


def scipy_reference(data, name):
    """scipy's canonical arrays of ``data`` (dense or scipy.sparse) in the named format,
    by scipy's own conversions (which keep explicit zeros, a BSR block's too)."""
    m = sp.csr_array(data) if isinstance(data, np.ndarray) else data
    if name == "coo":
        m = m.tocoo()
        m.sum_duplicates()                                # sorts row-major
        return [[0, m.nnz], m.row, m.col, m.data]
    m = {"csr": m.tocsr, "dcsr": m.tocsr, "csc": m.tocsc,
         "bsr": lambda: m.tobsr(blocksize=(2, 2))}[name]()
    m.sum_duplicates()
    if name != "dcsr":
        return [m.indptr, m.indices, m.data]
    rows = np.flatnonzero(np.diff(m.indptr))          # dcsr: csr without its empty rows
    return [[0, len(rows)], rows, np.append(m.indptr[rows], m.indptr[-1]), m.indices, m.data]


SOURCES = {
    "dense": lambda d: d,
    "csr_array": sp.csr_array, "csr_matrix": sp.csr_matrix, "csc_array": sp.csc_array,
    "coo_array": sp.coo_array, "coo_matrix": sp.coo_matrix,
    "bsr_array": lambda d: sp.bsr_array(d, blocksize=(2, 2)),
    "lil_array": sp.lil_array, "dok_array": sp.dok_array,
}


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("source", list(SOURCES))
def test_every_source_into_every_format_gives_scipy_arrays(source, name):
    dense = matrix()
    data = SOURCES[source](dense)
    a = td.nd.sparse_array(data, format=target(name))
    assert a.format == td.sparse.as_format(target(name)) and a.shape == dense.shape
    for got, want in zip(a.arrays(), scipy_reference(data, name), strict=True):
        np.testing.assert_array_equal(got, want)
    for got in a.arrays()[:-1]:
        assert got.dtype == np.int32 and got.flags.c_contiguous
    np.testing.assert_array_equal(a.to_dense(), dense)
    np.testing.assert_array_equal(a.to_scipy().toarray(), dense)
    assert a.dtype == "float32" and a.nnz == a.to_scipy().nnz


@pytest.mark.parametrize("name", NAMED)
def test_to_scipy_keeps_the_format_and_shares_the_values(name):
    a = td.nd.sparse_array(matrix(), format=target(name))
    m = a.to_scipy()
    assert m.format == {"dcsr": "csr"}.get(name, name) and isinstance(m, sp.sparray)
    assert np.shares_memory(m.data, a.vals)
    assert isinstance(a.to_scipy(matrix=True), sp.spmatrix)
    if name != "dcsr":
        back = td.nd.sparse_array(m)            # the format comes back as it was
        assert back.format == a.format
        for x, y in zip(back.arrays(), a.arrays(), strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("shape", [(6, 8), (0, 6), (4, 0), (0, 0)])
def test_empty_matrices(name, shape):
    dense = np.zeros(shape, "float32")
    for data in (dense, sp.csr_array(dense), sp.coo_array(dense)):
        a = td.nd.sparse_array(data, format=target(name))
        assert a.nnz == 0 and a.shape == shape
        np.testing.assert_array_equal(a.to_dense(), dense)
        np.testing.assert_array_equal(a.to_scipy().toarray(), dense)
        for got, want in zip(a.arrays(), scipy_reference(dense, name), strict=True):
            np.testing.assert_array_equal(got, want)


def test_coo_keeps_duplicates_and_unique_formats_sum_them():
    rows, cols = np.array([2, 0, 2, 2, 1]), np.array([1, 3, 1, 0, 3])
    vals = np.array([1.0, 2.0, 4.0, 8.0, 16.0], "float32")
    m = sp.coo_array((vals, (rows, cols)), shape=(4, 4))
    coo = td.nd.sparse_array(m)
    assert coo.format == td.sparse.as_format("coo") and coo.nnz == 5
    # sorted by (row, column), stably: the two (2, 1) entries stay in input order
    np.testing.assert_array_equal(coo.crd[0], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(coo.crd[1], [3, 3, 0, 1, 1])
    np.testing.assert_array_equal(coo.vals, [2, 16, 8, 1, 4])
    np.testing.assert_array_equal(coo.to_dense(), m.toarray())
    summed = m.copy()
    summed.sum_duplicates()
    for name in ("csr", "csc", "dcsr", "bsr"):
        a = td.nd.sparse_array(m, format=target(name))
        assert a.nnz == td.nd.sparse_array(summed.toarray(), format=target(name)).nnz
        np.testing.assert_array_equal(a.to_dense(), summed.toarray())
    # the generic path (coordinates, not scipy) sums them too
    generic = td.nd.sparse_array(coo, format=td.Format(["compressed", "compressed"]))
    np.testing.assert_array_equal(generic.vals, [2, 16, 8, 5])
    assert m.nnz == 5      # the input is left as it was


def test_unsorted_and_duplicate_scipy_indices_are_sorted_and_summed_in_a_copy():
    indptr, indices = np.array([0, 3, 4]), np.array([2, 0, 2, 1])
    m = sp.csr_array((np.array([1.0, 2.0, 3.0, 4.0]), indices, indptr), shape=(2, 3))
    assert not m.has_canonical_format
    a = td.nd.sparse_array(m)
    np.testing.assert_array_equal(a.pos[1], [0, 2, 3])
    np.testing.assert_array_equal(a.crd[1], [0, 2, 1])
    np.testing.assert_array_equal(a.vals, [2.0, 4.0, 4.0])
    np.testing.assert_array_equal(m.indices, [2, 0, 2, 1])     # the input is unchanged
    assert a.to_scipy().has_sorted_indices


def test_explicit_zeros_are_kept():
    m = sp.csr_array((np.array([0.0, 1.0]), np.array([0, 2]), np.array([0, 1, 2])),
                     shape=(2, 3))
    for name in ("csr", "csc", "coo", "dcsr"):
        assert td.nd.sparse_array(m, format=name).nnz == 2
    # a dense array holds no explicit zeros
    assert td.nd.sparse_array(m.toarray(), format="csr").nnz == 1


def test_bsr_by_name_keeps_the_inputs_block_and_pads_blocks_with_zeros():
    dense = matrix((6, 9))
    m = sp.bsr_array(dense, blocksize=(3, 3))
    a = td.nd.sparse_array(m, format="bsr")
    assert a.format.block == (3, 3) and a.vals.shape[1:] == (3, 3)
    assert "block=(3, 3)" in repr(a)
    b = td.nd.sparse_array(dense, format=td.Format.named("bsr", block=(2, 3)))
    ref = sp.csr_array(dense).tobsr(blocksize=(2, 3))
    np.testing.assert_array_equal(b.vals, ref.data)
    np.testing.assert_array_equal(b.to_dense(), dense)
    with pytest.raises(ValueError, match=r"dimension 1 \(9\) is not a multiple of the block "
                                         r"\(4, 4\)"):
        td.nd.sparse_array(dense[:4], format=td.Format.named("bsr", block=(4, 4)))


@pytest.mark.parametrize("fmt", [
    td.Format(["dense", "dense", "compressed"]),              # 3-D: CSR of matrices
    td.Format(["compressed", "compressed", "compressed"]),    # CSF
    td.Format(["dense", "compressed", "compressed"], order=(2, 0, 1)),
    td.Format([td.Level("compressed", unique=False), "singleton", "singleton"]),   # COO
    td.Format(["compressed", "dense", "dense"]),
], ids=str)
def test_three_dimensional_formats_round_trip(fmt):
    rng = np.random.default_rng(3)
    dense = np.where(rng.random((3, 4, 5)) < 0.3, rng.standard_normal((3, 4, 5)), 0)
    dense[1] = 0
    a = td.nd.sparse_array(dense, format=fmt)
    np.testing.assert_array_equal(a.to_dense(), dense)
    np.testing.assert_array_equal(a.to_scipy().toarray(), dense)        # an n-D coo_array
    b = td.nd.sparse_array(a.to_scipy(), format=fmt)
    for x, y in zip(a.arrays(), b.arrays(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_arrays_by_name():
    a = td.nd.sparse_array({"pos1": [0, 2, 2, 3], "crd1": [1, 3, 0],
                            "vals": np.array([1, 2, 3], "float64")}, format="csr",
                           shape=(3, 4), dtype="float32")
    assert a.dtype == "float32"
    np.testing.assert_array_equal(a.to_dense(), [[0, 1, 0, 2], [0, 0, 0, 0], [3, 0, 0, 0]])
    with pytest.raises(ValueError, match="missing crd1; unknown 'crd'"):
        td.nd.sparse_array({"pos1": [0, 0], "crd": [], "vals": []}, format="csr",
                           shape=(1, 1))
    with pytest.raises(TypeError, match="format= and shape="):
        td.nd.sparse_array({"pos1": [0], "crd1": [], "vals": []}, format="csr")


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"a dense ndarray needs format= \(csr, csc"):
        td.nd.sparse_array(np.eye(3))
    with pytest.raises(ValueError, match="expected csr, csc, coo, dcsr, bsr or a td.Format, "
                                         "got 'csx'"):
        td.nd.sparse_array(np.eye(3), format="csx")
    with pytest.raises(ValueError, match=r"shape \(3, 4\) was given, the data has shape "
                                         r"\(3, 3\)"):
        td.nd.sparse_array(sp.eye(3, format="csr"), shape=(3, 4))
    with pytest.raises(ValueError, match=r"shape \(3,\) has 1 dimensions, format csr has 2"):
        td.nd.sparse_array(np.ones(3), format="csr")
    with pytest.raises(ValueError, match="vals: expected one of bool, .*got <U1"):
        td.nd.sparse_array(np.array([["a", ""]]), format="csr")
    with pytest.raises(ValueError, match=r"the block \(2,\) needs a positive extent for "
                                         r"each of the 2 dimensions"):
        td.nd.sparse_array(np.ones((2, 2)), format=td.Format(["dense", "compressed", "dense"],
                                                             block=(2,)))
    with pytest.raises(ValueError, match="singleton level 1 stores exactly one coordinate "
                                         "per position of level 0, position 0 has 2"):
        td.nd.sparse_array(np.ones((2, 2)), format=td.Format(["compressed", "singleton"]))


@pytest.mark.parametrize("fmt", [*NAMED, td.Format(["compressed", "dense"]),
                                 td.Format([td.Level("compressed", unique=False),
                                            "singleton", "dense"]),
                                 td.Format(["dense", "compressed", "compressed"],
                                           order=(1, 2, 0))], ids=str)
def test_arrays_come_in_the_placeholders_order(fmt):
    fmt = td.sparse.as_format(target(fmt) if isinstance(fmt, str) else fmt)
    shape = (4, 6, 2)[:fmt.ndim]
    A = td.sparse_placeholder(shape, format=fmt, name="A")
    a = td.nd.sparse_array(np.ones(shape, "float32"), format=fmt)
    placeholders = A.placeholders()
    assert [t.name.removeprefix("A.") for t in placeholders] == list(a.components())
    for t, array in zip(placeholders, a.arrays(), strict=True):
        assert array.dtype == np.dtype(t.dtype) and array.ndim == len(t.shape)


def test_dtype_repr_astype_and_device_arrays():
    a = td.nd.sparse_array(sp.csr_array(matrix()), dtype="float64")
    assert a.dtype == "float64" and a.vals.dtype == np.float64
    assert repr(a) == f"SparseArray((6, 8), csr, float64, nnz={a.nnz})"
    assert a.astype("int32").dtype == "int32"
    with pytest.raises(TypeError, match="dtype: expected one of bool, .*got complex64"):
        td.nd.sparse_array(a, dtype="complex64")
    doubled = a.with_values(2 * a.vals)
    assert doubled.pos[1] is a.pos[1]
    np.testing.assert_array_equal(doubled.to_dense(), 2 * a.to_dense())
    with pytest.raises(ValueError, match=r"with_values: expected \(\d+,\) values, got \(2,\)"):
        a.with_values([1.0, 2.0])
    assert a.asformat("csr") is a and isinstance(a, SparseArray)
    on_cpu = a.arrays(device="cpu")
    assert all(isinstance(x, td.nd.NDArray) for x in on_cpu)
    for x, y in zip(on_cpu, a.arrays(), strict=True):
        np.testing.assert_array_equal(x.numpy(), y)
