"""Every ``td.ops`` operator as a differentiable function of ``nn.Tensor``s, with the
operator's own signature: ``F.conv2d_nchw(x, w, stride=1, padding=1)``. The forward
is ``td.ops.<op>``; ``Tensor.backward`` calls ``td.ops.<op>_backward``.

Beside them, PyTorch's ``torch.nn.functional`` names and signatures where they differ
(``torch_names.py``): ``F.linear``, ``F.conv2d`` (with a bias), ``F.cross_entropy``,
``F.mse_loss``, ``F.dropout``, ``F.batch_norm``, ``F.layer_norm``, ``F.embedding``,
``F.flatten``, ``F.reshape`` (where a name is also an operator's — ``layer_norm``,
``batch_norm``, ``dropout``, ... — PyTorch's signature wins; the operator's own is
``apply("layer_norm", x, gamma, beta, axis=-1)``). ``F.margin_loss(v, labels)`` takes
class indices and averages over the batch (``capsules.py``); the operator, per sample
on a one-hot, is ``apply("margin_loss", v, onehot)``. Each of them, like every operator
here, ends in ``apply(op, ...)``: one ``td.ops`` operator per call, so a tracer that
follows ``apply`` (``trace.py``) sees the whole computation.
"""
from __future__ import annotations

import functools
import inspect

from .tensor import Tensor, _Record, grad_enabled
from .trace import active, apply_traced


def apply(op: str, *args, **kwargs) -> Tensor:
    """``td.ops.<op>`` on the arrays of ``args``; the result records the call when an
    operand requires a gradient (and gradients are enabled)."""
    import tensordsl as td
    from tensordsl.ops import _BINARY, _OPERANDS
    fn = getattr(td.ops, op)
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind == p.POSITIONAL_OR_KEYWORD]
    try:
        bound = inspect.Signature(params).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{op}(): {e}") from None
    tensors = _OPERANDS[op]
    operands, names, options = [], [], {}
    for p in params:
        value = bound.arguments.get(p.name, p.default)
        if p.name in tensors:
            # a number stays one (numpy's weak scalar: float32 + 1.0 stays float32)
            keep = value is None or isinstance(value, Tensor) or (
                op in _BINARY and isinstance(value, (bool, int, float)))
            operands.append(value if keep else Tensor(value))
            names.append(p.name)
        elif p.name in bound.arguments:
            options[p.name] = value
    required = sum(1 for p in params if p.name in tensors and p.default is p.empty)
    # the operator's positional operands, up to the last one given
    while len(operands) > required and operands[-1] is None:
        operands.pop()
    trace = active()
    if trace is not None:
        return apply_traced(trace, op, operands, options)
    arrays = [x.data if isinstance(x, Tensor) else x for x in operands]
    out = Tensor(fn(*arrays, **options))
    if grad_enabled() and any(isinstance(x, Tensor) and x.requires_grad for x in operands):
        out.requires_grad = True
        out.record = _Record(op, operands, names[:len(operands)], required, options)
    return out


@functools.cache
def _function(op: str):
    def f(*args, **kwargs):
        return apply(op, *args, **kwargs)
    f.__name__ = f.__qualname__ = op
    f.__doc__ = f"``td.ops.{op}`` on nn.Tensors, differentiable (see ``td.ops.{op}``)."
    return f


from .torch_names import (batch_norm, conv2d, cross_entropy, dropout, embedding,  # noqa: E402
                          flatten, layer_norm, linear, mse_loss, reshape)
from .capsules import margin_loss  # noqa: E402


def __getattr__(name: str):
    from tensordsl.ops import _OPERANDS
    if name in _OPERANDS:
        return _function(name)
    raise AttributeError(f"tensordsl.nn.functional has no operator {name!r}")


def __dir__():
    from tensordsl.ops import _OPERANDS

    from . import torch_names
    return sorted(set(_OPERANDS) | set(torch_names.__all__) | {"apply"})
