"""benchmarks/capsule_ops.py computes the same routing on every side: numpy's and
PyTorch's against ours (and our gradients against autograd), at a small batch."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td
from benchmarks import capsule_ops

SMALL = dict(capsule_ops.PAPER, batch=2, in_caps=48)


def test_numpy_side_matches_ours():
    u, W, _ = capsule_ops.inputs(SMALL)
    ours = td.ops.capsule_routing(u, W, iterations=3)
    np.testing.assert_allclose(capsule_ops.numpy_routing(u, W, 3), ours, rtol=2e-4,
                               atol=1e-6)


def test_torch_side_and_our_gradients_agree():
    pytest.importorskip("torch")
    assert capsule_ops.check(SMALL) < 1e-4
    grads = capsule_ops.torch_fn("backward", SMALL)()
    assert [tuple(g.shape) for g in grads] == [(2, 48, 8), (48, 10, 16, 8)]
