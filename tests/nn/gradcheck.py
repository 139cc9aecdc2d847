"""Gradients of nn code against central finite differences, in float64."""
from __future__ import annotations

import numpy as np

import tensordsl.nn as nn


def check_gradients(loss_of, tensors, rng, rtol=1e-6, eps=1e-6):
    """``loss_of()`` (a one-element Tensor computed from ``tensors``: inputs that
    require a gradient, a module's parameters) differentiated by the tape, against a
    central difference along a random direction per tensor, each moved alone."""
    for t in tensors:
        t.grad = None
    loss_of().backward()
    for k, t in enumerate(tensors):
        assert t.grad is not None, f"tensor {k} got no gradient"
        direction = rng.standard_normal(t.shape)
        original = t.data

        def at(step):
            t.data = original + step * direction
            with nn.no_grad():
                return loss_of().item()

        fd = (at(eps) - at(-eps)) / (2 * eps)
        t.data = original
        got = float((t.grad * direction).sum())
        np.testing.assert_allclose(got, fd, rtol=rtol, atol=1e-9,
                                   err_msg=f"gradient of tensor {k}")


def weighted_sum(y, head):
    """``sum(y * head)``: a scalar whose gradient with respect to ``y`` is ``head``."""
    import tensordsl.nn.functional as F
    return F.reduce_sum(F.multiply(y, nn.Tensor(head)))
