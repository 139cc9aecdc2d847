"""``nn.SparseLinear`` and ``nn.GraphAttention``: forward against numpy, gradients (tape
through ``td.vjp`` of the sparse definitions) against central differences in float64 and
against closed forms; the graph-attention example learns from the graph."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import tensordsl.nn as nn
from tests.nn.gradcheck import check_gradients, weighted_sum


def _pattern(m, n, density, seed, dtype="float64"):
    a = sp.random(m, n, density, format="lil", dtype=dtype, random_state=seed)
    a[0, :] = 0                               # an empty row
    a[1, :] = np.arange(1, n + 1)             # a dense row
    a = sp.csr_matrix(a)
    a.sort_indices()
    return a


def test_sparse_linear_forward_and_gradients():
    rng = np.random.default_rng(0)
    W = _pattern(12, 9, 0.3, 1)
    layer = nn.SparseLinear(W)
    layer.bias.data = rng.standard_normal(12)
    x = nn.Tensor(rng.standard_normal((5, 9)), requires_grad=True)
    y = layer(x)
    np.testing.assert_allclose(y.data, x.data @ W.toarray().T + layer.bias.data, rtol=1e-12)
    head = rng.standard_normal((5, 12))
    weighted_sum(layer(x), head).backward()
    # closed forms: the values' gradient on the pattern only, x's through W
    rows = np.repeat(np.arange(12), np.diff(W.indptr))
    np.testing.assert_allclose(layer.values.grad,
                               (head[:, rows] * x.data[:, W.indices]).sum(0), rtol=1e-10)
    np.testing.assert_allclose(x.grad, head @ W.toarray(), rtol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, head.sum(0), rtol=1e-10)
    check_gradients(lambda: weighted_sum(layer(x), head), [x, layer.values, layer.bias], rng)


def _gat_reference(graph, x, W, a1, a2, slope=0.2):
    h = x @ W
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    e = h[rows] @ a1 + h[graph.indices] @ a2
    e = np.where(e > 0, e, slope * e)
    out = np.zeros_like(h)
    for i in range(graph.shape[0]):
        lo, hi = graph.indptr[i], graph.indptr[i + 1]
        w = np.exp(e[lo:hi] - e[lo:hi].max())
        out[i] = (w / w.sum()) @ h[graph.indices[lo:hi]]
    return out


def test_graph_attention_forward_and_gradients():
    rng = np.random.default_rng(3)
    graph = _pattern(10, 10, 0.3, 2) + sp.eye(10)
    graph = sp.csr_matrix(graph)
    graph.sort_indices()
    layer = nn.GraphAttention(4, 3, graph, seed=1)
    x = nn.Tensor(rng.standard_normal((10, 4)), requires_grad=True)
    np.testing.assert_allclose(
        layer(x).data, _gat_reference(graph, x.data, layer.weight.data, layer.a_src.data,
                                      layer.a_dst.data), rtol=1e-10, atol=1e-12)
    head = rng.standard_normal((10, 3))
    check_gradients(lambda: weighted_sum(layer(x), head),
                    [x, layer.weight, layer.a_src, layer.a_dst], rng)


def test_bad_patterns_and_operands_are_refused():
    with pytest.raises(TypeError, match="the pattern must be a scipy.sparse matrix"):
        nn.SparseLinear(np.ones((3, 3)))
    with pytest.raises(ValueError, match="graph must be square"):
        nn.GraphAttention(2, 2, sp.random(3, 4, 0.5, format="csr", dtype="float32"))
    layer = nn.SparseLinear(sp.random(4, 3, 0.5, format="csr", dtype="float32",
                                      random_state=0))
    with pytest.raises(TypeError, match="must be float32 like the pattern's values"):
        layer(nn.Tensor(np.ones((2, 3))))


def test_the_graph_attention_example_beats_the_mlp_without_the_graph():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parents[2] / "examples" / "graph_attention.py"
    spec = importlib.util.spec_from_file_location("graph_attention", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--epochs", "60"])
    # (150 epochs, the example's default: GAT 0.956, MLP 0.910 here)
    assert result["gat"] > 0.9 and result["gat"] > result["mlp"] + 0.03, result
