"""Schedule primitives that change the dataflow graph: cache_read, cache_write, rfactor.

Each creates a new operation and stage; readers are rewritten to read the new tensor.
Old ``Tensor`` handles stay valid: ``s[T]`` finds the stage that now computes ``T``.
"""
from __future__ import annotations

from ..arith.simplify import Simplifier
from ..errors import ScheduleError
from ..ir import nodes as n
from ..ir.op import const, if_then_else
from ..ir.visitor import Mutator, free_vars, substitute
from ..te.tensor import ComputeOp, PlaceholderOp, Tensor
from .relations import leaf_extents, root_values
from .schedule import Schedule, Stage
from .trace import Step

_SCOPES = ("global", "shared", "local", "wmma.accumulator")


class _RedirectReads(Mutator):
    """Reads of ``source``'s tensors become ``redirect(tensor, indices)``."""

    def __init__(self, schedule: Schedule, source: Stage, redirect):
        self.s, self.source, self.redirect = schedule, source, redirect
        self.replaced = False

    def visit_TensorRead(self, node):
        indices = tuple(self.visit(i) for i in node.indices)
        if self.s[node.tensor] is self.source:
            self.replaced = True
            return self.redirect(node.tensor, indices)
        if all(a is b for a, b in zip(indices, node.indices)):
            return node
        return n.TensorRead(node.tensor, indices)


def _redirect_readers(s: Schedule, source: Stage, readers, redirect, new_stage: Stage,
                      what: str) -> list[Stage]:
    """Rewrite each reader's body through ``redirect`` and insert ``new_stage`` before the
    first of them; returns the reader stages."""
    readers = readers if isinstance(readers, (list, tuple)) else [readers]
    if not readers:
        raise ScheduleError(f"{what}: give at least one reader")
    reader_stages = []
    for r in readers:
        rs = s[r]
        if not isinstance(rs.op, ComputeOp):
            raise ScheduleError(f"{what}: reader {rs.name!r} is not a computed stage")
        m = _RedirectReads(s, source, redirect)
        body = tuple(m.visit(b) for b in rs.op.body)
        if not m.replaced:
            raise ScheduleError(f"{what}: stage {rs.name!r} does not read {source.name!r}")
        new_op = ComputeOp(rs.op.name, rs.op.axis, body, rs.op.tag)
        rs.op = new_op
        s.stage_map[new_op] = rs
        reader_stages.append(rs)
    s.insert_stage(new_stage, before=min(reader_stages, key=s.stages.index))
    return reader_stages


def _check_scope(scope: str, what: str):
    if scope not in _SCOPES:
        raise ScheduleError(f"{what}: scope must be one of {_SCOPES}, got {scope!r}")


def _copy_op(name: str, tensors, axis=None, index=None) -> ComputeOp:
    """``name[i...] = tensors[k][i...]`` for each k, over fresh (or given) axes; with
    ``index``, ``tensors[k][index]`` (a permutation of the axes' variables)."""
    shape = tensors[0].shape
    if axis is None:
        axis = tuple(n.IterVar(n.Var(f"ax{d}"), n.Range(const(0), e)) for d, e in enumerate(shape))
    idx = tuple(iv.var for iv in axis) if index is None else tuple(index)
    return ComputeOp(name, axis, tuple(n.TensorRead(t, idx) for t in tensors))


def cache_read(s: Schedule, tensor: Tensor, scope: str, readers) -> Tensor:
    """A copy of ``tensor`` in ``scope`` that ``readers`` read instead (TVM ``cache_read``).
    Schedule the copy like any stage, typically ``compute_at`` a reader's loop to pack
    a tile."""
    _check_scope(scope, "cache_read")
    source = s[tensor]
    cache_op = _copy_op(f"{tensor.name}.{scope}", [s.canonical(tensor)])
    cache = Stage(cache_op, s)
    cache.scope = scope
    reader_stages = _redirect_readers(
        s, source, readers, lambda t, idx: n.TensorRead(cache_op.output(t.value_index), idx),
        cache, f"cache_read of {tensor.name!r}")
    s.trace.append(Step("cache_read", source.name, {
        "tensor": tensor.name, "scope": scope, "readers": [r.name for r in reader_stages]}))
    return cache_op.output(0)


def cache_write(s: Schedule, tensor, scope: str, layout=None):
    """Compute ``tensor`` into a cache in ``scope`` and copy it out (TVM ``cache_write``).

    The original stage becomes the copy (its axes stay ``T.op.axis``); the returned
    tensor is the new computing stage, with fresh axes. Must come before any loop
    transformation of the stage. An operation with several outputs is cached whole:
    one cache stage computes all of them and one copy stage copies each out; pass any
    of its tensors (the cache's outputs come back as a list) or, as in TVM, the list
    of them (``s.cache_write([T0, T1], "local")``).

    ``layout`` (one output only): a permutation of the axes, the cache's dimension
    ``d`` being the tensor's ``layout[d]`` — ``(1, 0)`` computes a matrix's transpose,
    which the copy reads back transposed (a product whose few rows and many columns
    are better computed the other way round).
    """
    _check_scope(scope, "cache_write")
    if isinstance(tensor, (list, tuple)):
        if not tensor or not all(isinstance(t, Tensor) for t in tensor):
            raise ScheduleError(f"cache_write: expected a tensor or a non-empty list of "
                                f"tensors, got {tensor!r}")
        stages = {id(s[t]): s[t] for t in tensor}
        if len(stages) > 1:
            raise ScheduleError(f"cache_write: the tensors {[t.name for t in tensor]} must "
                                "be outputs of one operation (one stage), got stages "
                                f"{[st.name for st in stages.values()]}")
        outs = cache_write(s, tensor[0], scope, layout)
        return outs if isinstance(outs, list) else [outs]
    stage = s[tensor]
    op = stage.op
    if not isinstance(op, ComputeOp):
        raise ScheduleError(f"cache_write: {tensor.name!r} is a placeholder")
    if stage.relations or stage.leaf_iter_vars != stage.all_iter_vars:
        raise ScheduleError(f"stage {stage.name!r}: cache_write must come before split, "
                            "fuse or reorder of the stage")
    order = _layout(layout, op, tensor)
    fresh = {iv.var: n.Var(iv.name + ".c") for iv in op.axis + op.reduce_axis}
    axis = tuple(n.IterVar(fresh[op.axis[d].var], op.axis[d].dom, "data_par")
                 for d in order)
    # a reduction's extent may depend on the output index (sum over k < i + 1): in the
    # cache stage, on the cache stage's own index
    raxis = tuple(n.IterVar(fresh[iv.var], n.Range(substitute(iv.dom.min, fresh),
                                                   substitute(iv.dom.extent, fresh)), "reduce")
                  for iv in op.reduce_axis)
    rmap = dict(zip(op.reduce_axis, raxis))
    bodies = []
    for b in op.body:
        if isinstance(b, n.Reduce):
            b = n.Reduce(b.combiner, tuple(substitute(x, fresh) for x in b.source),
                         tuple(rmap[a] for a in b.axis), substitute(b.condition, fresh),
                         b.value_index)
        else:
            b = substitute(b, fresh)
        bodies.append(b)
    cache_op = ComputeOp(f"{op.name}.{scope}", axis, tuple(bodies), op.tag)
    copy = _copy_op(op.name, list(cache_op.outputs), axis=op.axis,
                    index=tuple(op.axis[d].var for d in order))
    cache = Stage(cache_op, s)
    cache.scope = scope
    s.insert_stage(cache, before=stage)
    stage.op = copy
    s.stage_map[copy] = stage
    stage.reset_axes()
    args = {"tensor": tensor.name, "scope": scope}
    if layout is not None:
        args["layout"] = list(order)
    s.trace.append(Step("cache_write", stage.name, args))
    outs = list(cache_op.outputs)
    return outs if len(outs) > 1 else outs[0]


def _layout(layout, op, tensor) -> tuple:
    """The cache's axis order: ``layout`` checked (a permutation of the axes, for an
    operation of one output), or the tensor's own."""
    ndim = len(op.axis)
    if layout is None:
        return tuple(range(ndim))
    order = tuple(layout) if isinstance(layout, (list, tuple)) else None
    if order is None or sorted(order) != list(range(ndim)) or \
            not all(isinstance(d, int) for d in order):
        raise ScheduleError(f"cache_write: layout must be a permutation of "
                            f"{list(range(ndim))} (the axes of {tensor.name!r}), got "
                            f"{layout!r}")
    if len(op.body) > 1 and order != tuple(range(ndim)):
        raise ScheduleError(f"cache_write: a layout for {op.name!r} of {len(op.body)} "
                            "outputs; expected one output")
    return order


def rfactor(s: Schedule, tensor: Tensor, axis: n.IterVar, factor_axis: int = 0):
    """Factor a reduction (TVM ``rfactor``): partial results along ``axis`` (a loop of
    the reduction) become a new data-parallel dimension of a new tensor, which the
    original stage then reduces. Lets a reduction be vectorized or parallelized.

    ``B[i] = sum(A[i, k])`` with ``k → ko, ki`` and ``rfactor(B, ki)`` gives
    ``B.rf[ki, i] = sum over ko of A[i, ko*f + ki]``, ``B[i] = sum over ki of B.rf[ki, i]``.
    """
    stage = s[tensor]
    op = stage.op
    if not isinstance(op, ComputeOp) or not op.reduce_axis:
        raise ScheduleError(f"rfactor: {tensor.name!r} is not a reduction")
    stage._check_leaf(axis, "rfactor")
    if axis.kind != "reduce":
        stage._fail(f"rfactor: axis {axis.name!r} is not a reduction axis")
    if not 0 <= factor_axis <= len(op.axis):
        stage._fail(f"rfactor: factor_axis must be in [0, {len(op.axis)}], got {factor_axis}")
    if any(getattr(r, "parent", getattr(r, "outer", None)).kind != "reduce"
           for r in stage.relations):
        stage._fail("rfactor: split or fuse data-parallel axes after rfactor, not before")
    simp = Simplifier()
    spatial = tuple(n.IterVar(n.Var(iv.name), iv.dom, "data_par") for iv in op.axis)
    vmap = {iv.var: new.var for iv, new in zip(op.axis, spatial)}
    # (a reduction's extent may depend on the output index: on the new stage's own)
    ext = leaf_extents(stage.relations, {iv: substitute(iv.dom.extent, vmap)
                                         for iv in op.reduce_axis}, simp)
    if set(free_vars(ext[axis])) & set(vmap.values()):
        stage._fail(f"rfactor: the extent of {axis.name!r} depends on the output index; "
                    "factor a loop of constant extent (the inner one of a split)")
    reduce_leaves = [iv for iv in stage.leaf_iter_vars if iv.kind == "reduce"]
    # The partial-result dimension and the reduce axes that remain in the factored stage.
    rf_var = n.IterVar(n.Var(axis.name + ".v"), n.Range(const(0), ext[axis]), "data_par")
    rest = [n.IterVar(n.Var(iv.name), n.Range(const(0), ext[iv]), "reduce")
            for iv in reduce_leaves if iv is not axis]
    leaf_vals = {axis: rf_var.var}
    leaf_vals.update({iv: new.var for iv, new in zip(
        [iv for iv in reduce_leaves if iv is not axis], rest)})
    values, preds = root_values(stage.relations, leaf_vals, ext, simp)
    vmap.update({iv.var: simp.visit(n.Add(substitute(iv.dom.min, vmap), values[iv]))
                 for iv in op.reduce_axis})
    first = op.body[0]
    cond = substitute(first.condition, vmap)
    for p in preds:
        # the split's tail guard first: the reduction's own condition may read a
        # tensor at indices only valid inside the guard (And evaluates both sides)
        cond = p if _is_true(cond) else if_then_else(p, cond, const(False))
    source = tuple(substitute(x, vmap) for x in first.source)
    rf_axis = spatial[:factor_axis] + (rf_var,) + spatial[factor_axis:]
    rf_bodies = tuple(n.Reduce(first.combiner, source, tuple(rest), simp.visit(cond), k)
                      for k in range(len(op.body)))
    if not rest:  # nothing left to reduce: the partial result is the source itself
        rf_bodies = tuple(n.Select(simp.visit(cond), src, ident) for src, ident in
                          zip(source, first.combiner.identity))
    rf_op = ComputeOp(f"{op.name}.rf", rf_axis, rf_bodies, op.tag)
    k = n.IterVar(n.Var(axis.name + ".v"), n.Range(const(0), ext[axis]), "reduce")
    idx = [iv.var for iv in op.axis]
    idx.insert(factor_axis, k.var)
    reads = tuple(n.TensorRead(rf_op.output(j), tuple(idx)) for j in range(len(op.body)))
    final = tuple(n.Reduce(first.combiner, reads, (k,), const(True), j)
                  for j in range(len(op.body)))
    new_op = ComputeOp(op.name, op.axis, final, op.tag)
    rf_stage = Stage(rf_op, s)
    # a bound of the factored axis read from data (a sparse row's pos[i]) is a read of
    # the new stage's body: its tensors join the schedule first
    for t in rf_op.input_tensors:
        if t.op not in s.stage_map and isinstance(t.op, PlaceholderOp):
            s.insert_stage(Stage(t.op, s), before=s.stages[0])
    s.insert_stage(rf_stage, before=stage)
    stage.op = new_op
    s.stage_map[new_op] = stage
    stage.reset_axes()
    s.trace.append(Step("rfactor", stage.name, {
        "tensor": tensor.name, "axis": axis.name, "factor_axis": factor_axis}))
    outs = list(rf_op.outputs)
    return outs if len(outs) > 1 else outs[0]


def pack(s: Schedule, tensor: Tensor, axis: int, factor: int, readers) -> Tensor:
    """A copy of ``tensor`` with dimension ``axis`` split by ``factor`` into an outermost
    and an innermost dimension, read by ``readers`` instead (TVM's packed layouts, e.g.
    NCHW → NCHW16c, or a matmul's B as column panels).

    ``B[k, j]`` packed on axis 1 by 32 is ``P[j // 32, k, j % 32]``: for a fixed panel the
    rows are contiguous blocks of 32, so a micro-kernel streams one contiguous buffer.
    Elements past the end of ``axis`` (when ``factor`` does not divide it) are zero.
    """
    source = s[tensor]
    t = s.canonical(tensor)
    if not isinstance(axis, int) or not 0 <= axis < t.ndim:
        raise ScheduleError(f"pack of {tensor.name!r}: axis must be in [0, {t.ndim}), got {axis!r}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ScheduleError(f"pack of {tensor.name!r}: factor must be a positive int, "
                            f"got {factor!r}")
    extent = t.shape[axis]
    simp = Simplifier()
    outer_ext = simp.visit(n.FloorDiv(n.Add(extent, n.IntImm("int64", factor - 1)),
                                      n.IntImm("int64", factor)))
    rest_shape = t.shape[:axis] + t.shape[axis + 1:]
    shape = (outer_ext,) + rest_shape + (n.IntImm("int64", factor),)
    axes = tuple(n.IterVar(n.Var(f"ax{d}"), n.Range(const(0), e)) for d, e in enumerate(shape))
    o, *rest, i = [iv.var for iv in axes]
    full = n.Add(n.Mul(o, n.IntImm("int64", factor)), i)
    src_idx = tuple(rest[:axis]) + (full,) + tuple(rest[axis:])
    from ..ir.op import if_then_else
    body = if_then_else(n.LT(full, extent), n.TensorRead(t, src_idx), const(0, t.dtype))
    packed_op = ComputeOp(f"{tensor.name}.packed", axes, (body,))
    packed = packed_op.output(0)
    f = n.IntImm("int64", factor)

    def redirect(_, idx):
        rest_idx = idx[:axis] + idx[axis + 1:]
        return n.TensorRead(packed, (n.FloorDiv(idx[axis], f),) + rest_idx
                            + (n.FloorMod(idx[axis], f),))

    reader_stages = _redirect_readers(s, source, readers, redirect, Stage(packed_op, s),
                                      f"pack of {tensor.name!r}")
    s.trace.append(Step("pack", source.name, {
        "tensor": tensor.name, "axis": axis, "factor": factor,
        "readers": [r.name for r in reader_stages]}))
    return packed


def _is_true(cond) -> bool:
    return isinstance(cond, n.IntImm) and bool(cond.value)
