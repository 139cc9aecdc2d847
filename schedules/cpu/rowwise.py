"""Row-wise operators (softmax, log_softmax, layer_norm): reductions along the last axis
followed by an elementwise pass over the same row.

    parallel for row:
      partial[0:L] = reduce over x[row, ko*L + 0:L]     (rfactor: L lanes of partials)
      r = reduce over partial[0:L]
      e[row, :] = exp(x[row, :] - r)                     (kept only if costly, vectorized)
      ...
      out[row, :] = f(x[row, :], r, ...)                 (vectorized)

Everything of one row stays in L1; rows run on all cores; the next row is prefetched.
Knobs: ``lanes``, ``prefetch`` (rows ahead, 0: none), ``stream`` (non-temporal stores of
the output; default: when it is at least half the last-level cache).
"""
from __future__ import annotations

from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import Visitor
from tensordsl.te.tensor import ComputeOp

from .generic import schedule_generic, vector_factor
from .target import vector_lanes, wants_stream


class _Costly(Visitor):
    def __init__(self):
        self.costly = False

    def visit_Call(self, node):
        if node.name in ("exp", "log", "tanh", "erf", "pow"):
            self.costly = True
        self.generic_visit(node)


def _is_costly(op) -> bool:
    c = _Costly()
    for b in op.body:
        c.visit(b)
    return c.costly


def _reduces_last_axis_only(stage, ndim) -> bool:
    op = stage.op
    return len(op.reduce_axis) == 1 and len(op.axis) == ndim


def schedule_rowwise(s, out, config=None):
    lanes = (config or {}).get("lanes") or vector_lanes(32)
    O = s[out]
    ndim = len(out.op.axis)
    stages = [st for st in s.stages if isinstance(st.op, ComputeOp) and st is not O]
    if ndim < 1 or not all(st.op.num_outputs == 1 for st in stages) or any(
            st.op.reduce_axis and not _reduces_last_axis_only(st, ndim) for st in stages):
        schedule_generic(s, out, config)
        return
    *rows, last = out.op.axis
    row = O.fuse(*rows) if len(rows) > 1 else (rows[0] if rows else None)
    factor = vector_factor(_extent(last), lanes)
    if factor:
        _, inner = O.split(last, factor=factor)
        O.vectorize(inner)
    if row is not None:
        O.parallel(row)
        # each row is read from memory once; fetch the next one while this one is
        # worked on (the hardware prefetchers stop at every 4 KiB page)
        ahead = (config or {}).get("prefetch", 1)
        for t in _row_inputs(s, O, ndim) if ahead else ():
            O.prefetch(t, row, ahead)
        if wants_stream(config, out):
            O.pragma(row, "nontemporal")
    for st in stages:
        # elementwise stages over the row are inlined unless costly; per-row values (a
        # reciprocal of a sum) are computed once per row
        per_row = _extent(st.op.axis[-1]) == 1 and _extent(last) != 1
        if not st.op.reduce_axis and not _is_costly(st.op) and not per_row:
            st.compute_inline()
    for st in reversed(stages):  # consumers first: a producer attaches inside them
        if st.attach_type == "inline":
            continue
        if row is not None:
            st.compute_at(O, row)
        if st.op.reduce_axis:
            _vectorized_reduction(s, st, lanes, O, row)
        else:
            *_, st_last = st.op.axis
            f = vector_factor(_extent(st_last), lanes)
            if f:
                st.vectorize(st.split(st_last, factor=f)[1])


def _row_inputs(s, O, ndim):
    """The placeholders of the full row shape the row-wise computation reads."""
    from tensordsl.te.tensor import PlaceholderOp
    out = []
    for st in s.stages:
        if isinstance(st.op, PlaceholderOp) and len(st.op.shape) == ndim and \
                s.consumes(O, st):
            out.append(st.op.output(0))
    return out


def _extent(iv):
    e = iv.dom.extent
    return e.value if isinstance(e, n.IntImm) else None


def _vectorized_reduction(s, st, lanes, O, row):
    """``r = reduce(x[k])`` → lanes of partial results (vector ops), then reduce those."""
    (k,) = st.op.reduce_axis
    extent = _extent(k)
    if extent is None or extent < 2 * lanes:
        return
    # several vectors of partials: independent add chains hide the adder's latency
    width = lanes * 4 if extent >= lanes * 16 else lanes
    _, ki = st.split(k, factor=width)
    partial = s.rfactor(st.op.output(0), ki, factor_axis=len(st.op.axis))
    P = s[partial]
    *spatial, lane = P.op.axis
    (ko,) = P.op.reduce_axis
    P.reorder(*spatial, ko, lane)
    P.vectorize(lane)
    if row is not None:
        P.compute_at(O, row)
    if width > lanes:
        # the partials fold into one vector before the scalar chain: 16 dependent steps
        # instead of 64
        final = s[st.op.output(0)]
        (kp,) = final.op.reduce_axis
        _, kpi = final.split(kp, factor=lanes)
        second = s[s.rfactor(final.op.output(0), kpi, factor_axis=len(final.op.axis))]
        *spatial, lane = second.op.axis
        second.reorder(*spatial, *second.op.reduce_axis, lane)
        second.vectorize(lane)
        if row is not None:
            second.compute_at(O, row)
