"""Property tests of sparse arrays over random formats (named and composed from levels,
2-D and 3-D), shapes (empty ones included) and densities (with empty rows and a dense
row), against dense numpy and the plain-Python reader of ``reference.py``:

* any input, in any format, holds exactly the tensor it was given, and its arrays mean
  that tensor when read by the format's definition (also after a second conversion);
* a valid structure corrupted at random (an entry changed, dropped, added, two
  swapped) is refused exactly when the reference reader finds it invalid, and what is
  accepted reads as the reference reads it: nothing that passes the checks can send a
  kernel outside its arrays.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensordsl as td
from tensordsl.sparse import validate

from .reference import read

try:
    import torch
except ImportError:     # the torch sources are left out
    torch = None
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@st.composite
def levels(draw, ndim):
    """A format of ``ndim`` levels: dense and compressed levels of any properties, and
    COO's tail (a non-unique compressed level, then singletons) from any level on."""
    out = []
    while len(out) < ndim:
        kind = draw(st.sampled_from(["dense", "compressed", "coo-tail"]))
        if kind == "coo-tail" and len(out) < ndim - 1:
            out.append(td.Level("compressed", unique=False))
            out += ["singleton"] * (ndim - len(out))
        elif kind != "coo-tail":
            out.append(td.Level(kind, ordered=draw(st.booleans()), unique=draw(st.booleans()))
                       if kind == "compressed" else kind)
    return out


@st.composite
def formats(draw):
    """A named format or one composed from levels, with its ndim."""
    if draw(st.booleans()):
        name = draw(st.sampled_from(["csr", "csc", "coo", "dcsr", "bsr"]))
        if name == "bsr":
            block = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
            return td.Format.named("bsr", block=block)
        return td.Format.named(name)
    ndim = draw(st.sampled_from([1, 2, 2, 3, 3]))
    order = draw(st.permutations(range(ndim)))
    return td.Format(draw(levels(ndim)), order=order)


@st.composite
def tensors(draw, fmt):
    """A dense tensor for ``fmt``: small integer values (sums are exact), a random
    density, a dimension of 0 now and then, and in 2-D maybe an empty first row and a
    dense last row. (Sizes and density come from numpy, evenly; hypothesis would favour
    the empty cases.)"""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    block = fmt.block or (1,) * fmt.ndim
    most = 4 if fmt.block else 12 if fmt.ndim == 1 else 8
    shape = tuple(int(rng.integers(1, most + 1)) * b if rng.random() > 0.05 else 0
                  for b in block)
    density = rng.choice([0.0, 0.15, 0.3, 0.6, 1.0], p=[0.05, 0.3, 0.3, 0.25, 0.1])
    dense = np.where(rng.random(shape) < density, rng.integers(-4, 5, shape), 0)
    if fmt.ndim == 2 and shape[0] > 1 and rng.random() < 0.5:
        dense[0] = 0
        dense[-1] = rng.integers(1, 5, shape[1])
    return dense.astype(draw(st.sampled_from(["float32", "float64", "int32"])))


def sources(dense):
    """Ways to hand ``dense`` over: itself, and in 2-D scipy's and torch's kinds
    (COO with each entry split into two duplicates)."""
    out = {"dense": dense}
    if dense.ndim != 2:
        return out
    out.update(csr=sp.csr_array(dense), csc=sp.csc_array(dense))
    rows, cols = np.nonzero(dense)
    halves = dense[rows, cols] // 2
    out["coo-duplicates"] = sp.coo_array(
        (np.concatenate([halves, dense[rows, cols] - halves]),
         (np.concatenate([rows, rows]), np.concatenate([cols, cols]))), shape=dense.shape)
    if torch is not None and dense.dtype != np.int32:
        out["torch-csr"] = torch.from_numpy(dense).to_sparse_csr()
        out["torch-coo"] = torch.from_numpy(dense).to_sparse()
    return out


def assert_holds(a, fmt, dense):
    assert a.format == fmt and a.shape == dense.shape and a.dtype == dense.dtype.name
    validate(a)
    for name, x in a.components().items():
        assert x.flags.c_contiguous and (name == "vals" or x.dtype == np.int32)
    np.testing.assert_array_equal(a.to_dense(), dense)
    np.testing.assert_array_equal(read(a.shape, fmt, a.components()), dense)
    if a.ndim == 2:
        np.testing.assert_array_equal(a.to_scipy().toarray(), dense)


@SETTINGS
@given(st.data())
def test_any_input_in_any_format_holds_the_tensor(data):
    fmt = data.draw(formats(), "format")
    dense = data.draw(tensors(fmt), "dense")
    source = data.draw(st.sampled_from(sorted(sources(dense))), "source")
    a = td.nd.sparse_array(sources(dense)[source], format=fmt)
    assert_holds(a, fmt, dense)
    other = data.draw(formats().filter(lambda f: f.ndim == fmt.ndim and all(
        s % b == 0 for s, b in zip(dense.shape, f.block or (1,) * f.ndim))), "then")
    assert_holds(a.asformat(other), other, dense)


@st.composite
def corruptions(draw, arrays, shape):
    """``arrays`` with one of them changed: an entry set (to a neighbour's value, one
    off, an extent, out of int32...), dropped, added, or two neighbours swapped."""
    names = [n for n in arrays if n != "vals"] or ["vals"]
    name = draw(st.sampled_from(names))
    a = [int(x) for x in arrays[name]] if name != "vals" else list(arrays[name])
    how = draw(st.sampled_from(["set", "set", "drop", "add", "swap"]))
    if how in ("set", "add") or not a:
        at = draw(st.integers(0, max(len(a) - 1, 0)))
        near = a[at] if a else 0
        # (2**31: an index int32 cannot hold — not for the values, of their own dtype: a
        # format without stored coordinates, fully dense, has only them to corrupt)
        beyond = [2**31] if name != "vals" else []
        value = draw(st.sampled_from([near - 1, near + 1, -1, *beyond, *shape] +
                                     a[max(at - 1, 0):at + 2]))
        if how == "set" and a:
            a[at] = value
        else:
            a.insert(draw(st.integers(0, len(a))), value)
    elif how == "drop":
        del a[draw(st.integers(0, len(a) - 1))]
    else:
        i = draw(st.integers(0, len(a) - 1))
        j = min(i + 1, len(a) - 1)
        a[i], a[j] = a[j], a[i]
    dtype = np.int64 if name != "vals" else arrays["vals"].dtype
    shape = (len(a), *arrays["vals"].shape[1:]) if name == "vals" else (len(a),)
    return {**arrays, name: np.array(a, dtype).reshape(shape)}


@SETTINGS
@given(st.data())
def test_corrupted_structures_are_refused_exactly_when_invalid(data):
    fmt = data.draw(formats(), "format")
    dense = data.draw(tensors(fmt), "dense")
    valid = td.nd.sparse_array(dense, format=fmt).components()
    block = fmt.block or (1,) * fmt.ndim
    extents = {n // b for n, b in zip(dense.shape, block)} | set(dense.shape)
    arrays = data.draw(corruptions(valid, sorted(extents)), "arrays")
    expected = read(dense.shape, fmt, arrays)
    if expected is None:
        with pytest.raises(ValueError, match=r"sparse array \("):
            td.nd.sparse_array(arrays, format=fmt, shape=dense.shape)
    else:
        a = td.nd.sparse_array(arrays, format=fmt, shape=dense.shape)
        np.testing.assert_array_equal(a.to_dense(), expected)
