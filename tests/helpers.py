"""Helpers shared by the test tiers."""
from __future__ import annotations

import numpy as np

INT_SENTINEL = -123456789
FLOAT_SENTINEL_FOR_NAN = 1234.5   # where the expected result is itself NaN
BOOL_BYTE = 7                     # neither False (0) nor True (1) as a byte


def poisoned(shape, dtype="float32", unlike=None) -> np.ndarray:
    """An output array no kernel result can be mistaken for, so that a kernel that skips
    a store fails the comparison instead of leaving a plausible zero behind.

    Floats are NaN, integers ``INT_SENTINEL`` (wrapped to the dtype's width), bools the
    byte 7. numpy reads any nonzero byte as True, so compare bool outputs as bytes:
    ``np.testing.assert_array_equal(out.view(np.uint8), expected.view(np.uint8))``.
    ``unlike``: the expected result; where it holds the sentinel itself (a NaN that must
    propagate, say), the element gets another value, so a skipped store shows there too.

    >>> poisoned((2,), "int32")
    array([-123456789, -123456789], dtype=int32)
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        size = int(np.prod(shape, dtype=np.int64))
        return np.full(size, BOOL_BYTE, np.uint8).view(np.bool_).reshape(shape)
    if dtype.kind in "fc":
        out = np.full(shape, np.nan, dtype)
        if unlike is not None:
            out[np.isnan(unlike)] = FLOAT_SENTINEL_FOR_NAN
        return out
    out = np.full(shape, INT_SENTINEL, np.int64).astype(dtype)
    if unlike is not None:
        out[np.asarray(unlike) == out] += 1
    return out


def poison_allocations(monkeypatch):
    """Make every result array ``td.ops``, ``td.ops.*_backward`` and ``td.build_program``
    allocate start poisoned (``poisoned``), so a kernel that skips a store is caught in
    tests that only see the returned arrays."""
    import tensordsl.nd as nd
    aligned = nd.aligned_numpy

    def poisoned_aligned(shape, dtype="float32", alignment: int = 64):
        out = aligned(shape, dtype, alignment)
        out[...] = poisoned(out.shape, out.dtype)
        return out

    monkeypatch.setattr(nd, "aligned_numpy", poisoned_aligned)
