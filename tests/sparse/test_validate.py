"""Malformed sparse structures are refused with a ValueError naming the component array
and its first bad position, before anything reads them; check=False lets them through
(for trusted data) and ``validate`` finds them afterwards."""
from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

import tensordsl as td
from tensordsl.sparse import validate

F32 = np.float32
UNORDERED = td.Format(["dense", td.Level("compressed", ordered=False)])
NON_UNIQUE = td.Format(["dense", td.Level("compressed", unique=False)])
BSR22 = td.Format.named("bsr", block=(2, 2))


def csr(pos, crd, nvals=None, vals=None):
    vals = np.ones(len(crd) if nvals is None else nvals, F32) if vals is None else vals
    return {"pos1": np.asarray(pos), "crd1": np.asarray(crd), "vals": vals}


# (format, shape, arrays, the message: component, position and what is wrong)
MALFORMED = {
    "pos0 not 0": ("csr", (3, 4), csr([1, 1, 2, 3], [0, 1, 2]),
                   "pos1[0] = 1, expected 0"),
    "pos not monotone": ("csr", (3, 4), csr([0, 2, 1, 3], [0, 1, 2]),
                         "pos1[2] = 1 is less than pos1[1] = 2 (pos1 must be non-decreasing)"),
    "pos negative": ("csr", (3, 4), csr([0, -1, 2, 3], [0, 1, 2]),
                     "pos1[1] = -1 is less than pos1[0] = 0"),
    "last pos != len(crd)": ("csr", (3, 4), csr([0, 1, 2, 2], [0, 1, 2]),
                             "pos1[3] = 2 but crd1 has 3 entries"),
    "pos too short": ("csr", (3, 4), csr([0, 1, 3], [0, 1, 2]),
                      "pos1 has 3 entries, expected 4 (one more than the 3 positions of "
                      "level 0)"),
    "crd too large": ("csr", (3, 4), csr([0, 1, 2, 3], [0, 4, 2]),
                      "crd1[1] = 4 is out of range [0, 4) of level 1 (dimension 1)"),
    "crd negative": ("csr", (3, 4), csr([0, 1, 2, 3], [0, 1, -2]),
                     "crd1[2] = -2 is out of range [0, 4)"),
    "csc row out of range": ("csc", (3, 4), {"pos1": [0, 1, 1, 1, 2], "crd1": [0, 3],
                                             "vals": np.ones(2, F32)},
                             "crd1[1] = 3 is out of range [0, 3) of level 1 (dimension 0)"),
    "unsorted in a row": ("csr", (3, 4), csr([0, 0, 3, 3], [0, 3, 1]),
                          "crd1[2] = 1 is less than crd1[1] = 3 in the run pos1[1]..pos1[2]: "
                          "level 1 is ordered and unique"),
    "duplicate in a row": ("csr", (3, 4), csr([0, 3, 3, 3], [0, 2, 2]),
                           "crd1[2] = 2 repeats crd1[1] = 2 in the run pos1[0]..pos1[1]"),
    "duplicate, unordered": ("dense-unordered", (3, 4), csr([0, 1, 4, 4], [3, 2, 0, 2]),
                             "crd1[3] = 2 repeats crd1[1] = 2 in the run pos1[1]..pos1[2]: "
                             "level 1 is unique (no repeated coordinate)"),
    "unsorted, non-unique": ("dense-non-unique", (3, 4), csr([0, 3, 3, 3], [1, 1, 0]),
                             "crd1[2] = 0 is less than crd1[1] = 1 in the run "
                             "pos1[0]..pos1[1]: level 1 is ordered (ascending coordinates)"),
    "coo rows unsorted": ("coo", (3, 4), {"pos0": [0, 3], "crd0": [0, 2, 1],
                                          "crd1": [0, 1, 2], "vals": np.ones(3, F32)},
                          "crd0[2] = 1 is less than crd0[1] = 2 in the run pos0[0]..pos0[1]"),
    "coo columns unsorted": ("coo", (3, 4), {"pos0": [0, 3], "crd0": [1, 1, 1],
                                             "crd1": [0, 3, 2], "vals": np.ones(3, F32)},
                             "crd1[2] = 2 is less than crd1[1] = 3 under the same "
                             "coordinates of the levels above: level 1 is ordered"),
    "coo singleton length": ("coo", (3, 4), {"pos0": [0, 3], "crd0": [0, 1, 2],
                                             "crd1": [0, 1], "vals": np.ones(3, F32)},
                             "crd1 has 2 entries, expected 3 (one per position of level 0)"),
    "coo column out of range": ("coo", (3, 4), {"pos0": [0, 2], "crd0": [0, 1],
                                                "crd1": [0, 9], "vals": np.ones(2, F32)},
                                "crd1[1] = 9 is out of range [0, 4)"),
    "dcsr rows repeat": ("dcsr", (3, 4), {"pos0": [0, 2], "crd0": [1, 1], "pos1": [0, 1, 2],
                                          "crd1": [0, 1], "vals": np.ones(2, F32)},
                         "crd0[1] = 1 repeats crd0[0] = 1 in the run pos0[0]..pos0[1]"),
    "dcsr pos1 length": ("dcsr", (3, 4), {"pos0": [0, 2], "crd0": [0, 1], "pos1": [0, 2],
                                          "crd1": [0, 1], "vals": np.ones(2, F32)},
                         "pos1 has 2 entries, expected 3 (one more than the 2 positions of "
                         "level 0)"),
    "vals too long": ("csr", (3, 4), csr([0, 1, 2, 3], [0, 1, 2], nvals=4),
                      "vals has shape (4,), expected (3,) (one value per position of the "
                      "last level)"),
    "bsr block shape": ("bsr22", (4, 6), {"pos1": [0, 1, 2], "crd1": [0, 2],
                                          "vals": np.ones((2, 2, 3), F32)},
                        "vals has shape (2, 2, 3), expected (2, 2, 2) (one block per "
                        "position"),
    "bsr block column": ("bsr22", (4, 6), {"pos1": [0, 1, 2], "crd1": [0, 3],
                                           "vals": np.ones((2, 2, 2), F32)},
                         "crd1[1] = 3 is out of range [0, 3) of level 1 (dimension 1, "
                         "counted in blocks)"),
    "pos not integer": ("csr", (3, 4), csr(np.array([0, 1, 2, 3.0]), [0, 1, 2]),
                        "pos1: expected integers (int32), got float64"),
    "crd not integer": ("csr", (3, 4), csr([0, 1, 2, 3], np.array([0, 1, 2.0])),
                        "crd1: expected integers (int32), got float64"),
    "pos 2-D": ("csr", (3, 4), csr(np.array([[0, 1], [2, 3]]), [0, 1, 2]),
                "pos1: expected a 1-D array, got shape (2, 2)"),
    "int64 pos beyond int32": ("csr", (3, 4), csr(np.array([0, 1, 2, 2**31]), [0, 1, 2]),
                               "pos1[3] = 2147483648 does not fit int32"),
    "uint64 crd beyond int32": ("csr", (3, 4), csr([0, 1, 2, 3],
                                                   np.array([0, 2**32 + 1, 2], np.uint64)),
                                "crd1[1] = 4294967297 does not fit int32"),
    "complex vals": ("csr", (3, 4), csr([0, 1, 2, 3], [0, 1, 2],
                                        vals=np.ones(3, np.complex64)),
                     "vals: expected one of bool, int8, int16, int32, int64, uint8, float16, "
                     "float32, float64, got complex64"),
    "object vals": ("csr", (3, 4), csr([0, 1, 2, 3], [0, 1, 2],
                                       vals=np.array([1, None, 2], object)),
                    "vals: expected one of bool, .*, got object"),
}

FORMATS = {"dense-unordered": UNORDERED, "dense-non-unique": NON_UNIQUE, "bsr22": BSR22}


def build(fmt, shape, arrays, check=True):
    return td.nd.sparse_array(arrays, format=FORMATS.get(fmt, fmt), shape=shape, check=check)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_structures_raise_naming_the_array_and_position(case):
    fmt, shape, arrays, message = MALFORMED[case]
    with pytest.raises(ValueError) as err:
        build(fmt, shape, arrays)
    text = str(err.value)
    assert text.startswith(f"sparse array ({FORMATS.get(fmt, fmt)}, shape {shape}): ")
    assert re.search(re.escape(message).replace(r"\.\*", ".*"), text), text


@pytest.mark.parametrize("case", [c for c in MALFORMED
                                  if "not integer" not in c and "vals" not in c and
                                  "2-D" not in c and "block shape" not in c and
                                  # stored as int32 unchecked, these wrap around
                                  "beyond int32" not in c])
def test_check_false_skips_the_structure_checks_and_validate_finds_them(case):
    fmt, shape, arrays, message = MALFORMED[case]
    a = build(fmt, shape, arrays, check=False)        # trusted: not looked at
    with pytest.raises(ValueError, match=re.escape(message.split(" (")[0])):
        validate(a)


def test_a_valid_structure_passes():
    for fmt, shape, arrays in [
        ("csr", (3, 4), csr([0, 2, 2, 3], [1, 3, 0])),
        ("dense-unordered", (3, 4), csr([0, 2, 2, 3], [3, 1, 0])),
        ("dense-non-unique", (3, 4), csr([0, 3, 3, 3], [1, 1, 2])),
        ("coo", (3, 4), {"pos0": [0, 4], "crd0": [0, 1, 1, 1], "crd1": [3, 0, 2, 2],
                         "vals": np.ones(4, F32)}),
        ("csr", (0, 4), csr([0], [])),
        ("csr", (3, 0), csr([0, 0, 0, 0], [])),
    ]:
        validate(build(fmt, shape, arrays))


def test_shapes_that_disagree_with_the_format_are_refused_even_unchecked():
    with pytest.raises(ValueError, match=r"shape \(3, 4, 5\) has 3 dimensions, format csr "
                                         r"has 2"):
        build("csr", (3, 4, 5), csr([0, 1, 2, 3], [0, 1, 2]), check=False)
    with pytest.raises(ValueError, match=r"shape \(3, 6\): dimension 0 \(3\) is not a "
                                         r"multiple of the block \(2, 2\)"):
        build("bsr22", (3, 6), csr([0, 1], [0], vals=np.ones((1, 2, 2))), check=False)
    with pytest.raises(ValueError, match=r"dimension 1 \(4294967296\) does not fit the "
                                         r"int32 coordinates"):
        build("csr", (1, 2**32), csr([0, 0], []))


def test_scipy_inputs_are_checked_too():
    # scipy builds these without looking at the indices
    m = sp.csr_array((np.ones(2, F32), np.array([0, 7]), np.array([0, 1, 2])), shape=(2, 4))
    with pytest.raises(ValueError, match=r"crd1\[1\] = 7 is out of range \[0, 4\)"):
        td.nd.sparse_array(m)
    c = sp.coo_array((np.ones(2, F32), (np.array([0, 1]), np.array([0, 1]))), shape=(2, 4))
    c.coords[0][1] = 5
    with pytest.raises(ValueError, match=r"crd0\[1\] = 5 is out of range \[0, 2\)"):
        td.nd.sparse_array(c)
    assert td.nd.sparse_array(m, check=False).nnz == 2


SMALL = np.array([[0, 3, 0, 1, 0, 0],
                  [0, 0, 0, 0, 0, 0],
                  [2, 0, 5, 0, 4, 0],
                  [1, 1, 1, 1, 1, 1]], F32)
FORMATS_TO_CHANGE = [
    "csr", "csc", "coo", "dcsr", BSR22, UNORDERED, NON_UNIQUE,
    td.Format(["compressed", td.Level("compressed", ordered=False)]),
    td.Format([td.Level("compressed", ordered=False, unique=False), "singleton"],
              order=(1, 0)),
    td.Format(["compressed", "dense"]),
]


def single_changes(arrays, values):
    """Every array of ``arrays`` with one entry set to each of ``values``, dropped, or
    with each of ``values`` added before it (vals left alone: any number is valid)."""
    for name, a in arrays.items():
        if name == "vals":
            continue
        a = [int(x) for x in a]
        for at in range(len(a) + 1):
            for v in values:
                yield name, a[:at] + [v] + a[at:]
                if at < len(a) and v != a[at]:
                    yield name, a[:at] + [v] + a[at + 1:]
            if at < len(a):
                yield name, a[:at] + a[at + 1:]


@pytest.mark.parametrize("fmt", FORMATS_TO_CHANGE, ids=str)
def test_every_single_change_of_a_small_structure_is_judged_as_the_reference_does(fmt):
    from .reference import read
    fmt = td.sparse.as_format(fmt)
    valid = td.nd.sparse_array(SMALL, format=fmt).components()
    refused = accepted = 0
    for name, changed in single_changes(valid, range(-1, 7)):
        arrays = {**valid, name: np.array(changed, np.int64)}
        expected = read(SMALL.shape, fmt, arrays)
        if expected is None:
            with pytest.raises(ValueError, match=r"sparse array \("):
                td.nd.sparse_array(arrays, format=fmt, shape=SMALL.shape)
            refused += 1
        else:
            got = td.nd.sparse_array(arrays, format=fmt, shape=SMALL.shape).to_dense()
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} = {changed}")
            accepted += 1
    assert refused > 50 and accepted > 0       # both sides are exercised
