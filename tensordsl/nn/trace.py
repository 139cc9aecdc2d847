"""Tracing a module's forward into tensor expressions, and ``TrainStep``: a whole
training step (forward, loss, gradients, optimizer update) as one ``td.build_program``.

The eager tape (``tensor.py``) runs one generated kernel per operator and one per
gradient, with Python between them. A training step repeats the same graph every
batch, so ``TrainStep`` traces it once per input shape instead: while tracing,
``nn.functional``'s operators build the compute definitions of ``kernels/dense.py`` on
symbolic tensors (``Tensor.traced``) rather than running kernels; ``td.grad`` derives the
gradients of the loss; the optimizer adds its update; and ``td.build_program`` cuts the
whole graph into kernels and schedules each. Elementwise stages are then fused where
they meet (``relu(x @ W.T + b)``'s bias and ReLU go into the kernels that read them,
as Relay and XLA fuse), and nothing runs in Python between kernels but the calls.

    step = nn.TrainStep(model, F.cross_entropy, optimizer)
    for x, y in loader:
        loss = step(x, y)        # a float; parameters and optimizer state are updated

A forward may only combine its inputs through ``nn.functional`` (and Tensor methods
built on it); reading ``.data`` raises while tracing. A tensor it reads that is not
computed from the input — a parameter, a buffer, a constant — is read afresh every
run; a random mask is drawn every run (``Trace.fresh_input``), and writes to buffers
(BatchNorm's running statistics) happen after every run (``Trace.write``).
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from .tensor import Tensor

_state = threading.local()


def active() -> "Trace | None":
    """The trace being recorded on this thread, if any."""
    return getattr(_state, "trace", None)


class Trace:
    """The placeholders a traced graph reads: one per array it was given (inputs,
    parameters, captured constants), keyed by the object that holds the array."""

    def __init__(self):
        self.inputs: dict = {}   # id(holder) -> (holder, placeholder)
        self.fresh: list = []    # (placeholder, draw): a new array every run (a mask)
        self.written: list = []  # (holder, expr): stored into holder.data after each run
        self.per_run: list = []  # callables run once per run (a batch counter)
        self.checks: list = []   # (placeholder, check(array)) on an input before each run

    def fresh_input(self, shape, dtype: str, draw) -> Tensor:
        """A symbolic input that ``draw()`` gives a new value every run (dropout's mask:
        traced once, it must not be captured as a constant)."""
        import tensordsl as td
        ph = td.placeholder(tuple(shape), dtype, name=f"fresh{len(self.fresh)}")
        self.fresh.append((ph, draw))
        return Tensor.traced(ph)

    def check(self, tensor: Tensor, check) -> None:
        """Before each run, ``check(array)`` on the array fed for the traced input
        ``tensor`` (class labels in range): values only known then."""
        self.checks.append((tensor.expr, check))

    def write(self, holder: Tensor, value) -> None:
        """After each run, ``holder``'s array takes ``value`` (a traced tensor or
        expression), in place: the side effects of a forward (running statistics)."""
        expr = value.expr if isinstance(value, Tensor) else value
        self.written.append((holder, expr))

    def placeholder(self, holder, name: str | None = None):
        hit = self.inputs.get(id(holder))
        if hit is None:
            import tensordsl as td
            array = holder.data if isinstance(holder, Tensor) else np.asarray(holder)
            ph = td.placeholder(array.shape, array.dtype.name,
                                name=name or f"const{len(self.inputs)}")
            hit = self.inputs[id(holder)] = (holder, ph)
        return hit[1]

    def symbol(self, value):
        """A te tensor (or a plain number) for an operand of a traced operator."""
        if isinstance(value, Tensor):
            if value.expr is not None:
                return value.expr
            if value.data.ndim == 0 and not value.requires_grad:
                return value.data.item()      # a number: folded into the expression
            return self.placeholder(value)
        if isinstance(value, np.ndarray):
            return self.placeholder(value)
        return value


@contextlib.contextmanager
def tracing():
    """Within it, ``nn.functional`` builds expressions instead of running kernels."""
    before = active()
    _state.trace = trace = Trace()
    try:
        yield trace
    finally:
        _state.trace = before


def apply_traced(trace: Trace, op: str, operands: list, options: dict) -> Tensor:
    """``kernels/dense.<op>`` on the operands' expressions: the traced counterpart of
    running ``td.ops.<op>``."""
    from tensordsl.ops import _operators
    exprs = [trace.symbol(x) for x in operands]
    out = _operators()[op](*exprs, **options)
    requires = any(isinstance(x, Tensor) and x.requires_grad for x in operands)
    return Tensor.traced(out, requires_grad=requires)
