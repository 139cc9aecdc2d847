"""Random tensor programs with a numpy meaning, and random legal schedules for them.

A program is a chain of stages over one or two inputs: elementwise expressions (with
broadcasting of a lower-rank tensor), reductions over one axis, shifted reads (a
stencil, clamped at the edge), and transposes. Each stage is built twice: as a
tensordsl compute and as a numpy array, so the reference never shares code with the
compiler.
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


class Program:
    """Stages as (td tensor, numpy array) pairs; ``inputs`` are the placeholders."""

    def __init__(self):
        self.inputs, self.input_arrays = [], []
        self.stages = []  # list of (tensor, array)

    def add_input(self, shape, rng, symbolic_first: bool):
        name = f"X{len(self.inputs)}"
        sym_shape = list(shape)
        if symbolic_first:
            sym_shape[0] = td.var(f"n{len(self.inputs)}")
        t = td.placeholder(tuple(sym_shape), name=name)
        arr = rng.uniform(-1, 1, size=shape).astype("float32")
        self.inputs.append(t)
        self.input_arrays.append(arr)
        self.stages.append((t, arr))


@st.composite
def programs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    p = Program()
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 19), min_size=ndim, max_size=ndim)))
    p.add_input(shape, rng, symbolic_first=draw(st.booleans()) and ndim > 1)
    if draw(st.booleans()):
        p.add_input(shape, rng, symbolic_first=False)
    n_stages = draw(st.integers(1, 4))
    for k in range(n_stages):
        kind = draw(st.sampled_from(["elementwise", "elementwise", "reduce", "shift",
                                     "transpose", "broadcast"]))
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
            a = getattr(np, {"sum": "sum", "max": "max", "min": "min"}[reducer])(src_a, axis=axis)
        elif kind == "shift":
            axis = draw(st.integers(0, nd - 1))
            off = draw(st.integers(1, 3))
            last = src_t.shape[axis] - 1

            def f(*idx, src_t=src_t, axis=axis, off=off, last=last):
                shifted = list(idx)
                shifted[axis] = td.minimum(idx[axis] + off, last)
                return src_t[tuple(idx)] + src_t[tuple(shifted)]

            t = td.compute(src_t.shape, f, name=name)
            n_ax = src_a.shape[axis]
            take = np.minimum(np.arange(n_ax) + off, n_ax - 1)
            a = src_a + np.take(src_a, take, axis=axis)
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
