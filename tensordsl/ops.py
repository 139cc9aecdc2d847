"""``td.ops.<name>(*arrays, **attrs)``: every operator of ``kernels/dense.py`` on numpy arrays.

The first call for a (shapes, dtypes, attributes, target) combination defines the
operator on placeholders of those shapes, schedules it with its CPU template
(``schedules/cpu``) and compiles it; later calls only check the arguments and run the
kernel. The result is a new array, or ``out=`` when given. A tuned configuration on
record for the workload (``tensordsl tune``, ``td.autotune``) replaces the template's
defaults.

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


@functools.cache
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


def _signature(name: str, args) -> tuple:
    """Per positional argument: an array's (shape, dtype), or a plain value as is."""
    spec = []
    for k, a in enumerate(args):
        if isinstance(a, np.ndarray):
            spec.append(("array", a.shape, a.dtype.str))
        elif a is None or isinstance(a, (bool, int, float, str, tuple, list)):
            spec.append(("value", _freeze(a)))
        else:
            raise TypeError(f"{name}: argument {k} must be a numpy.ndarray or a plain value, "
                            f"got {type(a).__name__}")
    return tuple(spec)


def _compiled(name: str, args, spec, attrs: dict, target: str):
    import tensordsl as td
    from .autotune.history import best_config, source_token
    from .autotune.workload import Workload
    key = (name, spec, _freeze(attrs), target, source_token())
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        workload = Workload.from_arrays(name, args, attrs)
        # the best tuned configuration on record, else the template's defaults
        config = best_config(workload.key, target, workload.template)
        s, tensors = workload.schedule(config)
        f = td.build(s, tensors, target=target, name=name)
        out = tensors[-1]
        shape = tuple(int(d.value) for d in out.shape)
        hit = _CACHE[key] = (f, shape, np.dtype(out.dtype))
        return hit


def call(name: str, *args, out=None, target: str = "llvm", **attrs):
    """Run operator ``name``: arrays become its tensors, other arguments pass through."""
    args = [np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a for a in args]
    f, shape, dtype = _compiled(name, args, _signature(name, args), attrs, target)
    if out is None:
        out = np.empty(shape, dtype)
    elif not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        got = (getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__))
        raise ValueError(f"{name}: out= must be a {dtype} array of shape {shape}, got {got}")
    f(*[a for a in args if isinstance(a, np.ndarray)], out)
    return out


@functools.cache
def _entry(name: str):
    fn = functools.partial(call, name)
    fn.__doc__ = _operators()[name].__doc__
    return fn


def __getattr__(name: str):
    if name.startswith("__") or name not in _operators():
        raise AttributeError(f"tensordsl.ops has no operator {name!r}")
    return _entry(name)


def __dir__():
    return sorted(_operators())
