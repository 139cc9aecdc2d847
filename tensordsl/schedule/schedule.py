"""Schedules: how to compute each stage of a tensor-expression graph.

``s = td.create_schedule(C.op)`` makes one ``Stage`` per operation; the primitives on
``s[C]`` (split, fuse, reorder, tile, vectorize, unroll, parallel, bind, compute_at,
compute_inline, compute_root, storage_align, double_buffer, pragma) change only that
stage's loop structure and placement; ``s.cache_read``, ``s.cache_write`` and
``s.rfactor`` add stages (see ``rewrite.py``). Every primitive checks its request at
once and raises ``ScheduleError`` naming the stage and the axis, and appends a step to
``s.trace`` so the schedule can be replayed by name (``trace.py``).
"""
from __future__ import annotations

from ..errors import ScheduleError
from ..ir import nodes as n
from ..ir.op import const
from ..te.api import integral
from ..te.tensor import ComputeOp, ExternOp, Operation, PlaceholderOp, ScanOp, Tensor
from .relations import Fuse, Segment, Split
from .trace import Step

LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled")


class Stage:
    """The schedule of one operation: its leaf loop order, relations and placement."""

    def __init__(self, op: Operation, schedule: "Schedule"):
        self.op = op
        self.origin_op = op
        self.schedule = schedule
        self.is_output = False
        self.scope = "global"
        self.attach_type = "root"       # root | inline | scope
        self.attach_stage: Stage | None = None
        self.attach_ivar: n.IterVar | None = None
        self.reset_axes()
        self.align: dict[int, tuple[int, int]] = {}   # dimension -> (factor, offset)
        self.is_double_buffered = False
        self.pipeline_stages = 0          # > 0: copied with cp.async (``pipeline``)
        self.pipeline_tma = False         # ... on sm_90 and later by the TMA (``pipeline``)
        self.is_swizzled = False          # 16-byte chunks XOR-permuted (``swizzle``)
        self.store_predicate: n.Expr | None = None

    def reset_axes(self):
        axes = list(getattr(self.op, "axis", ())) + list(getattr(self.op, "reduce_axis", ()))
        if isinstance(self.op, ScanOp):
            axes = [self.op.scan_axis]
        self.all_iter_vars: list[n.IterVar] = list(axes)
        self.leaf_iter_vars: list[n.IterVar] = list(axes)
        self.relations: list = []
        self.loop_kind: dict[n.IterVar, str] = {}
        self.bound_thread: dict[n.IterVar, n.IterVar] = {}
        self.pragmas: dict[n.IterVar, list[str]] = {}
        self.llvm_imports: list[str] = []     # pragma "import_llvm": LLVM IR to link in
        # balanced axis -> (weights, stride, last): iteration k weighs
        # weights[min(k * stride, last)] (``parallel(balance=)``, ``bind(balance=)``)
        self.balanced: dict = {}
        self.prefetches: dict[n.IterVar, list[tuple]] = {}  # axis -> [(tensor, offset)]
        self.tensorized: dict[n.IterVar, object] = {}        # axis -> TensorIntrin

    @property
    def name(self) -> str:
        return self.op.name

    def __repr__(self):
        return f"Stage({self.name})"

    # ------------------------------------------------------------ checks
    def _fail(self, msg: str):
        raise ScheduleError(f"stage {self.name!r}: {msg}")

    def _check_compute(self, primitive: str):
        if isinstance(self.op, PlaceholderOp):
            self._fail(f"{primitive}: {self.name} is a placeholder (an input); only computed "
                       "stages can be scheduled")

    def _check_leaf(self, iv, primitive: str) -> n.IterVar:
        self._check_compute(primitive)
        if not isinstance(iv, n.IterVar):
            self._fail(f"{primitive}: expected an axis (IterVar), got {iv!r}")
        if iv not in self.leaf_iter_vars:
            where = ("was split or fused away" if iv in self.all_iter_vars
                     else "does not belong to this stage")
            self._fail(f"{primitive}: axis {iv.name!r} is not a loop of this stage (it {where}); "
                       f"loops are {[v.name for v in self.leaf_iter_vars]}")
        return iv

    def _record(self, kind: str, **args):
        self.schedule.trace.append(Step(kind, self.name, args))

    def _new_axis(self, name: str, kind: str, extent) -> n.IterVar:
        from ..arith.simplify import simplify_expr
        iv = n.IterVar(n.Var(name), n.Range(const(0), simplify_expr(extent)), kind)
        self.all_iter_vars.append(iv)
        return iv

    # ------------------------------------------------------------ loop structure
    def split(self, parent: n.IterVar, factor: int | None = None,
              nparts: int | None = None, tail: str = "guard") -> tuple[n.IterVar, n.IterVar]:
        """Split a loop in two (Halide/TVM ``split``).

        ``for i in range(n)`` → ``for i.outer in range(ceil(n/f)): for i.inner in range(f)``
        with ``i = i.outer*f + i.inner``; when ``f`` does not divide ``n`` the body is
        guarded by ``i < n``. Give exactly one of ``factor`` (inner extent) or ``nparts``
        (outer extent), a positive int.

        ``tail="shift_inwards"`` (Halide's TailStrategy::ShiftInwards, with ``factor``):
        the last block starts at ``n - f`` instead, overlapping the previous one, so no
        guard is needed; the overlapped elements are computed twice (same values). The
        extent must be at least ``f``, and no reduction loop may enclose the split.
        """
        self._check_leaf(parent, "split")
        if (factor is None) == (nparts is None):
            self._fail(f"split of {parent.name!r}: give exactly one of factor= or nparts=")
        factor, nparts = integral(factor), integral(nparts)
        amount = factor if factor is not None else nparts
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            self._fail(f"split of {parent.name!r}: factor/nparts must be a positive int, "
                       f"got {amount!r}")
        ext = parent.dom.extent
        if tail not in ("guard", "shift_inwards"):
            self._fail(f"split of {parent.name!r}: tail must be 'guard' or 'shift_inwards', "
                       f"got {tail!r}")
        if tail == "shift_inwards":
            if factor is None or parent.kind == "reduce":
                self._fail(f"split of {parent.name!r}: shift_inwards needs factor= and a "
                           "data-parallel axis (a reduction would count elements twice)")
            if not isinstance(ext, n.IntImm) or ext.value < factor:
                self._fail(f"split of {parent.name!r}: shift_inwards needs a constant extent "
                           f">= factor {factor}, got {ext}")
        if factor is not None:
            outer_ext, inner_ext = (ext + (factor - 1)) // factor, const(factor)
        else:
            outer_ext, inner_ext = const(nparts), (ext + (nparts - 1)) // nparts
        outer = self._new_axis(f"{parent.name}.outer", parent.kind, outer_ext)
        inner = self._new_axis(f"{parent.name}.inner", parent.kind, inner_ext)
        self.relations.append(Split(parent, outer, inner, factor, nparts, tail))
        pos = self.leaf_iter_vars.index(parent)
        self.leaf_iter_vars[pos:pos + 1] = [outer, inner]
        self._record("split", axis=parent.name, factor=factor, nparts=nparts, tail=tail)
        return outer, inner

    def segment(self, parent: n.IterVar, pos) -> tuple[n.IterVar, n.IterVar]:
        """Iterate the stored positions ``parent`` of a compressed level by the runs of
        its ``pos`` (TACO's coordinate recovery): ``for p in range(nnz)`` →
        ``for r in range(len(pos) - 1): for p.pos in range(pos[r + 1] - pos[r])``, with
        ``p = pos[r] + p.pos``; a read of the level's ``row_ids`` at ``p`` becomes ``r``.
        For a compute over a CSR operand's positions (SDDMM): its rows, each row's
        entries. ``parent`` is a data-parallel axis of the stage's own, not split,
        ranging over all of the level's positions (``pos[0] = 0``, ``pos[-1]`` its
        extent, as a checked structure has); the runs loop must enclose the positions
        loop."""
        self._check_leaf(parent, "segment")
        if parent not in self.op.axis or parent.kind == "reduce":
            self._fail(f"segment of {parent.name!r}: expected a data-parallel axis of "
                       "the stage's own, not split")
        if getattr(pos, "ndim", None) != 1 or not str(pos.dtype).startswith("int"):
            self._fail(f"segment of {parent.name!r}: pos must be a 1-d integer tensor "
                       f"(a compressed level's, e.g. A.pos[1]), got {pos!r}")
        outer = self._new_axis(f"{parent.name}.run", "data_par", pos.shape[0] - 1)
        inner = self._new_axis(f"{parent.name}.pos", "data_par", parent.dom.extent)
        self.relations.append(Segment(parent, outer, inner, pos))
        at = self.leaf_iter_vars.index(parent)
        self.leaf_iter_vars[at:at + 1] = [outer, inner]
        self._record("segment", axis=parent.name, pos=pos.name)
        return outer, inner

    def fuse(self, *axes: n.IterVar) -> n.IterVar:
        """Fuse adjacent loops into one (TVM ``fuse``): ``for i: for j`` →
        ``for i.j.fused in range(ni*nj)`` with ``i = f // nj, j = f % nj``."""
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        if not axes:
            self._fail("fuse: give at least one axis")
        for iv in axes:
            self._check_leaf(iv, "fuse")
        positions = [self.leaf_iter_vars.index(iv) for iv in axes]
        if positions != list(range(positions[0], positions[0] + len(axes))):
            self._fail(f"fuse: axes {[iv.name for iv in axes]} must be adjacent loops, "
                       "outermost first")
        kinds = {iv.kind for iv in axes}
        if len(kinds) > 1:
            self._fail(f"fuse: cannot fuse a reduction axis with a data-parallel axis "
                       f"({[iv.name for iv in axes]})")
        fused = axes[0]
        for inner in axes[1:]:
            outer = fused
            fused = self._new_axis(f"{outer.name}.{inner.name}.fused", outer.kind,
                                   outer.dom.extent * inner.dom.extent)
            self.relations.append(Fuse(outer, inner, fused))
        pos = positions[0]
        self.leaf_iter_vars[pos:pos + len(axes)] = [fused]
        self._record("fuse", axes=[iv.name for iv in axes])
        return fused

    def reorder(self, *axes: n.IterVar):
        """Reorder loops (TVM ``reorder``): the given loops take, in the given order, the
        positions they occupied together; the other loops stay in place."""
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        for iv in axes:
            self._check_leaf(iv, "reorder")
        if len(set(map(id, axes))) != len(axes):
            self._fail(f"reorder: an axis appears twice in {[iv.name for iv in axes]}")
        positions = sorted(self.leaf_iter_vars.index(iv) for iv in axes)
        for pos, iv in zip(positions, axes):
            self.leaf_iter_vars[pos] = iv
        self._record("reorder", axes=[iv.name for iv in axes])

    def tile(self, x_parent, y_parent, x_factor: int, y_factor: int):
        """Split two loops and order them ``xo, yo, xi, yi`` (TVM ``tile``)."""
        xo, xi = self.split(x_parent, factor=x_factor)
        yo, yi = self.split(y_parent, factor=y_factor)
        self.reorder(xo, yo, xi, yi)
        return xo, yo, xi, yi

    def _annotate(self, iv, kind: str):
        self._check_leaf(iv, kind)
        if kind == "vectorized" and iv.kind == "reduce" and self._sums():
            pass   # a sum: the lanes are added as a tree at the end (lower/vectorize.py)
        elif kind in ("vectorized", "parallel") and iv.kind == "reduce":
            verb = "vectorize" if kind == "vectorized" else "parallelize"
            self._fail(f"cannot {verb} reduction axis {iv.name!r}: its iterations "
                       "accumulate into the same element (use rfactor first)")
        if iv in self.bound_thread:
            self._fail(f"axis {iv.name!r} is bound to a GPU thread index already")
        self.loop_kind[iv] = kind

    def _sums(self) -> bool:
        body = getattr(self.op, "body", None)
        return bool(body) and isinstance(body[0], n.Reduce) and \
            body[0].combiner.name == "sum" and len(body) == 1

    def vectorize(self, iv: n.IterVar):
        """Run a loop's iterations as SIMD lanes (Halide/TVM ``vectorize``). The loop's
        extent must be a constant; a body that cannot be vectorized stays a loop. A
        reduction axis may be vectorized where the reduction is a sum: its lanes are
        then added as a tree (in another order than one after another)."""
        self._annotate(iv, "vectorized")
        self._record("vectorize", axis=iv.name)

    def unroll(self, iv: n.IterVar):
        """Replicate a constant-extent loop's body (Halide/TVM ``unroll``)."""
        self._annotate(iv, "unrolled")
        self._record("unroll", axis=iv.name)

    def parallel(self, iv: n.IterVar, balance=None):
        """Run a loop's iterations on the CPU's threads (Halide/TVM ``parallel``), an
        equal count each; with ``balance`` — a 1-d tensor of nondecreasing weights, one
        more than the axis' iterations, such as a CSR operand's ``pos`` — an equal part
        of the weight each (TACO's nonzero-balanced split: skewed rows spread evenly).
        ``balance`` needs an axis of the stage's own, not split."""
        self._annotate(iv, "parallel")
        if balance is not None:
            self.balanced[iv] = self._balance_weights(iv, balance, "parallel", split=False)
        self._record("parallel", axis=iv.name)   # (a replayed trace splits evenly)

    def bind(self, iv: n.IterVar, thread: n.IterVar, balance=None):
        """Map a loop to a GPU index (TVM ``bind``):
        ``s[C].bind(bx, td.thread_axis("blockIdx.x"))``.

        A reduction axis may be bound to ``threadIdx.x`` (the block's threads combine
        their partial results), never to ``blockIdx``: blocks cannot combine results,
        each would initialize the output and accumulate into it unsynchronized. Split
        the reduction and ``rfactor`` the outer part to a data-parallel axis instead.

        ``balance`` (``blockIdx`` only): a 1-d tensor of nondecreasing weights, one more
        than the iterations of the axis, such as a CSR operand's ``pos``: the blocks then
        share the loop's iterations by equal parts of the weight (TACO's nonzero split on
        a GPU), as many blocks as iterations, each running its share as a loop. ``iv``
        is an axis of the stage's own, or the outer part of ``split(axis, factor=f)``:
        then the chunks of ``f`` iterations are shared, ``len / f`` blocks."""
        self._check_leaf(iv, "bind")
        if not isinstance(thread, n.IterVar) or "." not in thread.kind and thread.kind != "vthread":
            self._fail(f"bind of {iv.name!r}: expected td.thread_axis(...), got {thread!r}")
        if iv in self.loop_kind:
            self._fail(f"bind of {iv.name!r}: the axis is already {self.loop_kind[iv]}")
        if iv.kind == "reduce" and thread.kind.startswith("blockIdx"):
            self._fail(f"bind of reduction axis {iv.name!r} to {thread.kind}: blocks cannot "
                       "combine partial results (each would overwrite the output); bind it "
                       "to threadIdx.x, or s.rfactor the reduction and bind the factored "
                       "axis")
        if balance is not None:
            if not thread.kind.startswith("blockIdx"):
                self._fail(f"bind of {iv.name!r} with balance: only the blocks (blockIdx) "
                           f"share a loop by weight, not {thread.kind}")
            self.balanced[iv] = self._balance_weights(iv, balance, "bind", split=True)
        self.bound_thread[iv] = thread
        # (a replayed trace splits evenly, as for parallel)
        self._record("bind", axis=iv.name, thread=thread.kind)

    def _balance_weights(self, iv: n.IterVar, balance, primitive: str, split: bool):
        """``(weights, stride, last)`` of a balanced loop: ``balance`` checked to be a 1-d
        tensor with one weight more than the iterations of ``iv``'s root axis; ``iv``
        that axis (stride 1) or, where ``split``, the outer part of ``split(axis,
        factor=f)`` (stride f: a chunk of f iterations weighs the weight of its first;
        a chunk shifted inwards, ``tail="shift_inwards"``, about that)."""
        from ..te.tensor import Tensor
        if not isinstance(balance, Tensor) or balance.ndim != 1:
            self._fail(f"{primitive}: balance must be a 1-d tensor of weights, got "
                       f"{balance!r}")
        root, stride = iv, 1
        runs = next((r for r in self.relations if isinstance(r, Segment) and r.outer is iv),
                    None)
        if runs is not None:      # the runs of a segment: one weight per run, and one more
            return balance, 1, runs.pos.shape[0] - 1
        if split and iv not in self.op.axis:
            rel = next((r for r in self.relations if isinstance(r, Split) and r.outer is iv
                        and r.factor is not None), None)
            if rel is not None:
                root, stride = rel.parent, rel.factor
        if root not in self.op.axis:
            allowed = " or the outer part of a split of one by factor=" if split else ""
            self._fail(f"{primitive}: balance needs one of the stage's own axes{allowed}, "
                       f"not {iv.name!r} (split or fused)")
        length, extent = balance.shape[0], root.dom.extent
        if isinstance(length, n.IntImm) and isinstance(extent, n.IntImm) and \
                length.value != extent.value + 1:
            self._fail(f"{primitive}: balance must hold {extent.value + 1} weights (one "
                       f"more than the {extent.value} iterations), got {length.value}")
        return balance, stride, extent

    def pragma(self, iv: n.IterVar, key: str, value=None):
        """Attach a hint to the body of loop ``iv`` (TVM ``pragma``); backends act on the
        keys they know and ignore the rest. The CPU backend knows ``"nontemporal"``:
        whole-vector stores to the kernel's tensor arguments inside the loop bypass the
        cache (streaming stores), for outputs too large to be read again from cache; the
        CUDA backend writes them with ``__stcs`` (evict first), and keeps a loop whose
        key is ``"no_unroll"`` rolled (``#pragma unroll 1``). ``"import_llvm"`` with
        LLVM IR text as ``value`` links that module into the CPU kernel (the functions a
        ``td.call_extern`` calls, TVM's way)."""
        self._check_leaf(iv, "pragma")
        if key == "import_llvm":
            if not isinstance(value, str) or not value.strip():
                self._fail(f"pragma 'import_llvm': value must be LLVM IR text, got "
                           f"{value!r}")
            self.llvm_imports.append(value)
        else:
            self.pragmas.setdefault(iv, []).append(str(key))
        if value is None:
            self._record("pragma", axis=iv.name, key=str(key))
        else:
            self._record("pragma", axis=iv.name, key=str(key), value=value)

    def prefetch(self, tensor, iv: n.IterVar, offset: int = 1):
        """At the top of each iteration of loop ``iv``, hint into the cache what this
        stage will read of ``tensor`` ``offset`` iterations later (TVM ``prefetch``).
        Hardware prefetchers stop at 4 KiB page boundaries; a row-wise operator whose
        rows are pages gains from fetching the next row while it works on this one."""
        self._check_leaf(iv, "prefetch")
        from ..te.tensor import Tensor
        if not isinstance(tensor, Tensor):
            self._fail(f"prefetch: expected a tensor, got {tensor!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 1:
            self._fail(f"prefetch: offset must be a positive int, got {offset!r}")
        try:
            producer = self.schedule[tensor]
        except ScheduleError:
            producer = None
        if producer is None or not self.schedule.consumes(self, producer):
            self._fail(f"prefetch: this stage does not read {tensor.name!r}")
        self.prefetches.setdefault(iv, []).append((tensor, offset))
        self._record("prefetch", axis=iv.name, tensor=tensor.name, offset=offset)

    # ------------------------------------------------------------ placement
    def compute_at(self, parent: "Stage", iv: n.IterVar):
        """Compute this stage inside loop ``iv`` of ``parent`` (Halide ``compute_at``),
        only the region that one iteration of ``iv`` reads. ``parent`` must read this
        stage, directly or through stages that are (by lowering) computed inside it."""
        self._check_compute("compute_at")
        if isinstance(self.op, ExternOp):
            self._fail("compute_at: an extern stage is one call over whole tensors; it is "
                       "computed at root")
        if not isinstance(parent, Stage):
            self._fail(f"compute_at: parent must be a stage (s[T]), got {parent!r}")
        if parent is self:
            self._fail("compute_at: a stage cannot be computed at its own loop")
        if self.is_output:
            self._fail("compute_at: an output of the schedule must be computed at root")
        if iv not in parent.all_iter_vars:
            self._fail(f"compute_at: axis {getattr(iv, 'name', iv)!r} is not an axis of "
                       f"stage {parent.name!r}")
        if not self.schedule.consumes(parent, self, through_any=True):
            self._fail(f"compute_at: stage {parent.name!r} does not read {self.name!r} "
                       f"(directly or through other stages), so {self.name!r} cannot be "
                       f"computed inside its loop {iv.name!r}")
        self.attach_type, self.attach_stage, self.attach_ivar = "scope", parent, iv
        self._record("compute_at", parent=parent.name, axis=iv.name)

    def compute_inline(self):
        """Substitute this stage's expression into its consumers (``compute_inline``)."""
        self._check_compute("compute_inline")
        if self.is_output:
            self._fail("compute_inline: an output of the schedule cannot be inlined")
        if not isinstance(self.op, ComputeOp):
            self._fail("compute_inline: only a compute (not a scan or an extern) can be "
                       "inlined")
        if self.op.reduce_axis:
            self._fail("compute_inline: a reduction cannot be inlined")
        if self.op.num_outputs > 1:
            self._fail("compute_inline: an operation with several outputs cannot be inlined")
        self.attach_type, self.attach_stage, self.attach_ivar = "inline", None, None
        self._record("compute_inline")

    def compute_root(self):
        """Compute the whole tensor before its consumers run (the default)."""
        self._check_compute("compute_root")
        self.attach_type, self.attach_stage, self.attach_ivar = "root", None, None
        self._record("compute_root")

    def tensorize(self, iv: n.IterVar, intrin):
        """Replace the loops from ``iv`` inward by a hardware intrinsic (TVM
        ``tensorize``), e.g. ``td.tensor_intrin.wmma_mma_sync()``: the loops must have
        the intrinsic's shape and the body its computation; checked when lowering."""
        self._check_leaf(iv, "tensorize")
        from .tensor_intrin import TensorIntrin
        if not isinstance(intrin, TensorIntrin):
            self._fail(f"tensorize of {iv.name!r}: expected a td.tensor_intrin intrinsic, "
                       f"got {intrin!r}")
        self.tensorized[iv] = intrin
        from .tensor_intrin import DeclaredIntrin
        self._record("tensorize", axis=iv.name, intrin=intrin.name, shape=list(intrin.shape),
                     **({"declared": True} if isinstance(intrin, DeclaredIntrin) else {}))

    def set_scope(self, scope: str):
        if scope not in ("global", "shared", "local", "wmma.accumulator"):
            self._fail(f"set_scope: scope must be global, shared, local or wmma.accumulator, "
                       f"got {scope!r}")
        self.scope = scope
        self._record("set_scope", scope=scope)

    def storage_align(self, iv: n.IterVar, factor: int, offset: int):
        """Pad the row stride of this stage's buffer at ``iv``'s dimension to
        ``factor*k + offset`` elements (avoids shared-memory bank conflicts on GPUs)."""
        self._check_compute("storage_align")
        if iv not in self.op.axis:
            self._fail(f"storage_align: {getattr(iv, 'name', iv)!r} is not a root axis")
        self.align[list(self.op.axis).index(iv)] = (int(factor), int(offset))
        self._record("storage_align", axis=iv.name, factor=factor, offset=offset)

    def set_store_predicate(self, predicate):
        """Store this stage's results only where ``predicate`` holds (TVM
        ``set_store_predicate``), e.g. ``tx.var.equal(0)`` after a cross-thread
        reduction (which already stores from the first thread only). The predicate may
        use the variables of thread axes bound in this stage and of its loops."""
        self._check_compute("set_store_predicate")
        from ..ir.op import convert
        from ..ir import dtype as dt
        pred = convert(predicate)
        if not dt.is_bool(pred.dtype):
            self._fail(f"set_store_predicate: expected a condition, got {pred.dtype}")
        self.store_predicate = pred
        self._record("set_store_predicate", predicate=repr(pred))

    def double_buffer(self):
        """Allocate two copies of this (shared) buffer and alternate between them."""
        self._check_compute("double_buffer")
        self.is_double_buffered = True
        self._record("double_buffer")

    def pipeline(self, stages: int = 3, tma: bool = False):
        """Copy this shared tile with ``cp.async`` (sm_80+), ``stages - 1`` iterations
        of the loop it is computed at ahead of its readers (TVM's ``software_pipeline``
        annotations, CUTLASS's multistage mainloop). ``stages`` copies of the tile
        rotate; each iteration waits for its own tile, meets the block at one barrier,
        then starts the copy of a later one, which lands while this one is used.

        Precondition: a ``shared`` stage computed at a serial loop (``compute_at``)
        whose body is the tile copies, then their readers. Before → after::

            for ko in range(n):                  for p in range(stages - 1):
                T[ko % 2] = A[.., ko, ..]            if p < n: async T[p % S] = A[.., p, ..]
                barrier                              commit
                ... T[ko % 2] ...                for ko in range(n):
                                                     wait until <= S - 2 copies pending
                                                     barrier
                                                     if ko + S - 1 < n:
                                                         async T[(ko+S-1) % S] = A[..]
                                                     commit
                                                     ... T[ko % S] ...

        ``tma=True``: on sm_90 and later the tensor memory accelerator copies each
        tile whole (one ``cp.async.bulk.tensor`` per tile, issued by one thread with a
        tensor map the launch makes), and the block waits for it on an ``mbarrier``
        per stage instead of ``cp.async.wait_group``; older GPUs copy as without it.
        The tile must be a plain copy of a box of an argument tensor (``cache_read``),
        unpadded, and either swizzled with rows of 128 bytes (the TMA's 128-byte swizzle)
        or not swizzled; every tile copied in the same loop must ask for it too.
        """
        self._check_compute("pipeline")
        if not isinstance(stages, int) or isinstance(stages, bool) or stages < 2:
            self._fail(f"pipeline: stages must be an int of at least 2, got {stages!r}")
        if not isinstance(tma, bool):
            self._fail(f"pipeline: tma must be True or False, got {tma!r}")
        self.is_double_buffered = True
        self.pipeline_stages = stages
        self.pipeline_tma = tma
        if tma:
            self._record("pipeline", stages=stages, tma=True)
        else:
            self._record("pipeline", stages=stages)

    def swizzle(self):
        """Lay this shared buffer out swizzled: the 16-byte chunk ``c`` of each 128-byte
        line ``l`` is stored at chunk ``c ^ (l % 8)`` of that line (CUTLASS's
        ``Swizzle<3, 4, 3>`` on byte offsets). Eight rows of a tile whose rows are 64 or
        128 bytes apart, read at the same column (an 8x8 matrix of ``ldmatrix``, a
        ``cp.async`` per row), then fall in eight different groups of banks without any
        padding (``storage_align``), so the buffer stays 16-byte aligned and compact.

        Every access goes through the permutation; a 16-byte vector stays one vector.
        The tensor-core product's operand tiles are read through it lane by lane
        (ldmatrix; on sm_90a wgmma's 128-byte swizzle layout), but a tensor-core store
        (``wmma_store``) cannot write a swizzled buffer and is refused.
        The buffer (each copy, where pipelined) must be a whole number of 1024-byte
        blocks of 2- or 4-byte elements, its rows a whole number of 16-byte chunks, and
        unpadded (checked when lowered)."""
        self._check_compute("swizzle")
        self.is_swizzled = True
        self._record("swizzle")


class Schedule:
    """All stages of a computation, in an order where producers come first."""

    def __init__(self, outputs):
        self.outputs: list[Operation] = outputs
        self.stages: list[Stage] = []
        self.stage_map: dict[Operation, Stage] = {}
        self.trace: list[Step] = []
        for op in _post_order(outputs):
            stage = Stage(op, self)
            self.stages.append(stage)
            self.stage_map[op] = stage
        for op in outputs:
            self.stage_map[op].is_output = True
        self.scan_state_of: dict[Operation, Tensor] = {}   # state placeholder -> scan output
        for stage in list(self.stages):
            if isinstance(stage.op, ScanOp):
                self._place_scan_body(stage)

    def _place_scan_body(self, scan: Stage):
        """A scan's update stages, and the stages between its states and its updates,
        run inside its loop (computed at ``scan_axis``, as TVM attaches them)."""
        op = scan.op
        for k, st in enumerate(op.state):
            self.scan_state_of[st.op] = op.output(k)
        for body_op in op.body_ops():
            stage = self.stage_map[body_op]
            stage.attach_type, stage.attach_stage = "scope", scan
            stage.attach_ivar = op.scan_axis

    def __getitem__(self, key) -> Stage:
        if isinstance(key, Stage) and key.schedule is self:
            return key
        op = key.op if isinstance(key, (Tensor, Stage)) else key
        if not isinstance(op, Operation):
            raise ScheduleError(f"expected a tensor, an operation or a stage, got "
                                f"{type(key).__name__} {key!r}")
        stage = self.stage_map.get(op)
        if stage is None:
            raise ScheduleError(f"{getattr(op, 'name', op)!r} is not part of this schedule "
                                "(create_schedule walks back from its outputs)")
        return stage

    def normalize(self) -> "Schedule":
        """TVM's ``s.normalize()`` rebases every loop to start at 0; ours already do, so
        this returns the schedule unchanged (kept for ported programs)."""
        return self

    def stage_of(self, tensor: Tensor) -> Stage:
        return self[tensor]

    def canonical(self, tensor: Tensor) -> Tensor:
        """The tensor as computed now (after cache_write or rfactor rewrote its op)."""
        return self[tensor].op.output(tensor.value_index)

    def readers_of(self, stage: Stage) -> list[Stage]:
        return [s for s in self.stages
                if isinstance(s.op, ComputeOp)
                and any(self[t] is stage for t in s.op.input_tensors)]

    def consumes(self, consumer: Stage, producer: Stage, through_any: bool = False) -> bool:
        """Whether ``consumer`` reads ``producer``, directly or through inlined stages
        (``through_any``: through any stages, placed or not yet; ``compute_at`` asks
        that, since as in TVM its calls may come in any order, and bound inference
        refuses a stage read outside the loop it is computed in)."""
        seen = set()
        todo = [consumer]
        while todo:
            st = todo.pop()
            for t in getattr(st.op, "input_tensors", []):
                s = self[t]
                if s is producer:
                    return True
                if (through_any or s.attach_type == "inline") and id(s) not in seen:
                    seen.add(id(s))
                    todo.append(s)
        return False

    def create_group(self, outputs, inputs, include_inputs: bool = False) -> "Group":
        """The stages from ``inputs`` (exclusive, unless ``include_inputs``) to ``outputs``
        (inclusive), to place together (TVM ``create_group``)::

            g = s.create_group(outputs=C, inputs=A)     # B and C, where C reads B reads A
            g.compute_at(s[D], D.op.axis[0])            # both computed inside D's loop
        """
        outs = [outputs] if isinstance(outputs, (Tensor, Operation)) else list(outputs)
        ins = [inputs] if isinstance(inputs, (Tensor, Operation)) else list(inputs)
        stop = {self[t].op for t in ins}
        members, todo = [], [self[t] for t in outs]
        while todo:
            st = todo.pop()
            if st in members or (st.op in stop and not include_inputs):
                continue
            if isinstance(st.op, PlaceholderOp):
                continue
            members.append(st)
            if st.op not in stop:
                todo.extend(self[t] for t in st.op.input_tensors)
        if not members:
            raise ScheduleError("create_group: no computed stage lies between the inputs "
                                "and the outputs")
        return Group(sorted(members, key=self.stages.index))

    def insert_stage(self, stage: Stage, before: Stage):
        self.stages.insert(self.stages.index(before), stage)
        self.stage_map[stage.op] = stage

    # graph rewrites live in rewrite.py; bound here to keep TVM's spelling
    def cache_read(self, tensor, scope: str, readers):
        from .rewrite import cache_read
        return cache_read(self, tensor, scope, readers)

    def cache_write(self, tensor, scope: str, layout=None):
        from .rewrite import cache_write
        return cache_write(self, tensor, scope, layout)

    def pack(self, tensor, axis: int, factor: int, readers):
        from .rewrite import pack
        return pack(self, tensor, axis, factor, readers)

    def rfactor(self, tensor, axis, factor_axis: int = 0):
        from .rewrite import rfactor
        return rfactor(self, tensor, axis, factor_axis)


class Group:
    """Stages placed together (``s.create_group``): ``compute_at`` moves every member
    not attached elsewhere into a loop of a consumer, ``compute_root`` back to root,
    ``compute_inline`` inlines them all. Each is recorded in the trace as the members'
    own steps."""

    def __init__(self, stages: list[Stage]):
        self.stages = stages

    def __repr__(self):
        return f"Group({[st.name for st in self.stages]})"

    def compute_at(self, parent: Stage, iv: n.IterVar):
        for st in self.stages:
            if st.attach_type == "root":
                st.compute_at(parent, iv)

    def compute_root(self):
        for st in self.stages:
            st.compute_root()

    def compute_inline(self):
        for st in self.stages:
            st.compute_inline()


def _post_order(outputs) -> list[Operation]:
    order, seen = [], set()

    def walk(op):
        if id(op) in seen:
            return
        seen.add(id(op))
        for t in op.input_tensors:
            walk(t.op)
        order.append(op)

    for op in outputs:
        walk(op)
    return order


def create_schedule(outputs) -> Schedule:
    """A default schedule (every stage computed at root, in order) for ``outputs``: an
    operation, a tensor, or a list of either."""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    ops = []
    for o in outputs:
        op = o.op if isinstance(o, Tensor) else o
        if not isinstance(op, Operation):
            raise TypeError(f"create_schedule: expected tensors or operations, got {o!r}")
        if op not in ops:
            ops.append(op)
    return Schedule(ops)
