"""``td.ops.<name>(*arrays, **attrs)``: every operator of ``kernels/dense.py`` on numpy arrays.

The first call for a (shapes, dtypes, attributes, target) combination defines the
operator on placeholders of those shapes, schedules it with its CPU template
(``schedules/cpu``) and compiles it; later calls only check the arguments and run the
kernel. The result is a new array, or ``out=`` when given.

    c = td.ops.matmul(a, b)
    y = td.ops.conv2d_nchw(x, w, stride=1, padding=1)
    p = td.ops.softmax(x, axis=-1)
"""
from __future__ import annotations

import functools
import threading

import numpy as np

_CACHE: dict = {}
_LOCK = threading.Lock()

# Operators whose arguments after the arrays are arrays too (optional ones may be None).
_ARRAY_ARGS = {"dense": 3, "layer_norm": 3}


def _operators() -> dict:
    import kernels.dense as dense
    names = ["matmul", "batch_matmul", "dense", "conv2d_nchw", "conv2d_nhwc", "max_pool2d",
             "avg_pool2d", "add", "subtract", "multiply", "divide", "maximum", "minimum",
             "relu", "gelu", "reduce_sum", "reduce_mean", "reduce_max", "softmax",
             "log_softmax", "layer_norm"]
    return {name: getattr(dense, name) for name in names}


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _compiled(name: str, arrays, attrs: dict, target: str):
    import tensordsl as td
    from schedules.cpu import schedule_for
    key = (name, tuple((a.shape, a.dtype.str) if a is not None else None for a in arrays),
           _freeze(attrs), target)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        placeholders = [None if a is None else
                        td.placeholder(a.shape, dtype=a.dtype.name, name=f"in{k}")
                        for k, a in enumerate(arrays)]
        out = _operators()[name](*placeholders, **attrs)
        s = schedule_for(name, out, attrs)
        args = [p for p in placeholders if p is not None] + [out]
        f = td.build(s, args, target=target, name=name)
        shape = tuple(int(d.value) for d in out.shape)
        hit = _CACHE[key] = (f, shape, np.dtype(out.dtype))
        return hit


def call(name: str, *args, out=None, target: str = "llvm", **attrs):
    """Run operator ``name`` on numpy arrays (see the module docstring)."""
    n_arrays = _ARRAY_ARGS.get(name)
    if n_arrays is None:
        arrays, scalars = [], []
        for a in args:
            (arrays if isinstance(a, np.ndarray) else scalars).append(a)
        if scalars:
            if len(arrays) != 1 or len(scalars) != 1 or not isinstance(scalars[0], (int, float)):
                raise TypeError(f"{name}: expected numpy arrays (and at most one number), "
                                f"got {[type(a).__name__ for a in args]}")
            attrs = dict(attrs, **{"__scalar": (args.index(scalars[0]), scalars[0])})
    else:
        arrays = list(args) + [None] * (n_arrays - len(args))
    for k, a in enumerate(arrays):
        if a is not None and not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: argument {k} must be a numpy.ndarray, got {type(a).__name__}")
    arrays = [None if a is None else np.ascontiguousarray(a) for a in arrays]
    scalar = attrs.pop("__scalar", None)
    if scalar is not None:
        return _call_with_scalar(name, arrays[0], scalar, out, target, attrs)
    f, shape, dtype = _compiled(name, arrays, attrs, target)
    result = _output(out, shape, dtype, name)
    f(*[a for a in arrays if a is not None], result)
    return result


def _call_with_scalar(name, array, scalar, out, target, attrs):
    import tensordsl as td
    position, value = scalar
    key_attrs = dict(attrs, scalar_position=position, scalar=value)
    key = (name, ((array.shape, array.dtype.str),), _freeze(key_attrs), target)
    hit = _CACHE.get(key)
    if hit is None:
        from schedules.cpu import schedule_for
        p = td.placeholder(array.shape, dtype=array.dtype.name, name="in0")
        operands = (p, value) if position == 1 else (value, p)
        o = _operators()[name](*operands, **attrs)
        f = td.build(schedule_for(name, o, attrs), [p, o], target=target, name=name)
        hit = _CACHE[key] = (f, tuple(int(d.value) for d in o.shape), np.dtype(o.dtype))
    f, shape, dtype = hit
    result = _output(out, shape, dtype, name)
    f(array, result)
    return result


def _output(out, shape, dtype, name):
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        got = (getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__))
        raise ValueError(f"{name}: out= must be a {dtype} array of shape {shape}, got {got}")
    return out


def __getattr__(name: str):
    if name.startswith("__") or name not in _operators():
        raise AttributeError(f"tensordsl.ops has no operator {name!r}")
    fn = functools.partial(call, name)
    fn.__doc__ = _operators()[name].__doc__
    return fn


def __dir__():
    return sorted(_operators())
