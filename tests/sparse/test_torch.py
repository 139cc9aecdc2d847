"""Sparse arrays to and from torch.sparse (COO, CSR, CSC, BSR), where torch is
installed."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import tensordsl as td

from .test_arrays import NAMED, matrix, scipy_reference, target

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", NAMED)
def test_round_trips(name):
    dense = matrix()
    a = td.nd.sparse_array(dense, format=target(name))
    t = a.to_torch()
    layout = {"csr": "sparse_csr", "dcsr": "sparse_csr", "csc": "sparse_csc",
              "bsr": "sparse_bsr", "coo": "sparse_coo"}[name]
    assert t.layout == getattr(torch, layout)
    np.testing.assert_array_equal(t.to_dense().numpy(), dense)
    back = td.nd.sparse_array(t, format=target(name))
    for x, y in zip(back.arrays(), a.arrays(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_torch_inputs():
    dense = torch.from_numpy(matrix())
    for t in (dense.to_sparse_csr(), dense.to_sparse_csc(), dense.to_sparse(),
              dense.to_sparse_bsr((2, 2))):
        for name in NAMED:
            a = td.nd.sparse_array(t, format=target(name))
            np.testing.assert_array_equal(a.to_dense(), dense.numpy())
            # torch's BSR, like scipy's, stores the zeros of its blocks
            source = sp.bsr_array(dense.numpy(), blocksize=(2, 2)) \
                if t.layout == torch.sparse_bsr else dense.numpy()
            for got, want in zip(a.arrays(), scipy_reference(source, name), strict=True):
                np.testing.assert_array_equal(got, want)


def test_uncoalesced_coo_keeps_its_duplicates():
    t = torch.sparse_coo_tensor(torch.tensor([[1, 0, 1], [2, 1, 2]]),
                                torch.tensor([1.0, 2.0, 4.0]), (2, 3),
                                check_invariants=True)
    a = td.nd.sparse_array(t)
    assert a.nnz == 3 and a.format == td.sparse.as_format("coo")
    np.testing.assert_array_equal(a.to_dense(), t.to_dense().numpy())
    assert td.nd.sparse_array(t, format="csr").nnz == 2
    assert not a.to_torch().is_coalesced()
    assert td.nd.sparse_array(t, format="dcsr").to_torch().layout == torch.sparse_csr


def test_generic_formats_go_out_as_coalesced_coo():
    dense = matrix()
    a = td.nd.sparse_array(dense, format=td.Format(["compressed", "dense"]))
    t = a.to_torch()
    assert t.layout == torch.sparse_coo and t.is_coalesced()
    np.testing.assert_array_equal(t.to_dense().numpy(), dense)
    np.testing.assert_array_equal(t.coalesce().indices().numpy(), t.indices().numpy())
