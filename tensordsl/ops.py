"""``td.ops.<name>(*arrays, **attrs)``: every operator of ``kernels/dense.py`` and
``kernels/training.py``, and ``kernels/capsule.py``'s ``capsule_routing``, ``primary_capsules``
and ``margin_loss``, on numpy arrays.

Each ``td.ops.<name>`` is a function with the kernel's signature (less ``name``) and
docstring, plus the keywords ``out=``, ``target=`` and ``check_indices=``. Its tensor
arguments may be lists or numbers (converted as ``numpy.asarray`` does); the elementwise
operators take numpy's result type. The call binds its arguments to that signature and
passes the tensors by position and the options by keyword, as the CLI and the records do.

The first call for a (shapes, dtypes, attributes, target) combination defines the
operator on placeholders of those shapes, schedules it with its CPU template
(``schedules/cpu``) and compiles it; later calls only check the arguments and run the
kernel. The result is a new array, or ``out=`` when given. A tuned configuration on
record for the workload (``tensordsl tune``, ``td.autotune``) replaces the template's
defaults.

    c = td.ops.matmul(a, b)
    y = td.ops.conv2d_nchw(x, w, stride=1, padding=1)
    p = td.ops.softmax(x, axis=-1)

Each operator's gradients are ``td.ops.<name>_backward(*operands, grad_out, **options)``
(``ops_backward.py``), derived by ``td.vjp`` from the same compute definitions:

    gx, gw = td.ops.conv2d_nchw_backward(x, w, grad_out, stride=1, padding=1)

Given ``td.nd`` arrays on the CUDA device instead, the operator is scheduled with its GPU
template (``schedules/cuda``), runs on the GPU and returns a device array.
"""
from __future__ import annotations

import functools
import inspect
import threading

import numpy as np

_CACHE: dict = {}
_LOCK = threading.Lock()


# operator -> the parameters that are tensors; the others are options (attributes)
_OPERANDS = {
    "matmul": ("a", "b"), "batch_matmul": ("a", "b"), "dense": ("x", "weight", "bias"),
    "conv2d_nchw": ("x", "weight"), "conv2d_nhwc": ("x", "weight"),
    "max_pool2d": ("x",), "avg_pool2d": ("x",),
    "add": ("a", "b"), "subtract": ("a", "b"), "multiply": ("a", "b"),
    "divide": ("a", "b"), "maximum": ("a", "b"), "minimum": ("a", "b"),
    "relu": ("x",), "gelu": ("x",), "reduce_sum": ("x",), "reduce_mean": ("x",),
    "reduce_max": ("x",), "softmax": ("x",), "log_softmax": ("x",),
    "layer_norm": ("x", "gamma", "beta"), "take": ("x", "indices"),
    "tanh": ("x",), "sigmoid": ("x",), "reshape": ("x",), "bias_add": ("x", "bias"),
    "cross_entropy": ("logits", "labels"), "mse_loss": ("x", "y"),
    "batch_norm": ("x", "gamma", "beta", "moving_mean", "moving_var"),
    "batch_norm_update_stats": ("x", "moving_mean", "moving_var"),
    "dropout": ("x", "mask"),
    "capsule_routing": ("u", "weight"),
    "primary_capsules": ("x", "weight", "bias"),
    "margin_loss": ("v", "labels_onehot"),
}
# elementwise on two operands: a number stays a number (numpy's weak scalars) and the
# operands are converted to numpy's result type
_BINARY = ("add", "subtract", "multiply", "divide", "maximum", "minimum")


@functools.cache
def _operators() -> dict:
    import kernels.capsule as capsule
    import kernels.dense as dense
    import kernels.training as training
    return {name: getattr(training, name, None) or getattr(capsule, name, None)
            or getattr(dense, name) for name in _OPERANDS}


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (bool, float)):
        return type(v).__name__, v   # 2.0 == 2 == True as dict keys: an option's type counts
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
    from .autotune.history import source_token
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
        config = workload.tuned_config(target)
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
            placeholders, result = Workload(name, spec, attrs).define("cuda")
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
    _REPEATS.last = f
    if out is None:
        from .nd import aligned_numpy
        out = aligned_numpy(shape, dtype)
    elif not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        got = (getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__))
        raise ValueError(f"{name}: out= must be a {dtype} array of shape {shape}, got {got}")
    f(*[a for a in args if isinstance(a, np.ndarray)], out)
    return out


_CALL_DOC = """
    Through ``td.ops``: the tensors are numpy arrays (or lists and numbers, converted as
    ``numpy.asarray`` does; ``td.nd`` CUDA arrays run on the GPU), and the result is a new
    array. Keywords of every operator:

    out : numpy.ndarray, optional
        Where to write the result (its shape and dtype); returned.
    target : str
        ``"llvm"`` (this CPU, default) or another target string of ``td.build``.
    check_indices : bool
        False: indices read from data (``take``) are trusted, not checked.
"""

_KEYWORDS = [inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None),
             inspect.Parameter("target", inspect.Parameter.KEYWORD_ONLY, default="llvm",
                               annotation=str),
             inspect.Parameter("check_indices", inspect.Parameter.KEYWORD_ONLY, default=True,
                               annotation=bool)]


def _operand(name: str, param: str, value, optional: bool):
    """A tensor argument as an array (a number stays one for the elementwise operators,
    None stays None for an optional tensor); refuses what numpy would not take."""
    from .nd import NDArray
    if isinstance(value, (np.ndarray, NDArray)):
        return value
    if value is None and optional:
        return None
    if isinstance(value, (bool, int, float, np.generic)) and name in _BINARY:
        return value
    if isinstance(value, (bool, int, float, list, tuple, np.generic)):
        try:
            array = np.asarray(value)
        except ValueError as e:   # a ragged list
            raise TypeError(f"{name}: argument {param!r} is not an array of numbers: {e}") \
                from None
        if array.dtype.kind in "biuf":
            return array
    raise TypeError(f"{name}: argument {param!r} must be a numpy.ndarray (or a list or "
                    f"a number), got {type(value).__name__}")


def _option(value):
    """An option as a plain, hashable value: numpy scalars and arrays become Python's,
    dtypes their names."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_option(v) for v in value)
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    return value


def _promote(name: str, a, b):
    """numpy's result type for an elementwise operator: arrays are converted to it (true
    division of integers gives float64), numbers stay Python numbers."""
    from .nd import NDArray
    if isinstance(a, NDArray) or isinstance(b, NDArray):
        return a, b    # device arrays: as they are
    if not isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
        a = np.asarray(a)  # two numbers: one becomes an array
    dtype = np.result_type(a, b, *([1.0] if name == "divide" else []))
    return tuple(v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype != dtype
                 else v.item() if isinstance(v, np.generic) else v for v in (a, b))


def _run(name: str, signature: inspect.Signature, args, kwargs):
    positional, options, out, target, check_indices = _bind(name, signature, args, kwargs)
    return call(name, *positional, out=out, target=target, check_indices=check_indices,
                **options)


def _bind(name: str, signature: inspect.Signature, args, kwargs):
    """``(tensors and positional values, options, out, target, check_indices)`` of a
    call, as ``call`` takes them."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:   # a missing or unknown argument, named
        raise TypeError(f"{name}(): {e}") from None
    given = dict(bound.arguments)
    out = given.pop("out", None)
    target = given.pop("target", "llvm")
    check_indices = given.pop("check_indices", True)
    params = list(signature.parameters.values())
    values = {}
    for p in params:
        if p.name not in given:
            continue
        if p.name in _OPERANDS[name]:
            value = _operand(name, p.name, given[p.name], p.default is None)
            if value is not None:
                values[p.name] = value
        else:
            values[p.name] = _option(given[p.name])
    if name in _BINARY:
        values["a"], values["b"] = _promote(name, values["a"], values["b"])
    # tensors positional (as the CLI and the records have them), options by keyword
    last = max(k for k, p in enumerate(params) if p.name in values and p.name in _OPERANDS[name])
    positional = [values.pop(p.name, p.default) for p in params[:last + 1]]
    return positional, values, out, target, check_indices


def tuned_config(operator: str, *args, **kwargs) -> dict | None:
    """The tuned configuration ``td.ops.<operator>(*args, **kwargs)`` compiles with: the
    best record in force (``apply_history_best``, the local database, the shipped
    records), or None where the template's defaults are used.

    >>> x = np.ones((1, 8, 6, 6), np.float32); w = np.ones((8, 8, 3, 3), np.float32)
    >>> td.ops.tuned_config("conv2d_nchw", x, w, stride=2, padding=1) is None   # no record
    True
    """
    workload, target = call_workload(operator, args, kwargs, "tuned_config")
    return workload.tuned_config(target)


def call_workload(operator: str, args, kwargs: dict, what: str):
    """``(workload, target)``: the workload ``td.ops.<operator>(*args, **kwargs)`` files
    its records under (the arrays' shapes and dtypes count, not their values); ``what``
    names the caller in errors."""
    from .autotune.workload import Workload
    if operator not in _operators():
        raise ValueError(f"{what}: operator must be a dense operator of td.ops "
                         f"({', '.join(sorted(_operators()))}), got {operator!r}")
    positional, options, _, target, _ = _bind(operator, _call_signature(operator), args,
                                              kwargs)
    positional = [np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a
                  for a in positional]
    return Workload.from_arrays(operator, positional, options), target


# ------------------------------------------------------------ repeated calls
# A model calls the same operators on arrays of the same shapes every step: the first
# call binds, checks, converts and compiles; a later one with the same shapes, dtypes
# and options only checks each array's layout and calls the kernel's entry point.


class _Repeats(threading.local):
    def __init__(self):
        self.calls: dict = {}   # key -> (cfunc, trailing, shape, dtype)
        self.last = None        # the kernel the last general call ran


_REPEATS = _Repeats()


def _repeat_key(name: str, args, kwargs):
    """What a call is, when only C-contiguous arrays and plain values are given (None:
    take the general path)."""
    spec = []
    for a in args:
        if type(a) is np.ndarray:
            spec.append((a.shape, a.dtype))
        elif a is None or type(a) in (bool, int, float, str):
            spec.append((type(a), a))
        else:
            return None
    options = ()
    if kwargs:
        if "out" in kwargs or any(type(v) is np.ndarray for v in kwargs.values()):
            return None
        # typed: 2 and 2.0 are equal keys, but a float stride is refused
        options = tuple(sorted((k, type(v), v) for k, v in kwargs.items()))
        try:
            hash(options)
        except TypeError:
            return None
    return name, tuple(spec), options, _source_token()()


@functools.cache
def _source_token():
    """``autotune.history.source_token`` (imported once: an import statement costs a
    repeated call's time)."""
    from .autotune.history import source_token
    return source_token


def _passes_through(name: str, args) -> bool:
    """Whether the general path hands the arrays to the kernel as they are (contiguous,
    already of the result type of an elementwise operator)."""
    arrays = [a for a in args if type(a) is np.ndarray]
    if not arrays or any(not a.flags.c_contiguous for a in arrays):
        return False
    if name in _BINARY:
        extra = [1.0] if name == "divide" else []
        want = np.result_type(*[a for a in args if a is not None], *extra)
        return all(a.dtype == want for a in arrays)
    return True


def _remember(key, args, result):
    """File the kernel the general path just ran for ``key`` (``call`` left it): its
    entry taking the arrays themselves (cheaper than their addresses)."""
    module, _REPEATS.last = _REPEATS.last, None
    arrays = sum(type(a) is np.ndarray for a in args) + 1          # and the result
    bound = module.bound_call(objects=(True,) * arrays) \
        if hasattr(module, "bound_call") else None
    if bound is not None and isinstance(result, np.ndarray):
        _REPEATS.calls[key] = (*bound, result.shape, result.dtype)


def _run_again(hit, args):
    """The kernel of a repeated call on these arrays; None if one is not contiguous or
    aligned (the general path says why)."""
    from .nd import aligned_numpy
    cfunc, trailing, shape, dtype = hit
    arrays = []
    for a in args:
        if type(a) is np.ndarray:
            flags = a.flags
            if not (flags.c_contiguous and flags.aligned):
                return None
            arrays.append(a)
    out = aligned_numpy(shape, dtype)
    if cfunc(*arrays, out, *trailing):
        raise MemoryError("td.ops: a temporary buffer could not be allocated")
    return out


@functools.cache
def _call_signature(name: str) -> inspect.Signature:
    """``td.ops.<name>``'s signature: the definition's parameters (its ``name`` aside)
    and the keywords of every call."""
    kernel = _operators()[name]
    params = [p for p in inspect.signature(kernel).parameters.values() if p.name != "name"]
    return inspect.Signature(params + _KEYWORDS)


@functools.cache
def _entry(name: str):
    kernel = _operators()[name]
    signature = _call_signature(name)

    def operator(*args, **kwargs):
        key = _repeat_key(name, args, kwargs)
        hit = _REPEATS.calls.get(key) if key is not None else None
        if hit is not None:
            result = _run_again(hit, args)
            if result is not None:
                return result
        _REPEATS.last = None
        result = _run(name, signature, args, kwargs)
        if key is not None and _passes_through(name, args):
            _remember(key, args, result)
        return result

    functools.update_wrapper(operator, kernel)
    operator.__signature__ = signature
    operator.__module__ = __name__
    operator.__qualname__ = name
    operator.__doc__ = (inspect.cleandoc(kernel.__doc__ or "") + "\n\n" +
                        inspect.cleandoc(_CALL_DOC))
    return operator


def __getattr__(name: str):
    from .ops_backward import entry, forward_name
    from .sparse import ops as sparse_ops
    if not name.startswith("__") and forward_name(name) is not None:
        operator = entry(name)   # the gradients: ops_backward.py
    elif name in sparse_ops.OPERATORS:
        operator = sparse_ops.entry(name)   # sparse operands: sparse/ops.py
    elif name.startswith("__") or name not in _operators():
        raise AttributeError(f"tensordsl.ops has no operator {name!r}")
    else:
        operator = _entry(name)
    globals()[name] = operator    # found once: later lookups skip this function
    return operator


def __dir__():
    from .sparse.ops import OPERATORS
    return sorted(list(_operators()) + [f"{name}_backward" for name in _operators()]
                  + list(OPERATORS))
