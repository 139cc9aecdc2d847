"""The public tensor-expression API: placeholders, computes, axes and reductions."""
from __future__ import annotations

import inspect
import itertools

from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.op import const, convert, match_types, max_value, min_value
from ..ir.visitor import Visitor
from .tensor import ComputeOp, ExternOp, PlaceholderOp, ScanOp, Tensor

_fresh = itertools.count()


def var(name: str = "n", dtype: str = "int64") -> n.Var:
    """A symbolic value (for example an extent bound from an argument's shape)."""
    dtype = dt.normalize(dtype)
    if not dt.is_int(dtype):
        raise TypeError(f"var {name!r}: dtype must be an integer type, got {dtype}")
    return n.Var(name, "int64")


def integral(value):
    """``value``, or the int it equals if it is an integral float: TVM's tutorials write
    sizes as ``N / bn`` (a float in Python 3), which TVM accepts."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _shape(shape, what: str) -> tuple[n.Expr, ...]:
    if isinstance(shape, (int, float, n.Expr)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{what}: shape must be a tuple of ints or td.var, got {shape!r}")
    out = []
    for d in map(integral, shape):
        if isinstance(d, bool) or not isinstance(d, (int, n.Expr)):
            raise TypeError(f"{what}: shape entries must be ints or expressions, got {d!r}")
        e = convert(d)
        if not dt.is_int(e.dtype):
            raise TypeError(f"{what}: shape entries must be integers, got {e.dtype}")
        if isinstance(e, n.IntImm) and e.value < 0:
            raise ValueError(f"{what}: shape entries must be >= 0, got {e.value}")
        out.append(e if e.dtype == "int64" else n.Cast("int64", e))
    return tuple(out)


def placeholder(shape, dtype: str = "float32", name: str = "placeholder") -> Tensor:
    """An input tensor: ``A = td.placeholder((n, 64), dtype="float32", name="A")``."""
    return PlaceholderOp(name, _shape(shape, f"placeholder {name!r}"),
                         dt.normalize(dtype)).output(0)


def reduce_axis(dom, name: str = "rv") -> n.IterVar:
    """A reduction axis over ``dom = (lo, hi)``: ``k = td.reduce_axis((0, 64), "k")``."""
    if not (isinstance(dom, (tuple, list)) and len(dom) == 2):
        raise TypeError(f"reduce_axis {name!r}: dom must be (lo, hi), got {dom!r}")
    lo, hi = convert(integral(dom[0])), convert(integral(dom[1]))
    from ..arith.simplify import simplify_expr
    return n.IterVar(n.Var(name), n.Range(lo, simplify_expr(hi - lo)), "reduce")


def thread_axis(dom=None, tag: str = "", name: str = "") -> n.IterVar:
    """A GPU index to ``bind`` a loop to: ``td.thread_axis("threadIdx.x")``, or TVM's
    ``td.thread_axis((0, 8), "threadIdx.x", name="tx")`` with the extent stated (a loop
    bound to it may be no longer; lowering checks)."""
    if isinstance(dom, str):
        tag, dom = dom, None
    if isinstance(dom, (tuple, list)):
        dom = tuple(map(integral, dom))
    valid = {f"{a}.{c}" for a in ("blockIdx", "threadIdx", "vthread") for c in "xyz"}
    if tag not in valid and tag != "vthread":
        raise ValueError(f"thread_axis: tag must be one of {sorted(valid)}, got {tag!r}")
    if dom is None:
        extent = n.Var(tag + ".extent")
    elif isinstance(dom, (tuple, list)) and len(dom) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in dom) and dom[0] == 0:
        extent = const(dom[1] - dom[0])
    else:
        raise TypeError(f"thread_axis {tag!r}: dom must be (0, extent) with int bounds, "
                        f"got {dom!r}")
    return n.IterVar(n.Var(name or tag), n.Range(const(0), extent), tag)


def compute(shape, fcompute, name: str = "compute", tag: str = ""):
    """``T[i, ...] = fcompute(i, ...)``. Returns a Tensor, or a list of Tensors when
    ``fcompute`` returns a tuple (one operation with several outputs)."""
    shape = _shape(shape, f"compute {name!r}")
    params = inspect.signature(fcompute).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in positional and p.default is p.empty]
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        names += [f"i{k}" for k in range(len(names), len(shape))]
    if len(names) != len(shape):
        raise ValueError(f"compute {name!r}: fcompute takes {len(names)} index arguments "
                         f"but the shape has {len(shape)} dimensions")
    axis = tuple(n.IterVar(n.Var(nm), n.Range(const(0), d)) for nm, d in zip(names, shape))
    result = fcompute(*[iv.var for iv in axis])
    bodies = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    bodies = tuple(convert(b) for b in bodies)
    _check_bodies(name, bodies)
    op = ComputeOp(name, axis, bodies, tag)
    outs = op.outputs
    return list(outs) if isinstance(result, (tuple, list)) else outs[0]


def scan(init, update, state_placeholder, inputs=None, name: str = "scan",
         tag: str = ""):
    """A recurrence over the first axis (TVM ``te.scan``): the result's first rows are
    ``init``, then row ``t`` is row ``t`` of ``update``, which reads the result so far
    through ``state_placeholder``. Lists of each give several states (a list back).

    >>> X = td.placeholder((m, n), name="X")
    >>> s_state = td.placeholder((m, n))
    >>> s_init = td.compute((1, n), lambda _, i: X[0, i])
    >>> s_update = td.compute((m, n), lambda t, i: s_state[t - 1, i] + X[t, i])
    >>> s_scan = td.scan(s_init, s_update, s_state, inputs=[X])     # cumulative sum
    """
    as_list = isinstance(init, (list, tuple))
    init, update, state = ([x] if isinstance(x, Tensor) else list(x)
                           for x in (init, update, state_placeholder))
    if not (len(init) == len(update) == len(state)) or not init:
        raise ValueError(f"scan {name!r}: init, update and state_placeholder must have "
                         f"as many tensors each, got {len(init)}, {len(update)}, "
                         f"{len(state)}")
    for k, (i, u, st) in enumerate(zip(init, update, state)):
        if not all(isinstance(x, Tensor) for x in (i, u, st)):
            raise TypeError(f"scan {name!r}: expected tensors for state {k}")
        if not isinstance(st.op, PlaceholderOp):
            raise TypeError(f"scan {name!r}: state_placeholder {k} must be td.placeholder")
        if not (i.ndim == u.ndim == st.ndim) or u.dtype != st.dtype or i.dtype != u.dtype:
            raise ValueError(f"scan {name!r}: state {k}: init {i}, update {u} and state "
                             f"{st} must have the same rank and dtype")
        if repr(u.shape) != repr(st.shape) or repr(i.shape[1:]) != repr(u.shape[1:]):
            raise ValueError(f"scan {name!r}: state {k}: update and state_placeholder "
                             "must have one shape, and init the same but for its rows")
    init_len, steps = init[0].shape[0], update[0].shape[0]
    from ..arith.simplify import simplify_expr
    axis = n.IterVar(n.Var(f"{name}.idx"), n.Range(const(0), simplify_expr(steps - init_len)))
    op = ScanOp(name, axis, init, update, state, inputs or (), tag)
    return list(op.outputs) if as_list else op.output(0)


def extern(shape, inputs, fcompute, name: str = "extern", dtype=None, tag: str = ""):
    """Tensors computed by code the caller writes (TVM ``te.extern``): ``fcompute(ins,
    outs)`` gets the input and output tensors and returns either the statement that
    fills the outputs, built with ``td.ir_builder`` (compiled with the rest), or the
    call that does, ``td.call_packed(name, ...)`` of a function registered with
    ``td.register_func``. ``shape`` may be a list of shapes (then a list back).

    >>> @td.register_func("my_add_one")
    ... def my_add_one(x, y):          # numpy views of the buffers
    ...     y[...] = x + 1
    >>> B = td.extern(A.shape, [A], lambda ins, outs: td.call_packed(
    ...     "my_add_one", ins[0], outs[0]), name="B")

    The stage is computed at root; the call runs once, after its inputs, before the
    stages that read its outputs (which may be scheduled as usual).
    """
    several = isinstance(shape, (list, tuple)) and shape and isinstance(
        shape[0], (list, tuple))
    shapes = [_shape(sh, f"extern {name!r}") for sh in (shape if several else [shape])]
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not all(isinstance(t, Tensor) for t in inputs):
        raise TypeError(f"extern {name!r}: inputs must be tensors, got {inputs!r}")
    if dtype is None:
        dtype = inputs[0].dtype if inputs else "float32"
    dtypes = list(dtype) if isinstance(dtype, (list, tuple)) else [dtype] * len(shapes)
    op = ExternOp(name, shapes, [dt.normalize(d) for d in dtypes], inputs, tag)
    call = fcompute(list(inputs), list(op.outputs))
    if isinstance(call, n.Call) and call.name == "call_extern":
        call = n.Evaluate(call)     # a C function filling the outputs
    if isinstance(call, n.Stmt):
        op.body = call
    elif isinstance(call, n.Call) and call.name == "call_packed":
        op.call = call
    else:
        raise TypeError(f"extern {name!r}: fcompute must return td.call_packed(...) or "
                        f"the statement of a td.ir_builder, got {call!r}")
    return list(op.outputs) if several else op.output(0)


def call_packed(name: str, *args) -> n.Call:
    """A call of the function registered as ``name`` (``td.register_func``) on tensors
    (it receives numpy views of their buffers, in place) and integers (TVM
    ``tir.call_packed``). Only inside ``td.extern``'s ``fcompute``."""
    if not isinstance(name, str):
        raise TypeError(f"call_packed: the name must be a string, got {name!r}")
    parts, values, sizes = [], [], []
    for k, a in enumerate(args):
        if isinstance(a, Tensor):
            parts.append(f"{a.dtype}:{a.ndim}")
            values.append(n.TensorRead(a, tuple(const(0) for _ in range(a.ndim))))
            sizes.extend(a.shape)
        elif isinstance(a, (bool, int)) or (isinstance(a, n.Expr) and dt.is_int(a.dtype)):
            parts.append("int64")
            sizes.append(_as_dtype(convert(int(a) if isinstance(a, bool) else a), "int64"))
        else:
            raise TypeError(f"call_packed {name!r}: argument {k} must be a tensor or an "
                            f"integer, got {a!r}")
    return n.Call("int32", "call_packed",
                  (n.StringImm(name), n.StringImm(";".join(parts)), *values, *sizes))


def call_extern(dtype: str, func_name: str, *args) -> n.Call:
    """A call of the C function ``func_name`` returning ``dtype`` (TVM
    ``tir.call_extern``): in a declared tensor intrinsic's body
    (``td.decl_tensor_intrin``), or as the whole of a ``td.extern``. Arguments:
    addresses (``view.access_ptr("r")``; a tensor passes its first element's), integer
    expressions, Python ints (as int32) and floats (as float32). The CPU backend links
    the function from LLVM IR given to ``s[T].pragma(axis, "import_llvm", code)``, or
    finds it in a library the process has loaded (``ctypes.CDLL(path,
    mode=ctypes.RTLD_GLOBAL)``); a function found in neither is a ``BuildError``. On
    the GPU, ``func_name`` is a device function CUDA has (``"__expf"``)."""
    if not isinstance(func_name, str) or not func_name.isidentifier():
        raise TypeError(f"call_extern: func_name must be a C identifier, got {func_name!r}")
    values = []
    for k, a in enumerate(args):
        if isinstance(a, Tensor):
            first = n.TensorRead(a, tuple(const(0) for _ in range(a.ndim)))
            values.append(n.Call("handle", "tensor_address", (first, const(0))))
        elif isinstance(a, bool):
            values.append(n.IntImm("int32", int(a)))
        elif isinstance(a, int):
            values.append(n.IntImm("int32", a) if -2**31 <= a < 2**31 else const(a))
        elif isinstance(a, float):
            values.append(n.FloatImm("float32", a))
        elif isinstance(a, n.Expr) and not isinstance(a, n.StringImm):
            values.append(a)
        else:
            raise TypeError(f"call_extern {func_name!r}: argument {k} must be an address "
                            f"(access_ptr), a tensor, a number or an expression, got {a!r}")
    return n.Call(dt.normalize(dtype), "call_extern", (n.StringImm(func_name), *values))


def call_pure_extern(dtype: str, func_name: str, *args) -> n.Call:
    """``td.call_extern`` of a function without side effects (TVM
    ``tir.call_pure_extern``): ``td.call_pure_extern("float32", "__expf", A[i])`` on the
    GPU, ``"expf"`` on the CPU. The IR does not tell them apart."""
    return call_extern(dtype, func_name, *args)


class _NestedReduce(Visitor):
    def visit_Reduce(self, node):
        raise ValueError("a reduction (td.sum/max/min) must be the whole body of a compute: "
                         "compute the reduction into its own tensor, then use it")


def _check_bodies(name: str, bodies):
    reduces = [b for b in bodies if isinstance(b, n.Reduce)]
    for b in bodies:
        if isinstance(b, n.Reduce):
            for s in b.source:
                _NestedReduce().visit(s)
        else:
            _NestedReduce().visit(b)
    if reduces and len(reduces) != len(bodies):
        raise ValueError(f"compute {name!r}: either every output is a reduction or none is")
    if reduces:
        first = reduces[0]
        for r in reduces[1:]:
            if r.combiner is not first.combiner or r.axis != first.axis:
                raise ValueError(f"compute {name!r}: outputs must come from one reduction "
                                 "(one comm_reducer call)")
    for b in bodies:
        if dt.lanes(b.dtype) != 1:
            raise TypeError(f"compute {name!r}: a body must be a scalar expression")


# ---------------------------------------------------------------- reductions


class CommReducerFactory:
    """A reduction function built by ``comm_reducer``: call it as ``r(expr, axis=k)``;
    ``r(a, b)`` on two expressions combines them (TVM's ``td.max(a, b)``)."""

    def __init__(self, fcombine, fidentity, name: str):
        self.fcombine, self.fidentity, self.name = fcombine, fidentity, name

    def __call__(self, expr, axis, where=None):
        if not isinstance(axis, (n.IterVar, tuple, list)) and where is None:
            # TVM's form ``td.max(a, b)``: combine two expressions directly
            return convert(self.fcombine(*match_types(expr, axis)))
        exprs = tuple(expr) if isinstance(expr, (tuple, list)) else (expr,)
        exprs = tuple(convert(e) for e in exprs)
        axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        for a in axes:
            if not isinstance(a, n.IterVar) or a.kind != "reduce":
                raise TypeError(f"{self.name}: axis must be td.reduce_axis, got {a!r}")
        dtypes = [e.dtype for e in exprs]
        lhs = tuple(n.Var(f"x{k}", d) for k, d in enumerate(dtypes))
        rhs = tuple(n.Var(f"y{k}", d) for k, d in enumerate(dtypes))
        args = (lhs, rhs) if len(exprs) > 1 else (lhs[0], rhs[0])
        result = self.fcombine(*args)
        result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        identity = self.fidentity(*dtypes)
        identity = tuple(identity) if isinstance(identity, (tuple, list)) else (identity,)
        result = tuple(_as_dtype(convert(r), d) for r, d in zip(result, dtypes))
        identity = tuple(_as_dtype(convert(i), d) for i, d in zip(identity, dtypes))
        combiner = n.CommReducer(lhs, rhs, result, identity, self.name)
        cond = const(True) if where is None else convert(where)
        out = tuple(n.Reduce(combiner, exprs, axes, cond, k) for k in range(len(exprs)))
        return out if len(exprs) > 1 else out[0]


def _as_dtype(e: n.Expr, dtype: str) -> n.Expr:
    from ..ir.op import cast
    return e if e.dtype == dtype else cast(dtype, e)


def comm_reducer(fcombine, fidentity, name: str = "comm_reducer") -> CommReducerFactory:
    """A user-defined commutative reduction. ``fcombine(x, y)`` combines two partial
    results (tuples for tuple-valued reductions, e.g. argmax); ``fidentity(*dtypes)``
    gives the identity."""
    return CommReducerFactory(fcombine, fidentity, name)


sum = comm_reducer(lambda x, y: x + y, lambda d: const(0, d), name="sum")  # noqa: A001
max = comm_reducer(lambda x, y: n.Max(*match_types(x, y)), min_value, name="max")  # noqa: A001
min = comm_reducer(lambda x, y: n.Min(*match_types(x, y)), max_value, name="min")  # noqa: A001
