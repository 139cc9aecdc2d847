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

Given ``td.nd`` arrays on the CUDA device instead, the operator is scheduled with its GPU
template (``schedules/cuda``), runs on the GPU and returns a device array.
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
             "log_softmax", "layer_norm", "take"]
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


def _compiled(name: str, args, spec, attrs: dict, target: str, check_indices: bool = True):
    import tensordsl as td
    from .autotune.history import best_config, source_token
    from .autotune.workload import Workload
    key = (name, spec, _freeze(attrs), target, source_token(), check_indices)
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
        f = td.build(s, tensors, target=target, name=name, check_indices=check_indices)
        out = tensors[-1]
        shape = tuple(int(d.value) for d in out.shape)
        hit = _CACHE[key] = (f, shape, np.dtype(out.dtype))
        return hit


def _on_device(a) -> bool:
    from .nd import NDArray
    return isinstance(a, NDArray) and a.device == "cuda"


def _call_cuda(name: str, args, out, attrs: dict):
    """``call`` on device arrays: the operator's GPU template, compiled once per
    (shapes, dtypes, attributes)."""
    import tensordsl as td
    from schedules.cuda import schedule_for
    from .autotune.workload import Workload
    from .nd import NDArray, empty
    spec = []
    for k, a in enumerate(args):
        if isinstance(a, NDArray) and a.device == "cuda":
            spec.append(("array", a.shape, a.dtype.name))
        elif isinstance(a, (np.ndarray, NDArray)):
            raise TypeError(f"{name}: argument {k} is a host array, but others are on the "
                            "CUDA device; copy it there with td.nd.array(x, device='cuda')")
        else:
            spec.append(("value", a))
    key = (name, _freeze(spec), _freeze(attrs), "cuda")
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            placeholders, result = Workload(name, spec, attrs).define()
            f = td.build(schedule_for(name, result, attrs), placeholders + [result],
                         target="cuda", name=name)
            shape = tuple(int(d.value) for d in result.shape)
            hit = _CACHE[key] = (f, shape, np.dtype(result.dtype))
    f, shape, dtype = hit
    if out is None:
        out = empty(shape, dtype, device=f"cuda:{args[0].device_id}"
                    if isinstance(args[0], NDArray) else "cuda")
    elif not _on_device(out) or out.shape != shape or out.dtype != dtype:
        raise ValueError(f"{name}: out= must be a CUDA td.nd array of {dtype} and shape "
                         f"{shape}, got {out!r}")
    f(*[a for a in args if isinstance(a, NDArray)], out)
    return out


def call(name: str, *args, out=None, target: str = "llvm", check_indices: bool = True,
         **attrs):
    """Run operator ``name``: arrays become its tensors, other arguments pass through.
    ``check_indices=False``: indices read from data (``take``) are trusted, not checked."""
    if any(_on_device(a) for a in args):
        return _call_cuda(name, args, out, attrs)
    args = [np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a for a in args]
    f, shape, dtype = _compiled(name, args, _signature(name, args), attrs, target,
                                check_indices)
    if out is None:
        from .nd import aligned_numpy
        out = aligned_numpy(shape, dtype)
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
