"""The auto-scheduler: a schedule space derived from a compute's own structure, for
operators without a template (and for templates' operators, to compare).

For the output stage with spatial axes S1..Sn and reduction axes R1..Rm (Ansor's
multi-level tiling, "SSRRS"):

    parallel for S.outer...           # fused, over the cores
      for S.mid...                    # a block of register tiles that share data in cache
        for R.outer...                # a block of the reduction
          for R.inner...
            for S.inner... (unrolled) # the register tile
              for Sn.inner (vector)   # the innermost spatial axis, whole vectors

Elementwise producers are inlined; other producers get the generic schedule. Optionally
the input read along Sn and a reduction axis is packed into panels as wide as the
vector tile (``pack``), so the innermost loop reads it contiguously. The local
accumulators pass keeps the register tile in registers across R.inner.

Knobs: ``t{d}`` / ``m{d}`` (inner / mid tile of spatial axis d), ``r{d}`` (inner tile of
reduction axis d), ``unroll`` (1: the register tile; 2: also short reduction tiles),
``pack``.
"""
from __future__ import annotations

from tensordsl.te.tensor import ComputeOp

from .generic import _extent, schedule_generic, schedule_stage
from .target import vector_lanes


def _fits(values, extent):
    return [v for v in values if extent is None or v <= max(1, extent)] or [1]


def _anchor(out):
    """The stage the tiling is about: the output if it reduces, else the one reducing
    stage it is computed from (a convolution cropped afterwards)."""
    if out.op.reduce_axis if isinstance(out.op, ComputeOp) else False:
        return out.op
    seen, todo, reducing = set(), [out.op], []
    while todo:
        op = todo.pop()
        for t in getattr(op, "input_tensors", []):
            if id(t.op) in seen or not isinstance(t.op, ComputeOp):
                continue
            seen.add(id(t.op))
            if t.op.reduce_axis:
                reducing.append(t.op)
            todo.append(t.op)
    return reducing[0] if len(reducing) == 1 else out.op


def auto_space(out) -> dict:
    op = _anchor(out)
    lanes = vector_lanes(32)
    if not isinstance(op, ComputeOp) or not op.axis:
        return {}
    space = {}
    n = len(op.axis)
    for d, iv in enumerate(op.axis):  # noqa: B007
        e = _extent(iv)
        if d == n - 1:
            space[f"t{d}"] = _fits([lanes, 2 * lanes, 4 * lanes], e) if (e or 0) >= lanes \
                else _fits([1, 2, 4, 8], e)
        else:
            space[f"t{d}"] = _fits([1, 2, 4, 6, 8, 12], e)
        space[f"m{d}"] = [1, 2, 4, 8, 16]
    for d, iv in enumerate(op.reduce_axis):
        e = _extent(iv)
        space[f"r{d}"] = sorted(set(_fits([1, 4, 16, 64, 128, 256, 512], e))
                                | ({e} if e and e <= 512 else set()))
    space["unroll"] = [0, 1, 2]
    if op.reduce_axis:
        space["pack"] = [0, 1]
    return space


def auto_default(out) -> dict:  # the middle value of every knob
    return {k: v[len(v) // 2] for k, v in auto_space(out).items()}


def _panel_input(op, last_var):
    """(tensor, dimension) of an input read with the last spatial axis alone in one
    dimension and a reduction axis in another (matmul's B), or None."""
    from tensordsl.ir import nodes as n
    from tensordsl.ir.visitor import Visitor
    reduce_vars = {iv.var for iv in op.reduce_axis}
    found = []

    class Reads(Visitor):
        def visit_TensorRead(self, node):
            idx = node.indices
            dims = [d for d, i in enumerate(idx) if i is last_var]
            others = {v for i in idx for v in _vars(i)}
            if len(dims) == 1 and others & reduce_vars and \
                    isinstance(node.tensor.op, type(node.tensor.op)):
                found.append((node.tensor, dims[0]))
            self.generic_visit(node)

    def _vars(e):
        from tensordsl.ir.visitor import free_vars
        return set(free_vars(e)) if isinstance(e, n.Expr) else set()

    for b in op.body:
        Reads().visit(b)
    return found[0] if found else None


def schedule_auto(s, out, config=None):
    cfg = dict(auto_default(out), **(config or {}))
    op = _anchor(out)
    if not isinstance(op, ComputeOp) or not op.axis:
        schedule_generic(s, out, config)
        return
    stage = s[op.output(0)]
    for st in s.stages:
        if not isinstance(st.op, ComputeOp) or st is stage:
            continue
        if st.is_output or st.op.reduce_axis or st.op.num_outputs > 1 or \
                st.op in _inputs_of(op):
            schedule_stage(st)   # the output after the anchor; producers it reads
        else:
            st.compute_inline()
    outers, mids, inners = [], [], []
    for d, iv in enumerate(op.axis):
        rest, inner = stage.split(iv, factor=max(1, int(cfg.get(f"t{d}", 1))))
        outer, mid = stage.split(rest, factor=max(1, int(cfg.get(f"m{d}", 1))))
        outers.append(outer)
        mids.append(mid)
        inners.append(inner)
    r_outer, r_inner = [], []
    for d, iv in enumerate(op.reduce_axis):
        ro, ri = stage.split(iv, factor=max(1, int(cfg.get(f"r{d}", 1))))
        r_outer.append(ro)
        r_inner.append(ri)
    stage.reorder(*outers, *mids, *r_outer, *r_inner, *inners)
    vector = inners[-1]
    lanes_ok = (_extent(op.axis[-1]) or 0) >= int(cfg.get(f"t{len(op.axis) - 1}", 1)) > 1
    if lanes_ok:
        stage.vectorize(vector)
    if cfg.get("unroll"):
        for iv in inners[:-1]:
            stage.unroll(iv)
    if cfg.get("unroll") == 2:  # also short reduction tiles (a 3x3 window)
        for d, iv in enumerate(r_inner):
            if int(cfg.get(f"r{d}", 1)) <= 8:
                stage.unroll(iv)
    if cfg.get("pack") and op.reduce_axis and lanes_ok:
        found = _panel_input(op, op.axis[-1].var)
        if found is not None:
            tensor, dim = found
            panels = s[s.pack(tensor, dim, int(cfg[f"t{len(op.axis) - 1}"]), [out])]
            panels.parallel(panels.op.axis[0])
            panels.vectorize(panels.op.axis[-1])
    fused = stage.fuse(*outers) if len(outers) > 1 else outers[0]
    stage.parallel(fused)


def _inputs_of(op) -> set:
    """Computed stages the anchor reads directly: materialized (a padded input is read
    many times; inlining it would recompute the padding test per multiply-add)."""
    return {t.op for t in getattr(op, "input_tensors", []) if isinstance(t.op, ComputeOp)}
