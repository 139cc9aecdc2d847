"""The operator table (``autodiff/operators.py``) and the rewrites before it
(``autodiff/rewrite.py``): every rewritten graph computes what the derived one does (both
built and run on the same inputs), and each rewrite has the form it claims."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td
from kernels import dense
from tensordsl.autodiff.graph import topological
from tensordsl.autodiff.operators import prepare, schedule_derived, template_of
from tensordsl.autodiff.rewrite import _flatten_last_axes, _rows_and_columns
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import post_order
from tensordsl.te.tensor import ComputeOp, PlaceholderOp
from tests.helpers import poisoned


def _inputs(t):
    return [op.output(0) for op in topological([t]) if isinstance(op, PlaceholderOp)]


def _run(s_or_none, tensors, arrays):
    f = td.build(s_or_none, tensors) if s_or_none is not None else td.build(tensors)
    out_t = tensors[-1]
    out = poisoned(tuple(int(d.value) for d in out_t.shape), out_t.dtype)
    f(*arrays, out)
    return out


def _same_values(g, seed=0):
    """The derived ``g`` (auto-scheduled) and ``prepare(g)`` scheduled by its template
    give the same array; returns the template's name."""
    ins = _inputs(g)
    p = prepare(g)
    assert {id(t.op) for t in _inputs(p)} <= {id(t.op) for t in ins}
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(tuple(int(d.value) for d in t.shape)).astype(t.dtype)
              for t in ins]
    expected = _run(None, ins + [g], arrays)
    template = template_of(p)
    got = _run(schedule_derived(template, p), ins + [p], arrays)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    return template, p


def _vjp(make, shapes, wrt=0, dtype="float64"):
    xs = [td.placeholder(s, dtype=dtype, name=f"x{k}") for k, s in enumerate(shapes)]
    y = make(*xs)
    (g,), _ = td.vjp(y, [xs[wrt]])
    return g


CASES = [
    ("conv-data", lambda: _vjp(lambda x, w: dense.conv2d_nchw(x, w, padding=1),
                               [(2, 5, 9, 7), (6, 5, 3, 3)], 0), "conv2d_flat"),
    ("conv-weight", lambda: _vjp(lambda x, w: dense.conv2d_nchw(x, w, padding=1),
                                 [(2, 5, 9, 7), (6, 5, 3, 3)], 1), "panel"),
    ("conv5-dilated-data", lambda: _vjp(
        lambda x, w: dense.conv2d_nchw(x, w, padding=(2, 3), dilation=(1, 2)),
        [(1, 3, 11, 10), (4, 3, 5, 3)], 0), "conv2d_flat"),
    ("conv5-dilated-weight", lambda: _vjp(
        lambda x, w: dense.conv2d_nchw(x, w, padding=(2, 3), dilation=(1, 2)),
        [(1, 3, 11, 10), (4, 3, 5, 3)], 1), "panel"),
    ("conv-strided-data", lambda: _vjp(lambda x, w: dense.conv2d_nchw(x, w, stride=2, padding=1),
                                       [(1, 4, 9, 9), (3, 4, 3, 3)], 0), None),
    ("matmul-a", lambda: _vjp(dense.matmul, [(13, 7), (7, 11)], 0), "matmul"),
    ("matmul-b", lambda: _vjp(dense.matmul, [(13, 7), (7, 11)], 1), "matmul"),
    ("dense-w", lambda: _vjp(dense.dense, [(13, 7), (5, 7)], 1), "matmul"),
    ("softmax", lambda: _vjp(dense.softmax, [(9, 40)]), "rowwise"),
    ("log_softmax", lambda: _vjp(dense.log_softmax, [(9, 40)]), "rowwise"),
    ("layer_norm", lambda: _vjp(lambda x, g, b: dense.layer_norm(x, g, b),
                                [(9, 40), (40,), (40,)]), "rowwise"),
    ("max_pool", lambda: _vjp(lambda x: dense.max_pool2d(x, 3, 2, 1), [(1, 2, 9, 9)]), None),
    ("avg_pool", lambda: _vjp(lambda x: dense.avg_pool2d(x, 2), [(1, 2, 8, 6)]), None),
]


@pytest.mark.parametrize("name,make,template", CASES, ids=[c[0] for c in CASES])
def test_rewritten_graph_computes_the_derived_values(name, make, template):
    got, _ = _same_values(make())
    if template is not None:
        assert got == template


def test_convolution_data_gradient_has_no_condition_in_its_hot_loop():
    g = CASES[0][1]()
    p = prepare(g)
    (anchor,) = [op for op in topological([p]) if isinstance(op, ComputeOp) and op.reduce_axis]
    cond = anchor.body[0].condition
    assert isinstance(cond, n.IntImm) and cond.value
    assert not any(isinstance(x, n.Call) and x.name == "if_then_else"
                   for x in post_order(anchor.body[0]))
    read = [t.op.name for t in anchor.input_tensors]
    assert any(name.endswith(".padded") for name in read)
    assert len(anchor.axis) == 3           # (batch, channel, flat position)


def test_weight_gradient_is_computed_with_the_vector_axis_last():
    p = prepare(CASES[1][1]())
    (anchor,) = [op for op in topological([p]) if isinstance(op, ComputeOp) and op.reduce_axis]
    assert anchor is not p.op and anchor.name.endswith(".t")
    assert [int(iv.dom.extent.value) for iv in anchor.axis] == [5, 3, 3, 6]


def test_softmax_gradient_computes_exp_once():
    p = prepare(CASES[8][1]())
    exps = [x for op in topological([p]) if isinstance(op, ComputeOp)
            for b in op.body for x in post_order(b) if isinstance(x, n.Call) and x.name == "exp"]
    assert len(exps) == 1
    raw = CASES[8][1]()
    raw_exps = [x for op in topological([raw]) if isinstance(op, ComputeOp)
                for b in op.body for x in post_order(b)
                if isinstance(x, n.Call) and x.name == "exp"]
    assert len(raw_exps) >= 2     # the forward's and its derivative's, at least


def test_flatten_only_where_the_axes_occur_as_one_position():
    A = td.placeholder((40,), "float64", name="A")
    B = td.placeholder((3,), "float64", name="B")
    k = td.reduce_axis((0, 3), "k")
    T = td.compute((4, 9), lambda r, s: td.sum(A[r * 9 + s + k] * B[k], axis=k), name="T")
    flat, reindex = _flatten_last_axes(T.op)
    assert reindex is not None and [int(iv.dom.extent.value) for iv in flat.axis] == [36]
    U = td.compute((4, 9), lambda r, s: td.sum(A[r * 8 + s + k] * B[k], axis=k), name="U")
    assert _flatten_last_axes(U.op)[1] is None     # r * 8 + s: not one flat position
    V = td.compute((4, 9), lambda r, s: td.sum(A[r * 9 + s + k] * B[k] * r, axis=k),
                   name="V")
    assert _flatten_last_axes(V.op)[1] is None     # r alone as well


def test_rows_and_columns_only_for_a_divided_position():
    A = td.placeholder((6, 8), "float64", name="A")
    F = td.compute((48,), lambda p: A[p // 8, p % 8] * 2.0, name="F")
    split, reindex = _rows_and_columns(F.op)
    assert reindex is not None and [int(iv.dom.extent.value) for iv in split.axis] == [6, 8]
    G = td.compute((48,), lambda p: A[p // 8, p % 8] * p.astype("float64"), name="G")
    assert _rows_and_columns(G.op)[1] is None      # p used alone too
