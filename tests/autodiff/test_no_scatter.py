"""Adjoints are gathers where a gather form exists (DESIGN.md, autodiff): the input
adjoint of a convolution is a convolution of the output adjoint, each element summing
over at most F*KH*KW terms, never a loop over the whole output domain; a read through
data (``x[idx[i]]``) has no gather form and is accumulated, marked in ``td.lower``'s
output, and still correct."""
import math

import numpy as np
import pytest

import kernels.dense as K
import tensordsl as td
from tensordsl.te.tensor import ACCUMULATE_TAG

from .fd import Kernel, assert_close, compute_ops, operations, placeholders
from .references import conv2d_nchw_adjoints

MARKER = "gradient: accumulate"


def _reduce_extent(op) -> int:
    return math.prod(r.dom.extent.value for r in op.reduce_axis)


def _derived_ops(result, forward):
    """The computes the derivation created (those of the forward excluded)."""
    known = {id(op) for op in operations(forward)}
    return [op for op in compute_ops(result) if id(op) not in known]


def _lowered(t) -> str:
    return str(td.lower(td.create_schedule(t.op), [*placeholders(t), t]))


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_input_adjoint_is_a_gather(rng, stride):
    F, KH, KW = 8, 3, 3
    x = td.placeholder((1, 8, 12, 12), dtype="float64", name="x")
    w = td.placeholder((F, 8, KH, KW), dtype="float64", name="w")
    y = K.conv2d_nchw(x, w, stride=stride, padding=1)
    (gx,), head_t = td.vjp(y, [x])
    derived = _derived_ops(gx, y)
    assert derived, "the adjoint created no computes"
    out_elements = math.prod(d.value for d in y.shape)
    for op in derived:
        extent = _reduce_extent(op)
        assert extent <= F * KH * KW, (
            f"{op.name} sums {extent} terms per element (the output domain has "
            f"{out_elements}): a scatter, not a gather of at most {F * KH * KW}")
        assert op.tag != ACCUMULATE_TAG, f"{op.name} is an accumulation"
    assert any(_reduce_extent(op) > 1 for op in derived), "no compute sums over the window"
    assert MARKER not in _lowered(gx)
    # and, auto-scheduled as a user builds it, correct
    wv, head = rng.standard_normal((F, 8, KH, KW)), rng.standard_normal(
        tuple(d.value for d in y.shape))
    xv = rng.standard_normal((1, 8, 12, 12))
    got = Kernel(gx)({x: xv, w: wv, head_t: head})
    assert_close(got, conv2d_nchw_adjoints(xv, wv, head, stride, 1)[0],
                 f"conv2d (stride {stride}) input adjoint", rtol=1e-10)


@pytest.mark.parametrize("how", ["take", "read_through_data"])
def test_a_read_through_data_is_accumulated_and_correct(rng, how):
    x = td.placeholder((7, 5), dtype="float64", name="x")
    idx = td.placeholder((9,), dtype="int32", name="idx")
    if how == "take":
        y = K.take(x, idx, axis=0)
    else:
        y = td.compute((9, 5), lambda i, j: td.tanh(x[idx[i], j]), name="y")
    (gx,), head_t = td.vjp(y, [x])
    accumulated = [op for op in _derived_ops(gx, y) if op.tag == ACCUMULATE_TAG]
    assert accumulated, "the adjoint of a read through data is not marked"
    assert MARKER in _lowered(gx)
    iv = np.array([3, 0, 3, 6, 6, 6, 1, 2, 0], "int32")
    xv, head = rng.standard_normal((7, 5)), rng.standard_normal((9, 5))
    got = Kernel(gx)({x: xv, idx: iv, head_t: head})
    expected = np.zeros((7, 5))
    scale = 1.0 if how == "take" else 1 - np.tanh(xv[iv]) ** 2
    np.add.at(expected, iv, head * scale)
    assert_close(got, expected, f"adjoint of {how}", rtol=1e-12)
    assert not expected[4].any() and not got[4].any()   # row 4 is never read: zeros, stored
