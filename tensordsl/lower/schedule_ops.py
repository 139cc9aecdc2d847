"""Loop-nest construction: one nest per stage, nested where ``compute_at`` says.

A stage's nest has one loop per leaf axis, outermost first. Its body stores each output
element; a reduction stores the identity in an init nest placed just before its first
reduction loop (looping over the data-parallel loops inside that point) and combines
into the element inside. Split predicates and the shape guards of attached stages wrap
the body right inside the innermost loop they depend on. Stages attached at a loop are
realized and computed at the start of that loop's body; root stages run in order, each
intermediate one realized around the whole function. A scan is its loop, with its update
stages attached inside; ``scan.py`` then stores their rows into the scan's outputs. An
extern stage is its ``call_packed`` call (``runtime/packed.py``), at root.
"""
from __future__ import annotations

from ..arith.interval import eval_interval
from ..arith.simplify import Simplifier
from ..errors import BuildError, ScheduleError
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.visitor import Mutator, Visitor, free_vars, substitute
from ..te.tensor import ACCUMULATE_TAG, ComputeOp, ExternOp, ScanOp
from .bound_inference import Bounds, compute_stages
from .check_bounds import reads_tensor
from .inline import expanded_bodies
from .scan import store_into_scans
from .tensorize import lower_tensorized

_TRUE = n.IntImm("bool", 1)


def schedule_ops(schedule, bounds: Bounds, arg_tensors) -> n.Stmt:
    """The loop nest of the whole schedule (still on tensors: ProducerStore/Realize)."""
    builder = _NestBuilder(schedule, bounds, arg_tensors)
    return store_into_scans(schedule, builder.build())


class _NestBuilder:
    def __init__(self, schedule, bounds, arg_tensors):
        self.s, self.bounds = schedule, bounds
        self.arg_ops = {t.op for t in arg_tensors}
        self.attached: dict = {}
        for st in compute_stages(schedule):
            if st.attach_type == "scope":
                self.attached.setdefault((id(st.attach_stage), id(st.attach_ivar)), []).append(st)

    def build(self) -> n.Stmt:
        roots = [st for st in compute_stages(self.s) if st.attach_type == "root"]
        body = n.seq(*[self.stage_nest(st) for st in roots])
        for st in reversed(roots):
            if st.op not in self.arg_ops:
                body = self.realize(st, body)
        return body

    def realize(self, stage, body: n.Stmt) -> n.Stmt:
        sb = self.bounds.stages[stage]
        ranges = tuple(sb.ranges[iv] for iv in stage.op.axis)
        for t in reversed(stage.op.outputs):
            if not isinstance(stage.op, ComputeOp):   # scan, extern: outputs whole
                ranges = tuple(n.Range(n.IntImm("int64", 0), d) for d in t.shape)
            body = n.ProducerRealize(t, ranges, stage.scope, body)
        return body

    # ------------------------------------------------------------ one stage
    def stage_nest(self, stage) -> n.Stmt:
        nest = self._stage_nest(stage)
        if getattr(stage.op, "tag", "") == ACCUMULATE_TAG:
            # a derived adjoint without a gather form (autodiff/reverse.py): say so
            nest = n.Pragma(f"{ACCUMULATE_TAG} (no gather form)", nest)
        return nest

    def _stage_nest(self, stage) -> n.Stmt:
        sb = self.bounds.stages[stage]
        op: ComputeOp = stage.op
        if isinstance(op, ExternOp):
            return op.body if op.body is not None else n.Evaluate(op.call)
        if isinstance(op, ScanOp):
            # the scan's loop; its updates (attached at it) store its rows (scan.py)
            iv = op.scan_axis
            return self.loop(stage, iv, sb.extents[iv], self.attach_here(stage, iv, n.Seq(())))
        to_loops = {iv.var: e for iv, e in sb.root_expr.items()}
        indices = tuple(sb.root_expr[iv] for iv in op.axis)
        _check_segments(stage)
        single = {leaf.var: n.IntImm("int64", 0) for leaf in stage.leaf_iter_vars
                  if isinstance(sb.extents.get(leaf), n.IntImm) and sb.extents[leaf].value == 1}
        bodies = [_recovered_rows(self.bounds, substitute(b, to_loops), single)
                  for b in expanded_bodies(self.s, stage)]
        outputs = op.outputs

        guards = list(sb.predicates)
        store_guards = []
        if stage.store_predicate is not None:
            threads = {thread.var: iv.var for iv, thread in stage.bound_thread.items()}
            store_guards.append(substitute(stage.store_predicate, {**to_loops, **threads}))
        if stage.attach_type == "scope":
            positions = _segment_positions(self.bounds)
            for iv, idx in zip(op.axis, indices):
                if repr(Simplifier().visit(substitute(idx, single))) in positions:
                    continue   # a segment's position lies in its level (a checked structure)
                guards.append(n.And(n.GE(idx, n.IntImm("int64", 0)), n.LT(idx, iv.dom.extent)))

        leaves = stage.leaf_iter_vars
        reduce_pos = next((p for p, iv in enumerate(leaves) if iv.kind == "reduce"), None)
        _check_shifted_splits(stage, leaves, reduce_pos)
        if isinstance(bodies[0], n.Reduce):
            red = bodies[0]
            update = _guard(store_guards, _combine(outputs, indices, red))
            init = n.seq(*[n.ProducerStore(t, ident, indices)
                           for t, ident in zip(outputs, red.combiner.identity)])
        else:
            update = n.seq(*[n.ProducerStore(t, b, indices) for t, b in zip(outputs, bodies)])
            update = _guard(store_guards, update)
            init = None
        if init is not None and reduce_pos is None:
            raise BuildError(f"stage {stage.name!r}: a reduction without reduction loops")
        if init is not None and _thread_reduce_axes(stage):
            # a reduction across GPU threads: the nest stops at the spatial loops
            update = _cross_thread_reduction(stage, sb.extents, leaves, reduce_pos, red, outputs,
                                             indices, guards, store_guards,
                                             lambda iv, body: self.attach_here(stage, iv, body))
            init, guards = None, []
            leaves, reduce_pos = leaves[:reduce_pos], None

        init_pos, first_iteration = _init_position(leaves, reduce_pos)
        if stage.tensorized and reduce_pos is not None:
            # an intrinsic initializes whole tiles: once, before the reduction loops
            init_pos, first_iteration = reduce_pos, None
        empty_domain = None
        if init is not None and first_iteration is not None:
            empty_domain = _any_empty([sb.extents[iv] for iv in leaves[:init_pos]
                                       if iv.kind == "reduce"])
        reduce_vars = {iv.var for iv in leaves if iv.kind == "reduce"}
        spatial_guards = [g for g in guards if not (set(free_vars(g)) & reduce_vars)]
        placed = _place_predicates(guards, leaves)
        placed_spatial = _place_predicates(spatial_guards, leaves)

        def nest(p: int, innermost: n.Stmt, placement, with_attach: bool, only_spatial=False):
            if p == len(leaves):
                return innermost
            iv = leaves[p]
            if only_spatial and iv.kind == "reduce":
                return nest(p + 1, innermost, placement, with_attach, only_spatial)
            if iv in stage.tensorized:
                _check_tensorizable(stage, iv, leaves[p:])
                inner_leaves = [x for x in leaves[p:] if not (only_spatial and x.kind == "reduce")]
                if not self._provably_true([g for q in range(p, len(leaves))
                                            for g in placement.get(q, [])], stage):
                    from ..errors import ScheduleError
                    raise ScheduleError(f"tensorize of stage {stage.name!r} at {iv.name!r}: "
                                        "the tiles must be whole (a guard falls inside them; "
                                        "make the extents multiples of the tile)")
                return lower_tensorized(stage, inner_leaves, sb.extents, bodies, outputs,
                                        indices, stage.tensorized[iv],
                                        "init" if innermost is init else "body")
            inner = nest(p + 1, innermost, placement, with_attach, only_spatial)
            inner = _guard(placement.get(p, []), inner)
            if with_attach:
                inner = self.attach_here(stage, iv, inner)
                inner = n.seq(*_prefetches(stage, iv, leaves[p + 1:], sb, bodies), inner)
            loop = self.loop(stage, iv, sb.extents[iv], inner)
            if init is not None and p == init_pos and with_attach:
                init_nest = nest(p, init, placed_spatial, False, only_spatial=True)
                if first_iteration is not None:
                    init_nest = n.IfThenElse(first_iteration, init_nest)
                loop = n.seq(init_nest, loop)
            if empty_domain is not None and p == reduce_pos and with_attach:
                # The init sits inside reduction loops: with an empty reduction domain
                # it would never run, so the identity is stored here instead.
                empty_init = nest(p, init, placed_spatial, False, only_spatial=True)
                loop = n.seq(n.IfThenElse(empty_domain, empty_init), loop)
            return loop

        top = nest(0, update, placed, True)
        return _guard(placed.get(-1, []), top)

    def _provably_true(self, guards, stage) -> bool:
        """Whether every guard holds for all values of the loops of ``stage`` and of the
        stages it is computed in (so a tensorized tile needs none of them)."""
        if not guards:
            return True
        from ..arith.simplify import Simplifier
        ranges, st = {}, stage
        while st is not None:
            for iv, ext in self.bounds.stages[st].extents.items():
                if isinstance(ext, n.IntImm):
                    ranges[iv.var] = (0, ext.value - 1)
            for iv, thread in st.bound_thread.items():
                ext = self.bounds.stages[st].extents.get(iv)
                if isinstance(ext, n.IntImm):
                    ranges[iv.var] = (0, ext.value - 1)
            st = st.attach_stage if st.attach_type == "scope" else None
        simp = Simplifier(ranges)
        return all(isinstance(c := simp.visit(g), n.IntImm) and c.value for g in guards)

    def loop(self, stage, iv, extent, body) -> n.Stmt:
        for key in reversed(stage.pragmas.get(iv, ())):
            body = n.Pragma(key, body)
        thread = stage.bound_thread.get(iv)
        if thread is not None:
            _check_thread_extent(stage, iv, extent, thread)
        if thread is not None and thread.kind.startswith("vthread"):
            # a virtual thread: the iterations interleave in one real thread (TVM);
            # inject_virtual_threads does that after flatten_storage
            return n.For(iv.var, n.IntImm("int64", 0), extent, "vthread", body, thread.kind)
        balance = _balance(stage, iv)
        if thread is not None:
            return n.For(iv.var, n.IntImm("int64", 0), extent, "thread_binding", body,
                         thread.kind, balance)
        kind = stage.loop_kind.get(iv, "serial")
        return n.For(iv.var, n.IntImm("int64", 0), extent, kind, body, None, balance)

    def attach_here(self, stage, iv, body: n.Stmt) -> n.Stmt:
        inner = self.attached.get((id(stage), id(iv)))
        if not inner:
            return body
        body = n.seq(*[self.stage_nest(st) for st in inner], body)
        for st in reversed(inner):
            body = self.realize(st, body)
        return body


def _balance(stage, iv):
    """The weight of iteration ``iv`` of a balanced loop (``parallel`` or ``bind`` with
    ``balance=``): ``weights[iv]``, or for chunks of ``stride`` iterations the weight of
    the chunk's first, ``weights[min(iv * stride, last)]`` (in bounds for ``iv`` up to
    the loop's end, where the binary search of the shares reads it)."""
    entry = stage.balanced.get(iv)
    if entry is None:
        return None
    weights, stride, last = entry
    if stride == 1:
        return n.TensorRead(weights, (iv.var,))
    return n.TensorRead(weights, (n.Min(n.Mul(iv.var, n.IntImm("int64", stride)), last),))


def _check_tensorizable(stage, iv, inner):
    """What an intrinsic call cannot keep of the loops it replaces: a store predicate
    (it stores whole tiles), or a stage computed inside them (it has no loops to put
    one in)."""
    from ..errors import ScheduleError
    where = f"tensorize of stage {stage.name!r} at {iv.name!r}"
    if stage.store_predicate is not None:
        raise ScheduleError(f"{where}: the stage has a store predicate, which an "
                            "intrinsic storing whole tiles cannot keep")
    for other in stage.schedule.stages:
        if other.attach_type == "scope" and other.attach_stage is stage and \
                other.attach_ivar in inner:
            raise ScheduleError(f"{where}: stage {other.name!r} is computed at "
                                f"{other.attach_ivar.name!r}, inside the tensorized loops; "
                                "compute it at a loop outside them")


def _check_thread_extent(stage, iv, extent, thread):
    """A loop bound to ``td.thread_axis((0, k), tag)`` may be narrower than ``k`` (it is
    guarded), not wider: the threads would not cover it."""
    declared = thread.dom.extent
    if isinstance(declared, n.IntImm) and isinstance(extent, n.IntImm) \
            and extent.value > declared.value:
        raise BuildError(f"stage {stage.name!r}: loop {iv.name!r} has extent {extent.value} "
                         f"but is bound to {thread.kind} declared with extent "
                         f"{declared.value}")


def _thread_reduce_axes(stage) -> list:
    return [iv for iv in stage.leaf_iter_vars if iv.kind == "reduce"
            and iv in stage.bound_thread and stage.bound_thread[iv].kind.startswith("threadIdx")]


def _cross_thread_reduction(stage, extents_of, leaves, reduce_pos, red, outputs, indices, guards,
                            store_guards, attach):
    """``bind`` of a reduction axis to ``threadIdx``: each thread accumulates its share
    (the serial reduction loops) in a local register, the block combines the threads'
    partial results (``AllReduce``: warp shuffles, shared memory across warps), and the
    first thread of each group stores the result. Every thread reaches the AllReduce;
    the guards cover only the accumulation and the store.

    The thread loops enclose the serial ones here whatever their order in the leaves, so
    ``attach(iv, body)`` places the stages computed at reduction loop ``iv`` (TVM's
    ``s[BF].compute_at(s[B], tx)`` after ``rfactor``) where every loop outside ``iv``
    is already open: at the top of the innermost serial loop outside ``iv``, or at the
    top of the thread loops when there is none."""
    from ..errors import ScheduleError
    if any(iv.kind != "reduce" for iv in leaves[reduce_pos:]):
        raise ScheduleError(f"stage {stage.name!r}: a reduction bound to GPU threads needs "
                            "every data-parallel loop outside the reduction loops")
    bound = [iv for iv in leaves[reduce_pos:] if iv in stage.bound_thread]
    serial = [iv for iv in leaves[reduce_pos:] if iv not in stage.bound_thread]
    tags = tuple(stage.bound_thread[iv].kind for iv in bound)
    if tags != ("threadIdx.x",):
        raise ScheduleError(f"stage {stage.name!r}: a cross-thread reduction binds exactly one "
                            f"reduction axis, to threadIdx.x; got {list(tags) or 'none'}")
    comb = red.combiner
    dtypes = [t.dtype for t in outputs]
    acc = [n.Buffer(f"{t.name}.partial", d, (n.IntImm("int64", 1),), "local")
           for t, d in zip(outputs, dtypes)]
    res = [n.Buffer(f"{t.name}.red", d, (n.IntImm("int64", 1),), "local")
           for t, d in zip(outputs, dtypes)]
    zero = n.IntImm("int64", 0)
    init = n.seq(*[n.Store(b, ident, zero) for b, ident in zip(acc, comb.identity)])
    mapping = {}
    for k, b in enumerate(acc):
        mapping[comb.lhs[k]] = n.Load(b.dtype, b, zero)
        mapping[comb.rhs[k]] = red.source[k]
    new = [substitute(r, mapping) for r in comb.result]
    temps = [n.Var(f"{b.name}.new", b.dtype) for b in acc]
    update = n.seq(*[n.Store(b, v, zero) for b, v in zip(acc, temps)])
    for v, value in reversed(list(zip(temps, new))):
        update = n.LetStmt(v, value, update)
    if not (isinstance(red.condition, n.IntImm) and red.condition.value == 1):
        update = n.IfThenElse(red.condition, update)
    update = _guard(guards, update)
    reduce_leaves = leaves[reduce_pos:]

    def attach_inside(outer):
        """``outer`` (a serial loop, or None for the top) and the thread loops after it
        in the leaves up to the next serial loop: the loops whose attached stages go at
        the top of ``outer``'s body, outermost first."""
        start = reduce_leaves.index(outer) if outer is not None else -1
        ivs = [] if outer is None else [outer]
        for iv in reduce_leaves[start + 1:]:
            if iv in serial:
                break
            ivs.append(iv)
        return ivs

    def attached(ivs, body):
        for iv in reversed(ivs):   # the outermost loop's stages run first
            body = attach(iv, body)
        return body

    for iv in reversed(serial):
        kind = stage.loop_kind.get(iv, "serial")
        update = n.For(iv.var, zero, extents_of[iv], kind, attached(attach_inside(iv), update))
    reduce_vars = {iv.var for iv in leaves[reduce_pos:]}
    spatial_guards = [g for g in guards if not (set(free_vars(g)) & reduce_vars)]
    first = [n.EQ(iv.var, zero) for iv in bound]
    store = n.seq(*[n.ProducerStore(t, n.Load(b.dtype, b, zero), indices)
                    for t, b in zip(outputs, res)])
    store = _guard(spatial_guards + first + store_guards, store)
    extents = tuple(extents_of[iv] for iv in bound)
    body = n.seq(init, update,
                 n.AllReduce(comb, tuple(n.Load(b.dtype, b, zero) for b in acc), tuple(res),
                             tags, extents),
                 store)
    body = attached(attach_inside(None), body)
    for b in reversed(acc + res):
        body = n.Allocate(b, n.IntImm("int64", 1), body)
    for iv in reversed(bound):
        _check_thread_extent(stage, iv, extents_of[iv], stage.bound_thread[iv])
        body = n.For(iv.var, zero, extents_of[iv], "thread_binding", body,
                     stage.bound_thread[iv].kind)
    return body


def _init_position(leaves, reduce_pos):
    """Where a reduction's init goes: before the trailing run of reduction loops (the
    ones the spatial loops inside follow), under "the reduction loops outside it are at
    their first iteration". With blocking (``ko, mco, mo, ki, mi``) that initializes each
    tile right before its first update, instead of a separate sweep over the whole
    output; without, it is the usual place before the first reduction loop."""
    if reduce_pos is None:
        return None, None
    pos = len(leaves)
    while pos > 0 and leaves[pos - 1].kind != "reduce":
        pos -= 1
    while pos > 0 and leaves[pos - 1].kind == "reduce":
        pos -= 1
    if pos <= reduce_pos:
        return reduce_pos, None
    cond = None
    for iv in leaves[:pos]:
        if iv.kind == "reduce":
            first = n.EQ(iv.var, n.IntImm("int64", 0))
            cond = first if cond is None else n.And(cond, first)
    return pos, cond


def _any_empty(extents):
    """``extent <= 0`` for any of ``extents`` (constant-folded by the simplifier when the
    extents are known)."""
    cond = None
    for ext in extents:
        c = n.LE(ext, n.IntImm(ext.dtype, 0))
        cond = c if cond is None else n.Or(cond, c)
    return cond


def _prefetches(stage, iv, inner_leaves, sb, bodies) -> list:
    """``s[T].prefetch(tensor, iv, offset)``: prefetch hints, one per cache line, for the
    box of ``tensor`` the stage reads ``offset`` iterations of ``iv`` later (the union
    over the inner loops' ranges)."""
    out = []
    for tensor, offset in stage.prefetches.get(iv, ()):
        reads = []
        for b in bodies:
            _TensorReads(tensor, reads).visit(b)
        if not reads:
            continue
        relax = {leaf.var: (n.IntImm("int64", 0), n.Sub(sb.extents[leaf], n.IntImm("int64", 1)))
                 for leaf in inner_leaves}
        shift = {iv.var: n.Add(iv.var, n.IntImm("int64", offset))}
        box, gathered = None, False
        for idx in reads:
            dims = [eval_interval(substitute(i, shift), relax) for i in idx]
            if any(d is None for d in dims) or (box is not None and gathered):
                box = None
                break
            if any(reads_tensor(d[0]) or reads_tensor(d[1]) for d in dims):
                if len(reads) > 1:   # one gathered read at most: its row, not a union
                    box = None
                    break
                gathered = True
            box = dims if box is None else [(n.Min(a[0], b[0]), n.Max(a[1], b[1]))
                                             for a, b in zip(box, dims)]
        if box is None:
            continue
        if gathered:
            # a row picked by data (SpMM's B[crd[q], :]): its index is read ``offset``
            # iterations ahead, clamped to the loop's last iteration so that the read
            # stays inside the loop's range (no branch: the hint is only redundant there)
            last = n.Sub(sb.extents[iv], n.IntImm("int64", 1))
            ahead = {iv.var: n.Min(n.Add(iv.var, n.IntImm("int64", offset)), last)}
            box = None
            for idx in reads:
                box = [eval_interval(substitute(i, ahead), relax) for i in idx]
        out.append(_prefetch_box(tensor, box))
    return out


def _prefetch_box(tensor, box) -> n.Stmt:
    per_line = max(1, 64 // max(1, dt.bits(tensor.dtype) // 8))
    loop_vars = [n.Var(f"{tensor.name}.pf{d}") for d in range(len(box))]
    idx = [lo + v for (lo, _), v in zip(box[:-1], loop_vars[:-1])]
    last_lo, last_hi = box[-1]
    idx.append(n.Add(last_lo, n.Mul(loop_vars[-1], n.IntImm("int64", per_line))))
    body = n.Evaluate(n.Call("int32", "prefetch", (n.TensorRead(tensor, tuple(idx)),)))
    lines = n.FloorDiv(n.Add(n.Sub(last_hi, last_lo), n.IntImm("int64", per_line)),
                       n.IntImm("int64", per_line))
    body = n.For(loop_vars[-1], n.IntImm("int64", 0), lines, "serial", body)
    for v, (lo, hi) in reversed(list(zip(loop_vars[:-1], box[:-1]))):
        body = n.For(v, n.IntImm("int64", 0), n.Add(n.Sub(hi, lo), n.IntImm("int64", 1)),
                     "serial", body)
    return body


class _TensorReads(Visitor):
    def __init__(self, tensor, out):
        self.tensor, self.out = tensor, out

    def visit_TensorRead(self, node):
        if node.tensor.op is self.tensor.op and node.tensor.value_index == \
                self.tensor.value_index:
            self.out.append(node.indices)
        self.generic_visit(node)


def _check_segments(stage):
    """The runs loop of a ``segment`` encloses its positions loop (whose extent it
    gives)."""
    from ..schedule.relations import Segment
    leaves = stage.leaf_iter_vars
    for r in stage.relations:
        if isinstance(r, Segment) and r.outer in leaves and r.inner in leaves and \
                leaves.index(r.outer) > leaves.index(r.inner):
            raise ScheduleError(f"stage {stage.name!r}: the runs loop {r.outer.name!r} of "
                                f"a segment must enclose its positions loop "
                                f"{r.inner.name!r}")


def _segment_positions(bounds) -> dict:
    """``repr(pos[run] + q)`` -> the runs axis' value, for every segment's loops."""
    from ..schedule.relations import segment_position
    return {repr(segment_position(r, run)): (r, run) for sb in bounds.stages.values()
            for r, run in sb.segment_runs.items()}


def _recovered_rows(bounds, body, single: dict):
    """Under ``segment(p, pos)`` (of this stage, or of the stage it is computed in):
    a read of the row ids of ``pos``'s level (a placeholder whose op has
    ``row_ids_of``: ``SparseTensor.row_ids``) at ``pos[r] + q`` — position ``q`` of run
    ``r`` — is ``r``, the runs loop itself. ``single``: the stage's loops of one
    iteration (a stage computed at the positions loop), at 0.

    Any ``q`` is taken as inside the run: the consumer reads positions of run ``r``
    only (its positions loop is the run's), so where a stage computed inside the run's
    iteration covers more (a block of positions past the run's end: SDDMM's dot
    products by 16), those values are never read."""
    from ..schedule.relations import _pos_at
    starts = {(id(r.pos), repr(Simplifier().visit(_pos_at(r, run)))): run
              for r, run in _segment_positions(bounds).values()}
    if not starts:
        return body
    return _RowsOfRuns(starts, single).visit(body)


class _RowsOfRuns(Mutator):
    def __init__(self, starts, single):
        self.starts, self.single = starts, single
        self.simplifier = Simplifier()

    def visit_TensorRead(self, node):
        pos = getattr(node.tensor.op, "row_ids_of", None)
        if pos is not None and len(node.indices) == 1:
            index = self.simplifier.visit(substitute(node.indices[0], self.single))
            for term in _terms(index):
                run = self.starts.get((id(pos), repr(term)))
                if run is not None:
                    return n.Cast(node.tensor.dtype, run) \
                        if run.dtype != node.tensor.dtype else run
        return self.generic_visit(node)


def _terms(e) -> list:
    """The terms of a sum (``e`` itself if it is none)."""
    if isinstance(e, n.Add):
        return _terms(e.a) + _terms(e.b)
    return [e]


def _check_shifted_splits(stage, leaves, reduce_pos):
    """A shift_inwards block recomputes outputs of the previous block: fine when each block
    initializes and reduces its own outputs, wrong if a reduction loop encloses it."""
    from ..errors import ScheduleError
    from ..schedule.relations import Split
    for r in stage.relations:
        if not (isinstance(r, Split) and r.tail == "shift_inwards"):
            continue
        if r.outer not in leaves:
            raise ScheduleError(f"stage {stage.name!r}: the outer axis {r.outer.name!r} of a "
                                "shift_inwards split cannot be split or fused further")
        if reduce_pos is not None and leaves.index(r.outer) > reduce_pos:
            raise ScheduleError(f"stage {stage.name!r}: reduction loop "
                                f"{leaves[reduce_pos].name!r} encloses the shift_inwards "
                                f"split {r.outer.name!r}; overlapped outputs would be "
                                "accumulated twice")


def _combine(outputs, indices, red: n.Reduce) -> n.Stmt:
    comb = red.combiner
    mapping = {}
    for k, t in enumerate(outputs):
        mapping[comb.lhs[k]] = n.TensorRead(t, indices)
        mapping[comb.rhs[k]] = red.source[k]
    if len(outputs) == 1:
        body = n.ProducerStore(outputs[0], substitute(comb.result[0], mapping), indices)
    else:
        temps = [n.Var(f"{t.name}.new", t.dtype) for t in outputs]
        body = n.seq(*[n.ProducerStore(t, v, indices) for t, v in zip(outputs, temps)])
        for v, r in reversed(list(zip(temps, comb.result))):
            body = n.LetStmt(v, substitute(r, mapping), body)
    if not (isinstance(red.condition, n.IntImm) and red.condition.value == 1):
        body = n.IfThenElse(red.condition, body)
    return body


def _place_predicates(preds, leaves) -> dict:
    """Position of the innermost leaf loop each predicate depends on (-1: none)."""
    pos_of = {iv.var: p for p, iv in enumerate(leaves)}
    placed: dict = {}
    for cond in preds:
        positions = [pos_of[v] for v in free_vars(cond) if v in pos_of]
        placed.setdefault(max(positions, default=-1), []).append(cond)
    return placed


def _guard(conds, body: n.Stmt) -> n.Stmt:
    if not conds:
        return body
    cond = conds[0]
    for c in conds[1:]:
        cond = n.And(cond, c)
    return n.IfThenElse(cond, body)
