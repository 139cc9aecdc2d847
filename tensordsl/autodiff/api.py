"""``td.grad``, ``td.vjp``, ``td.jvp``, ``td.hvp``: argument checks and placeholders; the
derivations are ``reverse.py`` and ``forward.py``."""
from __future__ import annotations

from ..errors import TensorDSLError
from ..ir import dtype as dt
from ..ir import nodes as n
from ..te import api
from ..te.tensor import STOP_GRADIENT_TAG, Tensor
from . import forward, reductions, reverse


def _tensor(value, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{what}: expected a tensor, got {type(value).__name__}: {value!r}")
    if not dt.is_float(value.dtype):
        raise TensorDSLError(f"{what}: {value.name!r} is {value.dtype}; only floating-point "
                             "tensors have derivatives")
    return value


def _tensors(xs, what: str) -> tuple[list, bool]:
    single = isinstance(xs, Tensor)
    items = [xs] if single else list(xs) if isinstance(xs, (list, tuple)) else None
    if items is None:
        raise TypeError(f"{what}: expected a tensor or a list of tensors, got "
                        f"{type(xs).__name__}")
    return [_tensor(x, f"{what}[{k}]" if not single else what)
            for k, x in enumerate(items)], single


def _dims(t: Tensor) -> tuple:
    return tuple(d.value if isinstance(d, n.IntImm) else str(d) for d in t.shape)


def _like(t: Tensor, given, what: str, name: str) -> Tensor:
    """``given`` checked against ``t``'s shape and dtype, or a new placeholder like it."""
    if given is None:
        return api.placeholder(t.shape, t.dtype, name=name)
    given = _tensor(given, what)
    same = len(given.shape) == len(t.shape) and all(
        a is b or repr(a) == repr(b) for a, b in zip(given.shape, t.shape))
    if not same or given.dtype != t.dtype:
        raise ValueError(f"{what}: expected a {t.dtype} tensor of shape {_dims(t)} "
                         f"(like {t.name!r}), got {given.dtype} of shape {_dims(given)}")
    return given


def stop_gradient(x):
    """``x`` itself, as a constant for ``td.grad``/``td.jvp``/``td.hvp`` (JAX's
    ``lax.stop_gradient``, PyTorch's ``detach``): no derivative flows through it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"stop_gradient: expected a tensor, got {type(x).__name__}")
    return api.compute(x.shape, lambda *i: x[i], name=f"{x.name}.stop_gradient",
                       tag=STOP_GRADIENT_TAG)


def grad(y, xs, head=None):
    """The adjoints (reverse mode) of ``xs`` for the cotangent ``head`` of ``y``
    (default: ones, the gradient of ``sum(y)``): one tensor for a tensor ``xs``, a list
    for a list. See ``tensordsl.autodiff``."""
    y = _tensor(y, "y")
    xs, single = _tensors(xs, "xs")
    if head is not None:
        head = _like(y, head, "head", "")
    out = reverse.adjoints(y, xs, head)
    return out[0] if single else out


def gradient(output, inputs, head=None) -> list:
    """TVM's ``te.gradient``: ``td.grad`` that always returns a list."""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    return grad(output, inputs, head)


def vjp(y, xs, head=None):
    """``(grad(y, xs, head), head)``; ``head`` left out is a new placeholder named
    ``<y.name>.grad``."""
    y = _tensor(y, "y")
    head = _like(y, head, "head", f"{y.name}.grad")
    return grad(y, xs, head), head


def jvp(y, xs, tangents=None):
    """``(tangent of y, tangents)``: forward mode along ``tangents`` (one per x, like
    it; left out: new placeholders named ``<x.name>.tangent``)."""
    y = _tensor(y, "y")
    xs_list, single = _tensors(xs, "xs")
    if tangents is None:
        tangents = [None] * len(xs_list)
    elif isinstance(tangents, Tensor):
        tangents = [tangents]
    tangents = list(tangents)
    if len(tangents) != len(xs_list):
        raise ValueError(f"tangents: expected one per x ({len(xs_list)}), got "
                         f"{len(tangents)}")
    tangents = [_like(x, t, f"tangents[{k}]", f"{x.name}.tangent")
                for k, (x, t) in enumerate(zip(xs_list, tangents))]
    (ty,) = forward.tangents([y], xs_list, tangents)
    return ty, (tangents[0] if single else tangents)


def hvp(y, x, v=None, head=None):
    """``(H v, v)``: the Hessian of ``sum(head * y)`` (head default ones) with respect to
    ``x``, times ``v`` — forward mode over the reverse-mode gradient. ``x`` a tensor:
    ``v`` one tensor like it; ``x`` a list: ``v`` a list (and ``H v`` one tensor per x,
    the product with the Hessian of all of them together). ``v`` left out: new
    placeholders named ``<x.name>.tangent``."""
    y = _tensor(y, "y")
    xs, single = _tensors(x, "x")
    vs = [None] * len(xs) if v is None else [v] if isinstance(v, Tensor) else list(v)
    if len(vs) != len(xs):
        raise ValueError(f"v: expected one tensor per x ({len(xs)}), got {len(vs)}")
    vs = [_like(t, u, f"v[{k}]" if not single else "v", f"{t.name}.tangent")
          for k, (t, u) in enumerate(zip(xs, vs))]
    if head is not None:
        head = _like(y, head, "head", "")
    forms = reductions.SumForms()
    grads = reverse.adjoints(y, xs, head, forms)
    hv = forward.tangents(grads, xs, vs, forms)
    return (hv[0], vs[0]) if single else (hv, vs)
