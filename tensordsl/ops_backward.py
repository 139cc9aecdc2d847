"""``td.ops.<name>_backward``: the gradients of every ``td.ops`` operator, derived by
``td.vjp`` from the operator's compute definition (nothing written by hand).

    gx, gw = td.ops.conv2d_nchw_backward(x, w, grad_out, stride=1, padding=1)
    ga, gb = td.ops.matmul_backward(a, b, grad_out)
    gx, gw, gb = td.ops.dense_backward(x, w, grad_out, bias=b)   # gb None without bias

``grad_out`` (the cotangent of the operator's result, its shape) follows the required
operands; optional operands (``dense``'s ``bias``) and the options come after it, by
keyword or position, as in the forward call. ``wrt=("weight",)`` asks for some gradients
only (the others are None and cost nothing): the tape of ``tensordsl.nn`` asks for those
of the operands that require one. The result has one gradient per tensor
operand, in the forward's order: an array of that operand's shape and dtype, or None for
an operand without one (integer indices, an integer tensor, a number, a bias left out).

Each gradient is its own kernel, the workload ``<name>_backward`` with the attribute
``wrt`` naming the operand (``tensordsl tune conv2d_nchw_backward --shape ... --attr
wrt=weight``): it is compiled once per (shapes, dtypes, attributes, target), scheduled
by the operator table (``tensordsl/autodiff/operators.py``: a derived matmul gets the
matmul template, a convolution's gradients the convolution templates, ...) and replaced
by the best tuned record when there is one, exactly as the forward operators are.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

SUFFIX = "_backward"


def forward_name(name: str) -> str | None:
    """``conv2d_nchw`` for ``conv2d_nchw_backward``; None for any other name."""
    from .ops import _operators
    if name.endswith(SUFFIX) and name[:-len(SUFFIX)] in _operators():
        return name[:-len(SUFFIX)]
    return None


def operand_names(forward: str) -> tuple[str, ...]:
    from .ops import _OPERANDS
    return _OPERANDS[forward]


def define(forward: str, args: list, attrs: dict):
    """(placeholders, gradient tensor) of the workload ``<forward>_backward``: ``args``
    are the forward's operands (``("array", shape, dtype)`` or ``("value", v)``) then
    the cotangent's; ``attrs["wrt"]`` names the operand differentiated."""
    import tensordsl as td
    from .autodiff.operators import prepare
    from .ops import _operators
    attrs = dict(attrs)
    wrt = attrs.pop("wrt", None)
    names = operand_names(forward)
    *operand_args, head_arg = args
    if wrt not in names[:len(operand_args)]:
        raise ValueError(f"{forward}{SUFFIX}: wrt must name one of its operands "
                         f"({', '.join(names[:len(operand_args)])}), got {wrt!r}")
    from .autotune.workload import operand_placeholders
    operands, placeholders = operand_placeholders(operand_args)
    x = operands[names.index(wrt)]
    if not hasattr(x, "op"):
        raise ValueError(f"{forward}{SUFFIX}: operand {wrt!r} is a number, not a tensor")
    out = _operators()[forward](*operands, **attrs)
    out_shape = tuple(int(d.value) for d in out.shape)
    if head_arg[0] != "array" or tuple(head_arg[1]) != out_shape:
        got = tuple(head_arg[1]) if head_arg[0] == "array" else head_arg[1]
        raise ValueError(f"{forward}{SUFFIX}: grad_out must have the result's shape "
                         f"{out_shape}, got {got}")
    head = td.placeholder(out_shape, dtype=out.dtype, name=f"in{len(operand_args)}")
    (adjoint,), _ = td.vjp(out, [x], head)
    return placeholders + [head], prepare(adjoint)


@functools.cache
def _kernel_params(forward: str) -> tuple:
    from .ops import _operators
    return tuple(p for p in inspect.signature(_operators()[forward]).parameters.values()
                 if p.name != "name")


def _has_gradient(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _run(name: str, signature: inspect.Signature, args, kwargs):
    from . import ops
    forward = name[:-len(SUFFIX)]
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{name}(): {e}") from None
    given = dict(bound.arguments)
    out = given.pop("out", None)
    target = given.pop("target", "llvm")
    check_indices = given.pop("check_indices", True)
    grad_out = given.pop("grad_out")
    wanted = given.pop("wrt", None)
    names = operand_names(forward)
    if wanted is not None:
        wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise ValueError(f"{name}: wrt must name operands of {forward} "
                             f"({', '.join(names)}), got {unknown[0]!r}")
    kernel_params = _kernel_params(forward)
    operands, options = {}, {}
    for p in kernel_params:
        if p.name not in given:
            continue
        if p.name in names:
            value = ops._operand(forward, p.name, given[p.name], p.default is None)
            if value is not None:
                operands[p.name] = value
        else:
            options[p.name] = ops._option(given[p.name])
    if forward in ops._BINARY:
        operands["a"], operands["b"] = ops._promote(forward, operands["a"], operands["b"])
    operands = {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v
                for k, v in operands.items()}
    differentiated = tuple(n for n in names if _has_gradient(operands.get(n))
                           and (wanted is None or n in wanted))
    # the forward's positional operands (up to the last one given), then the cotangent
    last = max(k for k, n in enumerate(names) if n in operands)
    positional = [operands.get(n) for n in names[:last + 1]]
    if any(v is None for v in positional):
        missing = names[positional.index(None)]
        raise TypeError(f"{name}(): operand {missing!r} is needed before the later ones")
    head = _cotangent(name, grad_out, positional, options)
    if out is not None:
        out = tuple(out)
        if len(out) != len(names):
            raise ValueError(f"{name}: out= must give one array (or None) per operand "
                             f"({', '.join(names)}), got {len(out)}")
    args = positional + [head]
    if any(ops._on_device(a) for a in args):
        return tuple(ops.call(name, *args, out=None if out is None else out[k], target=target,
                              check_indices=check_indices, wrt=param, **options)
                     if param in differentiated else None
                     for k, param in enumerate(names))
    plan = _plan(name, names, differentiated, args, options, target, check_indices)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    grads = [None] * len(names)
    for k, f, shape, dtype in plan:
        dest = None if out is None else out[k]
        if dest is None:
            from .nd import aligned_numpy
            dest = aligned_numpy(shape, dtype)
        elif not isinstance(dest, np.ndarray) or dest.shape != shape or dest.dtype != dtype:
            got = (getattr(dest, "shape", None), getattr(dest, "dtype", type(dest).__name__))
            raise ValueError(f"{name}: out[{k}] ({names[k]}) must be a {dtype} array of "
                             f"shape {shape}, got {got}")
        f(*arrays, dest)
        grads[k] = dest
    return tuple(grads)


_PLANS: dict = {}


def _plan(name, names, differentiated, args, options, target, check_indices) -> list:
    """``[(operand index, kernel, shape, dtype)]`` of the gradients of one call signature:
    the kernels of ``ops._compiled`` (compiled once, tuned records honoured), looked up
    once per signature, so a call costs its kernels and little more."""
    from . import ops
    from .autotune.history import source_token
    spec = ops._signature(name, args)
    key = (name, spec, ops._freeze(options), target, source_token(), check_indices,
           differentiated)
    plan = _PLANS.get(key)
    if plan is None:
        plan = [(k, *ops._compiled(name, args, spec, dict(options, wrt=param), target,
                                   check_indices))
                for k, param in enumerate(names) if param in differentiated]
        _PLANS[key] = plan
    return plan


def _cotangent(name: str, grad_out, operands, options) -> np.ndarray:
    """``grad_out`` as an array of the result's dtype (the operands' floating type, or
    ``out_dtype``), contiguous."""
    if not isinstance(grad_out, np.ndarray):
        grad_out = np.asarray(grad_out)
    if grad_out.dtype.kind not in "biuf":
        raise TypeError(f"{name}: grad_out must be an array of numbers, got {grad_out.dtype}")
    floats = [v for v in operands if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    dtype = np.dtype(options["out_dtype"]) if options.get("out_dtype") else \
        (np.result_type(*floats) if floats else grad_out.dtype)
    return np.ascontiguousarray(grad_out, dtype=dtype)


_DOC = """
    The gradients of ``{forward}`` (``td.ops.{forward}``) for the cotangent ``grad_out``
    of its result, derived by ``td.vjp`` from the compute definition (its docstring is
    below): one array per tensor operand ({operands}), None for one without a gradient
    (an integer tensor, a number, an optional operand left out). ``grad_out`` follows the
    required operands; options as in the forward call. Each gradient is the workload
    ``{forward}_backward`` with ``wrt=<operand>``: compiled once per shapes, dtypes and
    options, scheduled by the operator table, tuned with ``tensordsl tune
    {forward}_backward --shape ... --attr wrt=<operand>``.

    out : tuple, optional
        One array (or None: a new one) per operand, where its gradient is written.
    wrt : str or tuple of str, optional
        The operands whose gradients are wanted (default: every one that has one); the
        others are None and no kernel runs for them.
    target, check_indices
        As for the forward operator.

    {forward}:
"""


@functools.cache
def entry(name: str):
    """The function ``td.ops.<name>`` for a backward name."""
    from . import ops
    forward = name[:-len(SUFFIX)]
    kernel = ops._operators()[forward]
    names = operand_names(forward)
    params = [p for p in inspect.signature(kernel).parameters.values() if p.name != "name"]
    required = [p for p in params if p.name in names and p.default is inspect.Parameter.empty]
    rest = [p for p in params if p not in required]
    grad_out = inspect.Parameter("grad_out", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    wrt = inspect.Parameter("wrt", inspect.Parameter.KEYWORD_ONLY, default=None)
    signature = inspect.Signature(required + [grad_out] + rest + ops._KEYWORDS + [wrt])

    def backward(*args, **kwargs):
        return _run(name, signature, args, kwargs)

    backward.__name__ = backward.__qualname__ = name
    backward.__module__ = "tensordsl.ops"
    backward.__signature__ = signature
    backward.__doc__ = (inspect.cleandoc(_DOC.format(forward=forward,
                                                     operands=", ".join(names)))
                        + "\n\n" + inspect.cleandoc(kernel.__doc__ or ""))
    return backward
