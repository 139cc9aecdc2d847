"""SpMV over a CSR matrix's rows as sliced ELLPACK (``schedule="sliced"``;
``tensordsl/sparse/sliced.py``): the derived layout read back by its definition holds the
matrix; the kernel matches scipy on random shapes and densities (empty rows, an empty
matrix, one dense row, power-law rows); padding never multiplies x (an infinite x[0]
reaches only the rows that store column 0); the layout's values are each array's own."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import tensordsl as td
from tensordsl.sparse.sliced import LANES, sliced_ell
from tests.helpers import poisoned


def _matrix(seed: int, m: int, n: int, density: float, kind: str):
    rng = np.random.default_rng(seed)
    if kind == "power_law" and m and n:
        lengths = np.minimum(n, (rng.pareto(1.2, m) * 2).astype(int))
        rows = np.repeat(np.arange(m), lengths)
        cols = np.concatenate([rng.choice(n, k, replace=False) for k in lengths]
                              ).astype(int)
        M = sp.csr_matrix((rng.standard_normal(rows.size), (rows, cols)), shape=(m, n))
    else:
        M = sp.random(m, n, density=density, format="lil", random_state=rng)
        if kind == "dense_row" and m:
            M[rng.integers(m), :] = rng.random(n) + 0.5
        if kind == "empty":
            M = sp.lil_matrix((m, n))
    M = sp.csr_matrix(M, dtype=np.float32)
    M.sort_indices()
    return M, rng


def _read_back(layout: dict, m: int) -> list:
    """Each row's (column, value) entries as the layout defines them, plain Python."""
    spos, scrd, svals, slen, slane = (layout[k] for k in
                                      ("spos", "scrd", "svals", "slen", "slane"))
    rows = []
    for i in range(m):
        s, r = divmod(int(slane[i]), LANES)
        assert 0 <= s < len(spos) - 1
        width = int(spos[s + 1] - spos[s])
        assert int(slen[s, r]) <= width
        rows.append([(int(scrd[spos[s] + k, r]), float(svals[spos[s] + k, r]))
                     for k in range(int(slen[s, r]))])
        # padding: column 0, value 0
        assert all(int(scrd[spos[s] + k, r]) == 0 and svals[spos[s] + k, r] == 0
                   for k in range(int(slen[s, r]), width))
    return rows


specs = st.tuples(st.integers(0, 2**31), st.integers(0, 70), st.integers(1, 50),
                  st.sampled_from([0.0, 0.05, 0.3, 1.0]),
                  st.sampled_from(["random", "dense_row", "empty", "power_law"]))


@settings(max_examples=40, deadline=None)
@given(specs)
def test_the_layout_holds_each_rows_entries_in_order(spec):
    M, _ = _matrix(*spec)
    layout = sliced_ell(M.indptr.astype(np.int32), M.indices.astype(np.int32), M.data)
    assert sorted(layout["slane"].tolist()) == list(range(M.shape[0]))   # a permutation
    widths = np.diff(layout["spos"])
    np.testing.assert_array_equal(widths, layout["slen"].max(axis=1, initial=0))
    for i, entries in enumerate(_read_back(layout, M.shape[0])):
        row = M.getrow(i)
        assert entries == list(zip(row.indices.tolist(), row.data.astype(float).tolist()))


@settings(max_examples=40, deadline=None)
@given(specs)
def test_sliced_spmv_matches_scipy(spec):
    M, rng = _matrix(*spec)
    x = rng.standard_normal(M.shape[1]).astype(np.float32)
    y = td.ops.spmv(td.nd.sparse_array(M), x, schedule="sliced",
                    out=poisoned((M.shape[0],)))
    np.testing.assert_allclose(y, M.astype(np.float64) @ x, rtol=1e-5, atol=1e-5)


def test_padding_never_multiplies_x():
    # rows of very different lengths in one slice: most lanes padded; x[0] infinite
    M, rng = _matrix(3, 64, 40, 0.0, "power_law")
    M = sp.csr_matrix(M)
    x = rng.standard_normal(40).astype(np.float32)
    x[0] = np.inf
    y = td.ops.spmv(td.nd.sparse_array(M), x, schedule="sliced", out=poisoned((64,)))
    stores_zero = np.asarray((M[:, 0] != 0).todense()).ravel()
    assert stores_zero.any() and not stores_zero.all()
    assert np.isfinite(y[~stores_zero]).all()
    np.testing.assert_allclose(y, M.astype(np.float64) @ x, rtol=1e-5, atol=1e-5)


def test_the_layouts_values_are_each_arrays_own():
    M, rng = _matrix(5, 50, 30, 0.2, "random")
    x = rng.standard_normal(30).astype(np.float32)
    A = td.nd.sparse_array(M)
    np.testing.assert_allclose(td.ops.spmv(A, x, schedule="sliced"), M @ x, rtol=1e-5)
    doubled = A.with_values(2 * A.vals)      # the structure (and its layout) shared
    np.testing.assert_allclose(td.ops.spmv(doubled, x, schedule="sliced"), 2 * (M @ x),
                               rtol=1e-5)


def test_sliced_is_spmvs_alone():
    M, rng = _matrix(6, 20, 20, 0.2, "random")
    with pytest.raises(ValueError, match="schedule must be one of rows, nonzeros, got "
                                         "'sliced'"):
        td.ops.spmm(M, rng.random((20, 4)).astype(np.float32), schedule="sliced")
    bsr = td.nd.sparse_array(sp.bsr_matrix(M.toarray(), blocksize=(2, 2)), format="bsr")
    with pytest.raises(ValueError, match="CSR"):
        td.ops.spmv(bsr, rng.random(20).astype(np.float32), schedule="sliced")
