"""numpy references for adjoints that are easiest to state as scatters (loops over the
forward's output, adding into the input): independent of the gather forms autodiff
derives."""
from __future__ import annotations

import numpy as np


def conv2d_nchw_adjoints(x, w, head, stride: int, pad: int):
    """(d/dx, d/dw) of sum(head * conv2d_nchw(x, w, stride, pad)), groups 1."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    gx = np.zeros_like(xpad)
    gw = np.zeros_like(w)
    for oy in range(head.shape[2]):
        for ox in range(head.shape[3]):
            rows = slice(oy * stride, oy * stride + KH)
            cols = slice(ox * stride, ox * stride + KW)
            gx[:, :, rows, cols] += np.einsum("nf,fcij->ncij", head[:, :, oy, ox], w)
            gw += np.einsum("nf,ncij->fcij", head[:, :, oy, ox], xpad[:, :, rows, cols])
    return gx[:, :, pad:pad + H, pad:pad + W], gw


def max_pool2d_adjoint(x, head, k: int, stride: int, pad: int):
    """PyTorch's rule: each window's first maximum, in row-major order, gets its head."""
    N, C, H, W = x.shape
    g = np.zeros_like(x)
    for b, c, oy, ox in np.ndindex(*head.shape):
        best, at = -np.inf, None
        for dy in range(k):
            for dx in range(k):
                yy, xx = oy * stride + dy - pad, ox * stride + dx - pad
                if 0 <= yy < H and 0 <= xx < W and x[b, c, yy, xx] > best:
                    best, at = x[b, c, yy, xx], (yy, xx)
        g[b, c, at[0], at[1]] += head[b, c, oy, ox]
    return g
