"""The operator table: which template schedules a derived kernel, decided by what the
kernel *is* (its structure after ``rewrite.prepare``), not by where it came from.

* ``matmul``: ``C[m, n] = sum_k A[.] * B[.]`` with ``B`` read along ``n`` (the gradients
  of matmul and dense): the matmul template of ``schedules/cpu/matmul.py``, its knobs and
  its records (``equivalent_keys``: a product without records of its own takes those of
  the matmul of its sizes).
* ``conv2d_flat``: a sum over a channel and a window of ``D[.., q + tap]`` times a weight
  broadcast over ``q`` (the data gradient of a stride-1 convolution, after the rewrites):
  the padded-width convolution micro-kernel of ``schedules/cpu/conv2d.py``.
* ``panel``: ``T[.., f] = sum_p G[f, p] * X[.., p + ..]`` computed with ``f`` last (the
  weight gradient): ``G`` packed in panels along ``f``, ``X`` broadcast.
* ``rowwise``: reductions along the last axis only, with elementwise stages between
  (softmax, log_softmax, layer_norm): ``schedules/cpu/rowwise.py``, also with a tuple
  reduction (the argmax of a max's adjoint) in vector lanes.
* ``sddmm``, ``spmm``, ``spmv``: a kernel reading a sparse operand's structure (the
  gradients of the sparse operators, ``segments.py``) — over the operand's stored
  positions (the adjoint of its values: SDDMM's position-space template), or a matrix
  or a vector gathered over runs of entries (a row's, or a column's through the
  transpose: ``A.T @ dC`` is an SpMM): ``schedules/cpu/sparse.py``.
* ``auto``: anything else, the auto-scheduler (``schedules/cpu/auto.py``).

``template_of(out)`` names the template, ``knobs(template, out)`` gives its (space,
defaults), ``schedule_derived(template, out, config)`` a schedule. Every template is
tunable (``tensordsl tune <op>_backward ...``); a record's configuration replaces the
defaults.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..arith.simplify import Simplifier, const_int
from ..ir import nodes as n
from ..ir.visitor import free_vars, post_order
from ..te.tensor import ComputeOp
from .graph import topological
from .rewrite import _linear, _reads, prepare  # noqa: F401 (prepare: re-exported)


def _computes(out) -> list:
    return [op for op in topological([out]) if isinstance(op, ComputeOp)]


def _reducing(out) -> list:
    return [op for op in _computes(out) if op.reduce_axis]


def _is_matmul(op) -> bool:
    from schedules.cpu.matmul import is_product
    return is_product(SimpleNamespace(op=op))


def _stencil(op):
    """(data read, broadcast read) if ``op`` sums ``D[.., q + ...] * W[...]`` over three
    or more reduction axes, ``q`` its last axis with coefficient 1 in ``D``'s last index
    only and absent from ``W``; else None."""
    if len(op.reduce_axis) < 3 or len(op.axis) < 2:
        return None
    source = op.body[0].source[0]
    if not isinstance(source, n.Mul):
        return None
    q = op.axis[-1].var
    for d, w in ((source.a, source.b), (source.b, source.a)):
        if not isinstance(d, n.TensorRead) or not isinstance(w, n.TensorRead):
            continue
        if any(q in free_vars(i) for i in w.indices):
            continue
        *lead, position = _flat_indices(d)
        if any(q in free_vars(i) for i in lead):
            continue
        k = _linear(position, {q})
        if k is not None and k.get(q) == 1:
            return d, w
    return None


def _flat_indices(read) -> tuple:
    """A read's indices, a trailing ``(e // S, e % S)`` over rows of ``S`` (the tensor's
    last extent) taken as the one position ``e`` it is after storage flattening."""
    indices = read.indices
    if len(indices) >= 2:
        q, r = indices[-2], indices[-1]
        S = const_int(read.tensor.shape[-1])
        if isinstance(q, n.FloorDiv) and isinstance(r, n.FloorMod) and S is not None and \
                const_int(q.b) == S == const_int(r.b):
            return (*indices[:-2], q.a)
    return tuple(indices)


def _panel(op):
    """(the panel read, its dimension along the last axis) if ``op``'s last axis ``f`` is
    alone in one dimension of a factor read whose other dimensions hold a reduction
    axis, and absent from the other factors; else None."""
    if len(op.axis) < 2 or not isinstance(op.body[0].source[0], n.Mul):
        return None
    f = op.axis[-1].var
    reads = _reads(op.body[0].source[0])
    reduce_vars = {iv.var for iv in op.reduce_axis}
    for rd in reads:
        dims = [d for d, i in enumerate(rd.indices) if i is f]
        others = {v for d, i in enumerate(rd.indices) if d not in dims for v in free_vars(i)}
        elsewhere = any(f in free_vars(i) for o in reads if o is not rd for i in o.indices)
        if len(dims) == 1 and others & reduce_vars and f not in others and not elsewhere \
                and dims[0] != len(rd.indices) - 1:
            return rd, dims[0]
    return None


def _rowwise(out) -> bool:
    """Every reduction over the last axis only, every stage of the output's rows."""
    computes = _computes(out)
    ndim = len(out.op.axis)
    if ndim < 2:
        return False
    rows = [const_int(iv.dom.extent) for iv in out.op.axis[:-1]]
    for op in computes:
        if len(op.axis) != ndim or [const_int(iv.dom.extent) for iv in op.axis[:-1]] != rows:
            return False
        if op.reduce_axis and len(op.reduce_axis) != 1:
            return False
    return any(op.reduce_axis for op in computes)


def _anchor(out):
    """The one reduction a derived kernel is about (None: several or none)."""
    reducing = _reducing(out)
    return reducing[0] if len(reducing) == 1 else None


def _sparse_operand(out):
    """The sparse operand (``td.sparse_placeholder``) whose arrays ``out``'s graph
    reads, or None (none, or several)."""
    from ..sparse.tensor import component_of
    found = {id(c.sparse): c.sparse for op in topological([out])
             if (c := component_of(op.output(0))) is not None}
    return next(iter(found.values())) if len(found) == 1 else None


def _sparse_template(out) -> str | None:
    """``sddmm`` / ``spmm`` / ``spmv`` for a kernel of those forms over a sparse
    operand (see the module docstring), else None."""
    from .segments import run_array
    A = _sparse_operand(out)
    op = out.op
    if A is None or not isinstance(op, ComputeOp) or op.num_outputs != 1:
        return None
    keys = Simplifier()
    if len(op.axis) == 1 and any(keys.key(op.axis[0].dom.extent) == keys.key(nnz)
                                 for nnz in A.nnz.values()):
        return "sddmm"
    if len(op.reduce_axis) == 1 and len(op.axis) in (1, 2) and \
            run_array(op.reduce_axis[0].dom.min) is not None:
        return "spmv" if len(op.axis) == 1 else "spmm"
    return None


SPARSE_TEMPLATES = ("sddmm", "spmm", "spmv")


def template_of(out) -> str:
    """The template for the derived kernel ``out`` (after ``prepare``)."""
    sparse = _sparse_template(out)
    if sparse is not None:
        return sparse
    anchor = _anchor(out)
    if anchor is not None and anchor is out.op and _is_matmul(anchor):
        return "matmul"
    if anchor is not None and _stencil(anchor) is not None:
        return "conv2d_flat"
    if anchor is not None and anchor is not out.op and _panel(anchor) is not None and \
            len(anchor.axis) >= 3:
        return "panel"
    if _rowwise(out):
        return "rowwise"
    if _per_sample(out):
        return "per_sample"
    if _per_sample_reduce(out):
        return "per_sample_reduce"
    return "auto"


# below this many elements per sample, computing every stage at the sample loop
# leaves too little work per stage to be worth it
PER_SAMPLE_MIN_ELEMENTS = 1 << 15


def _per_sample_reduce(out) -> bool:
    """The output sums over the samples (its one reduction) a tensor of a per-sample
    chain (``_per_sample`` of it): the routing's gradient with respect to its weights."""
    op = out.op
    if not isinstance(op, ComputeOp) or len(op.reduce_axis) != 1:
        return False
    samples = repr(op.reduce_axis[0].dom.extent)
    chained = [t for t in op.input_tensors if isinstance(t.op, ComputeOp)
               and t.op.axis and repr(t.op.axis[0].dom.extent) == samples]
    return len(chained) == 1 and _per_sample(chained[0])


def _per_sample(out) -> bool:
    """Every stage indexed by the output's first axis (the sample), and large stages:
    a chain of many stages per sample (capsule routing's gradient with respect to its
    input), computed a sample at a time so each sample's tensors stay in cache."""
    computes = _computes(out)
    if len(out.op.axis) < 2 or len(computes) < 8:
        return False
    samples = const_int(out.op.axis[0].dom.extent)
    if samples is None or samples < 2:
        return False
    largest = 0
    for op in computes:
        if not op.axis or const_int(op.axis[0].dom.extent) != samples:
            return False
        size = 1
        for iv in op.axis[1:]:
            size *= const_int(iv.dom.extent) or 0
        largest = max(largest, size)
    return largest >= PER_SAMPLE_MIN_ELEMENTS


def knobs(template: str, out) -> tuple[dict, dict]:
    """(space, defaults) of ``template`` for ``out``."""
    from schedules.cpu.target import vector_lanes
    lanes = vector_lanes(32)
    if template in SPARSE_TEMPLATES:
        from schedules.cpu.sparse import row_form_knobs
        return row_form_knobs(template)
    if template in ("matmul", "rowwise"):
        from schedules.cpu.space import defaults_for, space_for
        return space_for(template), defaults_for(template)
    if template == "conv2d_flat":
        from schedules.cpu.conv2d import flat_default_config
        return {"mr": [4, 6, 8, 12], "nr": [lanes, 2 * lanes, 4 * lanes]}, \
            flat_default_config()
    if template == "panel":
        space = {"nr": [lanes, 2 * lanes, 4 * lanes], "tile": [1, 2, 3, 4, 6],
                 "kc": [64, 128, 256, 512, 1024]}
        return space, {"nr": 4 * lanes, "tile": 2, "kc": 128}
    if template in ("per_sample", "per_sample_reduce"):
        return {}, {}        # no knobs yet
    from schedules.cpu.auto import auto_default, auto_space
    return auto_space(out), auto_default(out)


def schedule_derived(template: str, out, config: dict | None = None):
    """A schedule of the derived kernel ``out`` by ``template``."""
    import tensordsl as td
    s = td.create_schedule(out.op)
    if template in SPARSE_TEMPLATES:
        from schedules.cpu.sparse import TEMPLATES
        TEMPLATES[template](s, out, _sparse_operand(out), config)
    elif template == "matmul":
        from schedules.cpu.matmul import schedule_matmul
        schedule_matmul(s, out, config)
    elif template == "rowwise":
        _schedule_rows(s, out, config)
    elif template == "conv2d_flat":
        _schedule_stencil(s, out, _anchor(out), dict(knobs(template, out)[1], **(config or {})))
    elif template == "panel":
        _schedule_panel(s, out, _anchor(out), dict(knobs(template, out)[1], **(config or {})))
    elif template == "per_sample":
        from schedules.cpu.capsule import schedule_per_sample
        schedule_per_sample(s, out, config)
    elif template == "per_sample_reduce":
        from schedules.cpu.capsule import schedule_per_sample_reduce
        schedule_per_sample_reduce(s, out, config)
    else:
        from schedules.cpu.auto import schedule_auto
        schedule_auto(s, out, config)
    return s


def equivalent_workloads(template: str, out) -> list:
    """The known operators a derived kernel is, best match first: for a product,
    ``matmul`` of the same sizes with the same operand layouts, then without the
    transpositions (the records of the forward operator)."""
    if template != "matmul" or len(out.op.axis) != 2:
        return []          # (a batched product's records are its own)
    from schedules.cpu.matmul import _column_axis, _row_axis
    from ..autotune.workload import Workload
    C = SimpleNamespace(op=out.op)
    M, N = (const_int(iv.dom.extent) for iv in out.op.axis)
    K = const_int(out.op.reduce_axis[0].dom.extent)
    source = out.op.body[0].source[0]
    ta, tb = _row_axis(C) == 1, _column_axis(C) == 0
    dtypes = (source.a.dtype, source.b.dtype)
    found = []
    for flags in ((ta, tb), (False, False)):
        a = (K, M) if flags[0] else (M, K)
        b = (N, K) if flags[1] else (K, N)
        w = Workload("matmul", [("array", a, dtypes[0]), ("array", b, dtypes[1])],
                     {"transpose_a": flags[0], "transpose_b": flags[1]})
        if w.key not in [f.key for f in found]:
            found.append(w)
    return found


def equivalent_keys(template: str, out) -> list:
    """Record keys of ``equivalent_workloads``."""
    return [w.key for w in equivalent_workloads(template, out)]


# ---------------------------------------------------------------- the new templates


def _schedule_rows(s, out, config):
    """``schedules/cpu/rowwise.py``, also for reductions of several outputs (the argmax
    of a max's adjoint, a scalar loop per row): every stage computed per row of the
    output, in L1; cheap elementwise stages inlined; one-output sums and maxima along
    the row vectorized through partial results."""
    from schedules.cpu import rowwise
    from schedules.cpu.generic import vector_factor
    from schedules.cpu.target import vector_lanes, wants_stream
    if all(op.num_outputs == 1 for op in _computes(out)):
        rowwise.schedule_rowwise(s, out, config)
        return
    lanes = (config or {}).get("lanes") or vector_lanes(32)
    O = s[out]
    *rows, last = out.op.axis
    row = O.fuse(*rows) if len(rows) > 1 else rows[0]
    factor = vector_factor(const_int(last.dom.extent), lanes)
    if factor:
        O.vectorize(O.split(last, factor=factor)[1])
    O.parallel(row)
    if wants_stream(config, out):
        O.pragma(row, "nontemporal")
    stages = [s[op.output(0)] for op in _computes(out) if op is not out.op]
    for st in stages:
        per_row = const_int(st.op.axis[-1].dom.extent) == 1
        if not st.op.reduce_axis and st.op.num_outputs == 1 and not per_row and \
                not rowwise._is_costly(st.op):
            st.compute_inline()
    for st in reversed(stages):
        if st.attach_type == "inline":
            continue
        st.compute_at(O, row)
        if st.op.reduce_axis and st.op.num_outputs == 1:
            rowwise._vectorized_reduction(s, st, lanes, O, row)
        elif st.op.reduce_axis:
            _lanes_of_partials(s, st, lanes, O, row)
        elif not st.op.reduce_axis:
            f = vector_factor(const_int(st.op.axis[-1].dom.extent), lanes)
            if f:
                st.vectorize(st.split(st.op.axis[-1], factor=f)[1])


def _lanes_of_partials(s, st, lanes, O, row):
    """A reduction of several outputs (an argmax) along the row: ``lanes`` partial
    results, each a vector lane (``rfactor``), then a short scalar loop over them."""
    (k,) = st.op.reduce_axis
    extent = const_int(k.dom.extent)
    if extent is None or extent < 2 * lanes:
        return
    _, ki = st.split(k, factor=lanes)
    parts = s.rfactor(st.op.output(0), ki, factor_axis=len(st.op.axis))
    P = s[parts[0] if isinstance(parts, list) else parts]
    *spatial, lane = P.op.axis
    P.reorder(*spatial, *P.op.reduce_axis, lane)
    P.vectorize(lane)
    P.compute_at(O, row)


def _reshaping_reads(op) -> set:
    """ids of the computes ``op`` reads as ``T[.., e // S, e % S]`` with ``S`` the extent of
    ``T``'s last dimension: after storage flattening that is ``T[.., e]``, contiguous."""
    found = set()
    for b in op.body:
        for rd in _reads(b):
            if len(rd.indices) < 2 or not isinstance(rd.tensor.op, ComputeOp):
                continue
            q, r = rd.indices[-2], rd.indices[-1]
            S = const_int(rd.tensor.shape[-1])
            if isinstance(q, n.FloorDiv) and isinstance(r, n.FloorMod) and \
                    S is not None and const_int(q.b) == S == const_int(r.b):
                found.add(id(rd.tensor.op))
    return found


def _divides_innermost(op, inlined=frozenset()) -> bool:
    """Whether the innermost axis is divided (``//``, ``%``) in the body, other than in a
    reshaping read (``_reshaping_reads``), or anywhere in the body of a producer inlined
    into it: vectors of such an index are gathers, slower than scalar code."""
    last = op.axis[-1].var
    reshaping = _reshaping_reads(op)
    cancelled = set()
    for b in op.body:
        for rd in _reads(b):
            if id(rd.tensor.op) in reshaping:
                cancelled.update(id(x) for x in rd.indices[-2:])
    for b in op.body:
        for x in post_order(b):
            if isinstance(x, (n.FloorDiv, n.FloorMod)) and id(x) not in cancelled and \
                    last in free_vars(x):
                return True
            if isinstance(x, n.TensorRead) and id(x.tensor.op) in inlined and any(
                    isinstance(y, (n.FloorDiv, n.FloorMod))
                    for pb in x.tensor.op.body for y in post_order(pb)):
                return True
    return False


def _other_stages(s, anchor, out):
    """Everything but the anchor: elementwise producers of materialized stages inlined
    (unless read through a reshape: then a contiguous copy of their own); the stages the
    anchor reads (a padded copy) materialized once, rows in parallel, vectorized unless
    that would gather; the output, if it is not the anchor (a crop, a transposition),
    parallel and vectorized."""
    from schedules.cpu.generic import schedule_stage
    computes = _computes(out)
    direct = {id(t.op) for t in anchor.input_tensors}
    reshaped = set().union(*(_reshaping_reads(op) for op in computes))
    kept = {id(op) for op in computes if op is anchor or op is out.op or id(op) in direct
            or op.reduce_axis or id(op) in reshaped}
    inlined = frozenset(id(op) for op in computes if id(op) not in kept)
    for op in computes:
        st = s[op.output(0)]
        if op is anchor:
            continue
        if id(op) in inlined:
            st.compute_inline()
        elif op.reduce_axis or _divides_innermost(op, inlined):
            _rows_parallel(st)
        else:
            schedule_stage(st)


def _rows_parallel(st):
    axes = list(st.op.axis)
    if len(axes) > 1:
        st.parallel(st.fuse(*axes[:-1]))


def _schedule_stencil(s, out, anchor, cfg):
    """The padded-width convolution micro-kernel (``schedules/cpu/conv2d.py``): ``mr``
    output channels (the broadcast operand's) by ``nr`` positions (vectors of the data
    operand), the window unrolled, the channel reduction outermost."""
    data, weight = _stencil(anchor)
    _other_stages(s, anchor, out)
    A = s[anchor.output(0)]
    *lead, q = anchor.axis
    wvars = {v for i in weight.indices for v in free_vars(i)}
    channels = [iv for iv in lead if iv.var in wvars]
    c = max(channels, key=lambda iv: const_int(iv.dom.extent) or 0) if channels else None
    reds = sorted(anchor.reduce_axis, key=lambda iv: -(const_int(iv.dom.extent) or 0))
    channel_r, window = reds[0], [iv for iv in anchor.reduce_axis if iv is not reds[0]]
    from schedules.cpu.conv2d import fit_positions
    from schedules.cpu.target import vector_lanes
    nr = fit_positions(int(cfg["nr"]), const_int(q.dom.extent) or 0, vector_lanes(32))
    qo, qi = A.split(q, factor=nr)
    rest = [iv for iv in lead if iv is not c]
    if c is not None:
        co, ci = A.split(c, factor=int(cfg["mr"]))
        A.reorder(*rest, qo, co, channel_r, *window, ci, qi)
        A.unroll(ci)
    else:
        A.reorder(*rest, qo, channel_r, *window, qi)
    for iv in window:
        if (const_int(iv.dom.extent) or 99) <= 7:
            A.unroll(iv)
    A.vectorize(qi)
    A.parallel(A.fuse(*rest, qo) if rest else qo)


def _schedule_panel(s, out, anchor, cfg):
    """``T[.., f] = sum_p G[f, p] * X[..]``: ``G`` packed in panels of one vector along
    ``f``; a register tile of ``nr`` values of ``f`` (vectors) by ``tile`` values of the
    largest other axis times the last other axis (when short); ``X`` broadcast."""
    from schedules.cpu.target import vector_lanes
    lanes = vector_lanes(32)
    read, dim = _panel(anchor)
    _other_stages(s, anchor, out)
    T = s[anchor.output(0)]
    *others, f = anchor.axis
    fo, fi = T.split(f, factor=lanes)
    fo2, fo1 = T.split(fo, factor=max(1, int(cfg["nr"]) // lanes))
    big = max(others, key=lambda iv: const_int(iv.dom.extent) or 0)
    co, ci = T.split(big, factor=int(cfg["tile"]))
    short = [iv for iv in others[-1:] if iv is not big and (const_int(iv.dom.extent) or 99) <= 4]
    middle = [iv for iv in others if iv is not big and iv not in short]
    reds = sorted(anchor.reduce_axis, key=lambda iv: -(const_int(iv.dom.extent) or 0))
    main, outer_r = reds[0], [iv for iv in anchor.reduce_axis if iv is not reds[0]]
    po, pi = T.split(main, factor=int(cfg["kc"]))
    T.reorder(co, fo2, *outer_r, po, *middle, pi, ci, *short, fo1, fi)
    for iv in (ci, *short, fo1):
        T.unroll(iv)
    T.vectorize(fi)
    T.parallel(co)
    panels = s[s.pack(read.tensor, dim, lanes, [anchor.output(0)])]
    panels.parallel(panels.op.axis[0])
    source = read.tensor.op
    if isinstance(source, ComputeOp) and not source.reduce_axis and \
            source.num_outputs == 1 and source is not out.op:
        # its only reader now is the packing copy: one pass instead of two
        s[read.tensor].compute_inline()
