"""Derived kernels on the GPU path: a convolution's input and weight gradients and a
softmax's forward-mode tangent, scheduled by the CUDA generic template, run through the
emulator (no GPU needed; ``-m gpu`` runs the same on a device) against numpy."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import kernels.dense as D
import tensordsl as td
from schedules.cuda.generic import schedule_generic
from tests.helpers import poisoned


def _emulate(t, args, arrays):
    s = td.create_schedule(t.op)
    schedule_generic(s, t)
    f = td.build(s, [*args, t], target="cuda")
    out = poisoned(tuple(int(d.value) for d in t.shape), t.dtype)
    f.emulate(*arrays, out)
    return out


def test_conv2d_gradients_on_the_gpu_path():
    rng = np.random.default_rng(0)
    x = td.placeholder((2, 3, 7, 6), "float32", "x")
    w = td.placeholder((4, 3, 3, 3), "float32", "w")
    (gx, gw), head = td.vjp(D.conv2d_nchw(x, w, padding=1), [x, w])
    xa = rng.standard_normal((2, 3, 7, 6)).astype("float32")
    wa = rng.standard_normal((4, 3, 3, 3)).astype("float32")
    ha = rng.standard_normal((2, 4, 7, 6)).astype("float32")
    windows = sliding_window_view(np.pad(xa, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3),
                                  axis=(2, 3))
    expected_w = np.einsum("bfyx,bcyxij->fcij", ha, windows)
    head_windows = sliding_window_view(np.pad(ha, ((0, 0), (0, 0), (1, 1), (1, 1))),
                                       (3, 3), axis=(2, 3))
    expected_x = np.einsum("bfyxij,fcij->bcyx", head_windows, wa[:, :, ::-1, ::-1])
    np.testing.assert_allclose(_emulate(gw, [x, head], [xa, ha]), expected_w,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_emulate(gx, [head, w], [ha, wa]), expected_x,
                               rtol=1e-4, atol=1e-4)


def test_softmax_tangent_on_the_gpu_path():
    rng = np.random.default_rng(1)
    x = td.placeholder((5, 9), "float32", "x")
    ty, tx = td.jvp(D.softmax(x), x)
    xa = rng.standard_normal((5, 9)).astype("float32")
    ta = rng.standard_normal((5, 9)).astype("float32")
    p = np.exp(xa - xa.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = p * (ta - (p * ta).sum(1, keepdims=True))
    np.testing.assert_allclose(_emulate(ty, [x, tx], [xa, ta]), expected, rtol=1e-4,
                               atol=1e-5)
