"""A user's own operator as a layer: ``nn.Function.from_compute`` turns a tensor-expression
compute into a differentiable function (and module) of ``nn.Tensor``s.

    import tensordsl as td
    import tensordsl.nn as nn

    def gated(x, w):      # te tensors in, a te tensor out
        return td.compute(x.shape, lambda i, j: x[i, j] * td.sigmoid(w[j] * x[i, j]),
                          name="gated")

    gate = nn.Function.from_compute(gated)        # or from_compute("my_ops.py:gated")
    y = gate(x, w)                                # nn.Tensors; y.backward(...) reaches w

The forward is the compute on placeholders of the operands' shapes and dtypes, built
with ``td.build([*inputs, out])``; the gradient of each operand that needs one is
``td.vjp(out, [x])``, built with ``td.build([*inputs, head, grad])``. Each is compiled
once per (shapes, dtypes) and scheduled by the auto-scheduler with the best tuning
record filed for what it computes (``autotune/structural.py``) — the records ``tensordsl
tune file.py:fn --shape ...`` (the forward) and ``... --grad NAME --head`` (a gradient)
write, whatever the tensors are called. Under ``nn.TrainStep`` the compute is traced
into the step's program like any ``nn.functional`` call.

``sizes=`` takes a function of the file's other convention instead, the CLI's
(``userfile.py``): called with sizes, it returns ``[*inputs, out]``; ``sizes(*shapes)``
gives its arguments from the operands' shapes. Then one function serves both
``tensordsl tune`` and training:

    # my_ops.py
    def gated_unit(m, n):                 # tensordsl tune my_ops.py:gated_unit --shape 256,64
        x = td.placeholder((m, n), name="x")
        w = td.placeholder((n,), name="w")
        return [x, w, gated(x, w)]

    gate = nn.Function.from_compute("my_ops.py:gated_unit", sizes=lambda x, w: x)
"""
from __future__ import annotations

import inspect

import numpy as np

from .modules import Module
from .tensor import Tensor, _Record, grad_enabled
from .trace import active


class Function(Module):
    """A compute on te tensors as a differentiable function of ``nn.Tensor``s (a module
    without parameters, so it can sit in a ``Sequential`` when it takes one operand)."""

    def __init__(self, compute, sizes=None, name: str | None = None):
        super().__init__()
        if sizes is not None and not callable(sizes):
            raise TypeError(f"Function: sizes must be a function of the operands' shapes "
                            f"returning the compute's size arguments, got {sizes!r}")
        self.compute, self.label = _resolve(compute)
        self.sizes = sizes
        self.name = name or self.label
        self._kernels: dict = {}    # (shapes, dtypes) -> _Kernels

    @classmethod
    def from_compute(cls, compute, sizes=None, name: str | None = None) -> "Function":
        """``compute``: a callable from te tensors to a te tensor, or
        ``"path/to/file.py:function"`` naming one. With ``sizes`` (a function of the
        operands' shapes returning the compute's positional arguments), ``compute``
        follows the CLI's convention instead: sizes in, ``[*inputs, out]`` out.

        >>> swish = nn.Function.from_compute(
        ...     lambda x: td.compute(x.shape, lambda i, j: x[i, j] * td.sigmoid(x[i, j])))
        >>> y = swish(nn.Tensor(np.ones((2, 3), "float32"), requires_grad=True))
        """
        return cls(compute, sizes=sizes, name=name)

    def extra_repr(self) -> str:
        return self.name

    def forward(self, *operands) -> Tensor:
        operands = [x if isinstance(x, Tensor) else Tensor(x) for x in operands]
        trace = active()
        if trace is not None:
            return self._traced(trace, operands)
        kernels = self._compiled(operands)
        return taped_call(self.name, operands, list(kernels.names), kernels)

    def _traced(self, trace, operands) -> Tensor:
        """Under ``nn.TrainStep``: the compute on the operands' expressions, so the step's
        program holds it (and ``td.grad`` of the whole step differentiates it)."""
        if self.sizes is not None:
            raise NotImplementedError(
                f"{self.name}: a function of sizes (sizes=) makes its own placeholders and "
                "cannot be traced into nn.TrainStep; pass the compute on tensors instead "
                "(from_compute(fn) with fn(x, ...) -> tensor)")
        out = self._checked(self.compute(*[trace.symbol(x) for x in operands]))
        return Tensor.traced(out, requires_grad=any(x.requires_grad for x in operands))

    # ------------------------------------------------------------ the computes
    def _checked(self, out):
        from ..te.tensor import Tensor as TeTensor
        if not isinstance(out, TeTensor):
            raise TypeError(f"{self.label}: the compute must return one te tensor (a "
                            f"td.compute of its arguments), got {type(out).__name__}")
        return out

    def define(self, shapes, dtypes) -> tuple[list, object]:
        """(input placeholders, output tensor) of the compute on these shapes."""
        if self.sizes is not None:
            return self._define_from_sizes(shapes, dtypes)
        names = _parameter_names(self.compute, len(shapes))
        from ..te.api import placeholder
        inputs = [placeholder(shape, dtype=dtype, name=name)
                  for shape, dtype, name in zip(shapes, dtypes, names)]
        return inputs, self._checked(self.compute(*inputs))

    def _define_from_sizes(self, shapes, dtypes):
        from ..arith.simplify import const_int
        from ..te.tensor import Tensor as TeTensor
        args = self.sizes(*shapes)
        args = (args,) if isinstance(args, int) else tuple(args)
        result = self.compute(*args)
        if isinstance(result, tuple) and len(result) == 2 and not isinstance(
                result[0], TeTensor):
            result = result[1]   # a (schedule, tensors) pair: the tensors
        if not isinstance(result, (list, tuple)) or len(result) < 2 or \
                not all(isinstance(t, TeTensor) for t in result):
            raise TypeError(f"{self.label}{args}: with sizes=, the function must return "
                            f"its tensors, the inputs first and the output last")
        *inputs, out = result
        got = [tuple(const_int(d) for d in t.shape) for t in inputs]
        if len(inputs) != len(shapes) or got != [tuple(s) for s in shapes] or \
                [t.dtype for t in inputs] != list(dtypes):
            given = [f"{s}:{d}" for s, d in zip(shapes, dtypes)]
            made = [f"{s}:{t.dtype}" for s, t in zip(got, inputs)]
            raise ValueError(f"{self.label}{args}: its inputs ({', '.join(made)}) do not "
                             f"match the operands ({', '.join(given)}); check sizes=")
        return inputs, out

    def _compiled(self, operands) -> "_Kernels":
        for k, x in enumerate(operands):
            if x.dtype.kind not in "biuf":
                raise TypeError(f"{self.name}: operand {k} must be an array of numbers, "
                                f"got {x.dtype}")
        shapes = tuple(x.shape for x in operands)
        dtypes = tuple(x.dtype.name for x in operands)
        kernels = self._kernels.get((shapes, dtypes))
        if kernels is None:
            inputs, out = self.define(shapes, dtypes)
            kernels = self._kernels[(shapes, dtypes)] = _Kernels(inputs, out)
        return kernels


class _Kernels:
    """The compiled forward of one (shapes, dtypes) and, built on first use, the
    gradient of each operand."""

    def __init__(self, inputs, out):
        import tensordsl as td
        from ..arith.simplify import const_int
        self.inputs, self.out = inputs, out
        self.names = [t.op.name for t in inputs]
        self.shape = tuple(const_int(d) for d in out.shape)
        self.dtype = np.dtype(out.dtype)
        self.forward_kernel = td.build(list(inputs) + [out], target="llvm")
        self.gradients: dict = {}   # operand index -> (kernel, shape, dtype)

    def forward(self, arrays) -> np.ndarray:
        from ..nd import aligned_numpy
        result = aligned_numpy(self.shape, self.dtype)
        self.forward_kernel(*arrays, result)
        return result

    def backward(self, arrays, cotangent, wanted) -> list:
        """One gradient per operand (None where ``wanted`` is false or it is an integer)."""
        from ..nd import aligned_numpy
        head = np.ascontiguousarray(cotangent, dtype=self.dtype)
        grads = []
        for k, (array, want) in enumerate(zip(arrays, wanted)):
            if not want or array.dtype.kind != "f":
                grads.append(None)
                continue
            kernel, shape, dtype = self._gradient(k)
            g = aligned_numpy(shape, dtype)
            kernel(*arrays, head, g)
            grads.append(g)
        return grads

    def _gradient(self, k: int):
        """``td.vjp(out, [inputs[k]])`` compiled as ``[*inputs, head, grad]``: the
        tensors, in order, of ``tensordsl tune file.py:fn --grad NAME --head``."""
        hit = self.gradients.get(k)
        if hit is None:
            import tensordsl as td
            from ..arith.simplify import const_int
            (g,), head = td.vjp(self.out, [self.inputs[k]])
            kernel = td.build(list(self.inputs) + [head, g], target="llvm")
            hit = self.gradients[k] = (kernel, tuple(const_int(d) for d in g.shape),
                                       np.dtype(g.dtype))
        return hit


def taped_call(name: str, operands: list, names: list, kernels) -> Tensor:
    """``kernels.forward`` on the operands' arrays, the result recorded on the tape with
    ``kernels.backward`` as its vjp when an operand requires a gradient (a user's compute
    here, a sparse layer's in ``sparse.py``)."""
    arrays = [x.data for x in operands]
    out = Tensor(kernels.forward(arrays))
    if grad_enabled() and any(x.requires_grad for x in operands):
        out.requires_grad = True
        wanted = [x.requires_grad for x in operands]
        out.record = _Record(name, operands, names, len(operands),
                             vjp=lambda g: kernels.backward(arrays, g, wanted))
    return out


def _resolve(compute):
    """(callable, label) of a callable or ``path/to/file.py:function``."""
    if isinstance(compute, str):
        from ..autotune.userfile import UserFunction
        call = UserFunction(compute)
        return call._function(call.name), f"{call.path.name}:{call.name}"
    if callable(compute):
        return compute, getattr(compute, "__name__", type(compute).__name__)
    raise TypeError(f"Function.from_compute: expected a callable or 'path/to/file.py:"
                    f"function', got {type(compute).__name__}")


def _parameter_names(fn, count: int) -> list[str]:
    """The compute's parameter names for its placeholders (``in<k>`` for ``*args``)."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params[:count]]
    return names + [f"in{k}" for k in range(len(names), count)]
