"""Random tensor programs with a numpy meaning, and random legal schedules for them.

A program is a chain of stages over one or two inputs: elementwise expressions (with
broadcasting of a lower-rank tensor), reductions over one axis, shifted reads (a
stencil, clamped at the edge or guarded by ``if_then_else``), transposes, and gathers
through an index tensor (data-dependent reads). Extents may be 0 or 1, and a symbolic
extent may be bound to 0 at run time. ``int_programs`` draws integer programs: floor
division and modulo of negative values by constants of either sign, comparisons to bool
tensors, selects and casts. Each stage is built twice: as a tensordsl compute and as a
numpy array, so the reference never shares code with the compiler.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import tensordsl as td
from tensordsl.te.tensor import PlaceholderOp

UNARY = ["neg", "abs", "relu", "square"]
BINARY = ["add", "sub", "mul", "max", "min", "select_gt"]


def _apply_binary(op, a, b, lib):
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "max":
        return td.maximum(a, b) if lib == "td" else np.maximum(a, b)
    if op == "min":
        return td.minimum(a, b) if lib == "td" else np.minimum(a, b)
    if op == "select_gt":
        return td.select(a > b, a, b * 0.5) if lib == "td" else np.where(a > b, a, b * np.float32(0.5))
    raise AssertionError(op)


def _apply_unary(op, a, lib):
    if op == "neg":
        return -a
    if op == "abs":
        return td.abs(a) if lib == "td" else np.abs(a)
    if op == "relu":
        return td.maximum(a, 0.0) if lib == "td" else np.maximum(a, np.float32(0))
    if op == "square":
        return a * a
    raise AssertionError(op)


# extents: mostly ordinary, sometimes 1, now and then empty
EXTENTS = [0] + [1] * 2 + list(range(1, 20))


class Program:
    """Stages as (td tensor, numpy array) pairs; ``inputs`` are the placeholders."""

    def __init__(self, dtype="float32"):
        self.dtype = dtype
        self.inputs, self.input_arrays = [], []
        self.stages = []  # list of (tensor, array)

    def add_input(self, shape, rng, symbolic_first: bool):
        name = f"X{len(self.inputs)}"
        sym_shape = list(shape)
        if symbolic_first:
            sym_shape[0] = td.var(f"n{len(self.inputs)}")
        t = td.placeholder(tuple(sym_shape), dtype=self.dtype, name=name)
        if self.dtype == "float32":
            arr = rng.uniform(-1, 1, size=shape).astype("float32")
        else:
            arr = rng.integers(-50, 51, size=shape).astype(self.dtype)
        self.inputs.append(t)
        self.input_arrays.append(arr)
        self.stages.append((t, arr))

    def add_index_input(self, extent, values, rng):
        """An int32 tensor of ``len(values)`` indices in ``[0, values)``: only read as
        indices, never a stage of its own."""
        t = td.placeholder((extent,), dtype="int32", name=f"I{len(self.inputs)}")
        arr = rng.integers(0, max(values, 1), size=values).astype("int32")
        self.inputs.append(t)
        self.input_arrays.append(arr)
        return t, arr


@st.composite
def programs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    p = Program()
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.sampled_from(EXTENTS), min_size=ndim, max_size=ndim)))
    p.add_input(shape, rng, symbolic_first=draw(st.booleans()) and ndim > 1)
    if draw(st.booleans()):
        p.add_input(shape, rng, symbolic_first=False)
    n_stages = draw(st.integers(1, 4))
    for k in range(n_stages):
        kind = draw(st.sampled_from(["elementwise", "elementwise", "reduce", "shift",
                                     "transpose", "broadcast", "gather"]))
        src_t, src_a = p.stages[draw(st.integers(0, len(p.stages) - 1))]
        name = f"S{k}"
        nd = src_t.ndim
        if kind == "reduce" and nd >= 2:
            axis = draw(st.integers(0, nd - 1))
            reducer = draw(st.sampled_from(["sum", "max", "min"]))
            ext = src_a.shape[axis]
            r = td.reduce_axis((0, ext), f"r{k}")
            out_shape = tuple(d for i, d in enumerate(src_t.shape) if i != axis)

            def f(*idx, src_t=src_t, axis=axis, r=r, reducer=reducer):
                full = list(idx)
                full.insert(axis, r)
                return getattr(td, reducer)(src_t[tuple(full)], axis=r)

            t = td.compute(out_shape, f, name=name)
            a = _np_reduce(reducer, src_a, axis)
        elif kind == "shift":
            axis = draw(st.integers(0, nd - 1))
            off = draw(st.sampled_from([-3, -2, -1, 1, 2, 3]))
            t, a = _shift(src_t, src_a, axis, off, draw(st.booleans()), name)
        elif kind == "gather":
            axis = draw(st.integers(0, nd - 1))
            idx_t, idx_a = p.add_index_input(src_t.shape[axis], src_a.shape[axis], rng)

            def f(*idx, src_t=src_t, axis=axis, idx_t=idx_t):
                picked = list(idx)
                picked[axis] = idx_t[idx[axis]]
                return src_t[tuple(picked)]

            t = td.compute(src_t.shape, f, name=name)
            a = np.take(src_a, idx_a, axis=axis)
        elif kind == "transpose" and nd >= 2:
            perm = list(range(nd))[::-1]
            t = td.compute(tuple(src_t.shape[i] for i in perm),
                           lambda *idx, src_t=src_t, perm=perm: src_t[tuple(
                               idx[perm.index(d)] for d in range(len(perm)))] * 1.5,
                           name=name)
            a = np.transpose(src_a, perm) * np.float32(1.5)
        elif kind == "broadcast" and nd >= 2:
            # combine with a reduction of the same tensor over its last axis
            r = td.reduce_axis((0, src_a.shape[-1]), f"b{k}")
            red = td.compute(src_t.shape[:-1], lambda *idx, src_t=src_t, r=r: td.sum(
                src_t[tuple(idx) + (r,)], axis=r), name=f"{name}red")
            t = td.compute(src_t.shape, lambda *idx, src_t=src_t, red=red: src_t[idx] - red[idx[:-1]],
                           name=name)
            a = src_a - src_a.sum(axis=-1, keepdims=True)
            p.stages.append((red, src_a.sum(axis=-1)))
        else:
            same = [(tt, aa) for tt, aa in p.stages if aa.shape == src_a.shape]
            other_t, other_a = same[draw(st.integers(0, len(same) - 1))]
            op = draw(st.sampled_from(BINARY))
            t_expr = lambda *idx, src_t=src_t, other_t=other_t, op=op: _apply_binary(
                op, src_t[idx], other_t[idx], "td")
            a = _apply_binary(op, src_a, other_a, "np")
            if draw(st.booleans()):
                u = draw(st.sampled_from(UNARY))
                t_expr = lambda *idx, g=t_expr, u=u: _apply_unary(u, g(*idx), "td")
                a = _apply_unary(u, a, "np")
            t = td.compute(src_t.shape, t_expr, name=name)
        p.stages.append((t, a.astype("float32")))
    return p


def _np_reduce(reducer, a, axis):
    # an empty axis reduces to the identity, as the compiled reduction stores it
    if reducer == "sum":
        return a.sum(axis=axis, dtype=a.dtype)
    info = np.finfo(a.dtype) if a.dtype.kind == "f" else np.iinfo(a.dtype)
    if reducer == "max":
        return a.max(axis=axis, initial=-np.inf if a.dtype.kind == "f" else info.min)
    return a.min(axis=axis, initial=np.inf if a.dtype.kind == "f" else info.max)


def _shift(src_t, src_a, axis, off, clamp, name):
    """``src + src shifted by off`` along ``axis``: clamped at the edge, or guarded by
    ``if_then_else`` (zero outside)."""
    extent = src_t.shape[axis]

    def f(*idx):
        shifted = list(idx)
        j = idx[axis] + off
        if clamp:
            shifted[axis] = td.maximum(td.minimum(j, extent - 1), 0)
            return src_t[tuple(idx)] + src_t[tuple(shifted)]
        shifted[axis] = j
        inside = j < extent if off > 0 else j >= 0
        zero = td.const(0, src_t.dtype)
        return src_t[tuple(idx)] + td.if_then_else(inside, src_t[tuple(shifted)], zero)

    t = td.compute(src_t.shape, f, name=name)
    n_ax = src_a.shape[axis]
    j = np.arange(n_ax) + off
    if clamp:
        other = np.take(src_a, np.clip(j, 0, max(n_ax - 1, 0)), axis=axis) if n_ax else src_a
    else:
        inside = (j >= 0) & (j < n_ax)
        other = np.take(src_a, np.where(inside, j, 0), axis=axis) if n_ax else src_a
        mask = inside.reshape([-1 if d == axis else 1 for d in range(src_a.ndim)])
        other = np.where(mask, other, 0).astype(src_a.dtype)
    return t, (src_a + other).astype(src_a.dtype)


INT_BINARY = ["add", "sub", "mul_mod", "max", "min", "select_lt"]


@st.composite
def int_programs(draw):
    """Integer chains: floor division and modulo by constants of either sign (on negative
    values too), comparisons to bool tensors, selects and casts."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    p = Program(draw(st.sampled_from(["int32", "int64"])))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.sampled_from(EXTENTS), min_size=ndim, max_size=ndim)))
    p.add_input(shape, rng, symbolic_first=draw(st.booleans()) and ndim > 1)
    p.add_input(shape, rng, symbolic_first=False)
    for k in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["divmod", "binary", "bool", "reduce", "shift"]))
        src_t, src_a = p.stages[draw(st.integers(0, len(p.stages) - 1))]
        name = f"S{k}"
        same = [(tt, aa) for tt, aa in p.stages if aa.shape == src_a.shape]
        other_t, other_a = same[draw(st.integers(0, len(same) - 1))]
        if kind == "divmod":
            c = draw(st.sampled_from([-7, -4, -3, -2, -1, 1, 2, 3, 5, 8]))
            which = draw(st.sampled_from(["div", "mod", "both"]))
            t = td.compute(src_t.shape, lambda *i, c=c, which=which, src_t=src_t: (
                src_t[i] // c if which == "div" else src_t[i] % c if which == "mod"
                else src_t[i] // c + src_t[i] % c), name=name)
            a = src_a // c if which == "div" else src_a % c if which == "mod" \
                else src_a // c + src_a % c
        elif kind == "binary":
            op = draw(st.sampled_from(INT_BINARY))
            t = td.compute(src_t.shape, lambda *i, op=op, x=src_t, y=other_t: _int_binary(
                op, x[i], y[i], "td"), name=name)
            a = _int_binary(op, src_a, other_a, "np")
        elif kind == "bool":
            # a bool tensor, then back to integers through a select and a cast
            cmp_t = td.compute(src_t.shape, lambda *i, x=src_t, y=other_t: x[i] < y[i],
                               name=f"{name}cmp")
            t = td.compute(src_t.shape, lambda *i, b=cmp_t, x=src_t: td.select(
                b[i], x[i], -x[i]) + b[i].astype(x.dtype), name=name)
            cmp_a = src_a < other_a  # (not a stage to draw from: integers only)
            a = np.where(cmp_a, src_a, -src_a) + cmp_a.astype(src_a.dtype)
        elif kind == "reduce" and src_t.ndim >= 2:
            axis = draw(st.integers(0, src_t.ndim - 1))
            reducer = draw(st.sampled_from(["sum", "max", "min"]))
            r = td.reduce_axis((0, src_a.shape[axis]), f"r{k}")

            def f(*idx, x=src_t, axis=axis, r=r, reducer=reducer):
                full = list(idx)
                full.insert(axis, r)
                return getattr(td, reducer)(x[tuple(full)] % 101, axis=r)

            t = td.compute(tuple(d for i, d in enumerate(src_t.shape) if i != axis), f,
                           name=name)
            a = _np_reduce(reducer, src_a % 101, axis)
        else:
            axis = draw(st.integers(0, src_t.ndim - 1))
            off = draw(st.sampled_from([-2, -1, 1, 2]))
            t, a = _shift(src_t, src_a, axis, off, draw(st.booleans()), name)
        p.stages.append((t, np.asarray(a).astype(p.dtype)))
    return p


def _int_binary(op, a, b, lib):
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul_mod":  # bounded, so chains never overflow
        return (a * b) % 1009
    if op == "max":
        return td.maximum(a, b) if lib == "td" else np.maximum(a, b)
    if op == "min":
        return td.minimum(a, b) if lib == "td" else np.minimum(a, b)
    if op == "select_lt":
        return td.select(a < b, a - b, b // 2) if lib == "td" else np.where(a < b, a - b, b // 2)
    raise AssertionError(op)


@st.composite
def schedules(draw, program: Program):
    """A random legal schedule of ``program``'s last stage and everything it reads."""
    out_t = program.stages[-1][0]
    s = td.create_schedule(out_t.op)
    _rewrite_graph(draw, s, program)
    computed = [st_ for st_ in reversed(s.stages) if not isinstance(st_.op, PlaceholderOp)]
    for stage in computed:  # consumers first, so attachment targets are final
        if not stage.is_output:
            readers = _real_consumers(s, stage)
            choice = draw(st.sampled_from(["root", "inline", "at"]))
            if choice == "inline" and not stage.op.reduce_axis:
                stage.compute_inline()
                continue
            if choice == "at" and len(readers) == 1:
                parent = readers[0]
                ax = parent.leaf_iter_vars[draw(st.integers(0, len(parent.leaf_iter_vars) - 1))]
                stage.compute_at(parent, ax)
        _transform_loops(draw, stage)
    return s


def _rewrite_graph(draw, s, program):
    """rfactor some reductions, cache some writes and reads (new stages to schedule)."""
    for stage in list(s.stages):
        op = stage.op
        if isinstance(op, PlaceholderOp):
            readers = [r for r in s.stages if not isinstance(r.op, PlaceholderOp)
                       and any(s[t] is stage for t in r.op.input_tensors)]
            choice = draw(st.integers(0, 5))
            if readers and choice == 0:
                s.cache_read(op.output(0), "local", readers[:1])
            elif readers and choice == 1:
                s.pack(op.output(0), draw(st.integers(0, len(op.shape) - 1)),
                       draw(st.integers(1, 8)), readers)
            continue
        if op.reduce_axis and draw(st.integers(0, 3)) == 0:
            k = op.reduce_axis[draw(st.integers(0, len(op.reduce_axis) - 1))]
            ko, ki = stage.split(k, factor=draw(st.integers(1, 6)))
            s.rfactor(op.output(0), draw(st.sampled_from([ko, ki])),
                      factor_axis=draw(st.integers(0, len(op.axis))))
        elif stage.is_output and draw(st.integers(0, 3)) == 0:
            s.cache_write(op.output(0), "global")


def _real_consumers(s, stage):
    out = []
    for other in s.stages:
        if other is stage or other.attach_type == "inline" or not hasattr(other.op, "body"):
            continue
        if s.consumes(other, stage):
            out.append(other)
    return out


def _transform_loops(draw, stage):
    shifted = []  # outer axes of shift_inwards splits: not to be split or fused again
    for _ in range(draw(st.integers(0, 3))):
        leaves = stage.leaf_iter_vars
        action = draw(st.sampled_from(["split", "split", "fuse", "reorder"]))
        if action == "split":
            iv = leaves[draw(st.integers(0, len(leaves) - 1))]
            if any(iv is x for x in shifted):
                continue
            ext = iv.dom.extent
            factor = draw(st.integers(1, 9))
            shiftable = (not stage.op.reduce_axis and iv.kind == "data_par"
                         and isinstance(ext, td.ir.nodes.IntImm) and ext.value >= factor)
            if shiftable and draw(st.integers(0, 3)) == 0:
                shifted.append(stage.split(iv, factor=factor, tail="shift_inwards")[0])
            elif draw(st.booleans()):
                stage.split(iv, factor=factor)
            else:
                stage.split(iv, nparts=draw(st.integers(1, 5)))
        elif action == "fuse" and len(leaves) >= 2:
            p = draw(st.integers(0, len(leaves) - 2))
            if leaves[p].kind == leaves[p + 1].kind and not any(
                    leaves[q] is x for q in (p, p + 1) for x in shifted):
                stage.fuse(leaves[p], leaves[p + 1])
        elif action == "reorder" and len(leaves) >= 2:
            perm = draw(st.permutations(list(range(len(leaves)))))
            stage.reorder(*[leaves[i] for i in perm])
    leaves = stage.leaf_iter_vars
    inner, outer = leaves[-1], leaves[0]
    if inner.kind == "data_par" and draw(st.booleans()):
        stage.vectorize(inner)
    if outer.kind == "data_par" and outer is not inner and draw(st.booleans()):
        stage.parallel(outer)
    if draw(st.integers(0, 3)) == 0:
        stage.pragma(outer, "nontemporal")  # streaming stores must not change a value
    if len(leaves) >= 3 and draw(st.booleans()):
        mid = leaves[draw(st.integers(1, len(leaves) - 2))]
        if mid not in stage.loop_kind:
            stage.unroll(mid)
