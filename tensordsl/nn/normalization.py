"""``LayerNorm`` and ``BatchNorm2d`` in PyTorch's shape: weight ones, bias zeros;
BatchNorm2d's running statistics are buffers (``running_mean``, ``running_var``,
``num_batches_tracked``), saved in ``state_dict`` as PyTorch saves them."""
from __future__ import annotations

import numpy as np

from . import functional as F
from .modules import Module, Parameter
from .trace import active


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 dtype="float32"):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) \
            else tuple(normalized_shape)
        self.eps = eps
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype))
            self.bias = Parameter(np.zeros(self.normalized_shape, dtype))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.weight is not None}")


class BatchNorm2d(Module):
    """Normalizes each channel of NCHW input. Training: with the batch's statistics
    (biased variance), and the running statistics updated as PyTorch's —
    ``(1 - momentum) * running + momentum * batch`` with the unbiased variance;
    ``momentum=None``: the cumulative average over ``num_batches_tracked`` batches. Eval
    (or ``track_running_stats=False``: always the batch's): with the running ones."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype="float32"):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))

    def _count_batch(self):
        self.num_batches_tracked.data = np.asarray(self.num_batches_tracked.data + 1)

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d: expected NCHW input (4 dimensions), got shape "
                             f"{x.shape}")
        batch_stats = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            # a counter: bookkeeping, not data (once per run of a traced step)
            trace = active()
            if trace is None:
                self._count_batch()
            elif momentum is None:
                raise ValueError("BatchNorm2d(momentum=None) cannot be traced by "
                                 "nn.TrainStep: its cumulative average changes every step; "
                                 "give a momentum or train eagerly")
            else:
                trace.per_run.append(self._count_batch)
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked.data)
        tracked = self.track_running_stats
        return F.batch_norm(x, self.running_mean if tracked else None,
                            self.running_var if tracked else None, self.weight, self.bias,
                            batch_stats, momentum if momentum is not None else 0.0, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}, "
                f"track_running_stats={self.track_running_stats}")
