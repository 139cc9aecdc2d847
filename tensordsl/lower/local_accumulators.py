"""Local accumulators: a reduction loop that updates fixed output elements keeps its
partial sums in registers, starting from the identity, and folds them into the output
once at the end.

    for k in range(K):                       acc = [0, 0]
      C[i] = C[i] + A[k] * B[k]      ->      for k in range(K):
      C[j] = C[j] + A[k] * B2[k]               acc[0] = acc[0] + A[k] * B[k]
                                               acc[1] = acc[1] + A[k] * B2[k]
                                             C[i] = C[i] + acc[0]
                                             C[j] = C[j] + acc[1]

LLVM would keep ``C[i]`` in a register too (the parameters are noalias), but starting from
``C[i]`` puts its load, often a cache miss, in front of the first multiply-add; starting
from the identity lets the loads of one micro-tile overlap the arithmetic of the next (a
matmul micro-kernel over 1024-long rows measured ~6% faster). The sums are reassociated,
exactly as splitting the reduction axis reassociates them; max/min are exact.

Applies to a serial loop whose body is only such updates, each possibly under ``if``s
without ``else`` (kept around the update and the fold): each index, predicate and
condition invariant in the loop, the updated elements pairwise identical or provably disjoint, and
no other read of the buffer inside the loop.
"""
from __future__ import annotations

from ..arith.simplify import Simplifier
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.op import const, max_value, min_value
from ..ir.visitor import Mutator, Visitor, free_vars

_TRUE = n.IntImm("bool", 1)
LINE_BYTES = 64
MIN_TRIP_COUNT = 8  # shorter loops gain nothing from an extra fold per element


def _identity(kind, dtype: str) -> n.Expr:
    scalar = dt.element(dtype)
    if kind is n.Add:
        return const(0, scalar)
    return min_value(scalar) if kind is n.Max else max_value(scalar)


class _Update:
    """``if conds: buf[index] = buf[index] <op> term`` (either operand order)."""

    def __init__(self, conds: tuple, store: n.Store, kind, term: n.Expr):
        self.conds, self.store, self.kind, self.term = conds, store, kind, term
        # guards that vary in the loop (then the target is a temporary's, see
        # ``_always_writable``): they guard the accumulator's update, not the fold
        self.loose = False

    def guarded(self, stmt: n.Stmt) -> n.Stmt:
        for cond in reversed(self.conds):
            stmt = n.IfThenElse(cond, stmt)
        return stmt


def _as_update(s, simp: Simplifier):
    conds = []
    while isinstance(s, n.IfThenElse) and s.else_case is None:
        conds.append(s.condition)
        s = s.then_case
    if not isinstance(s, n.Store) or type(s.value) not in (n.Add, n.Max, n.Min):
        return None
    v = s.value
    for mine, term in ((v.a, v.b), (v.b, v.a)):
        if (isinstance(mine, n.Load) and mine.buffer is s.buffer
                and simp.key(mine.index) == simp.key(s.index)
                and _same(simp, mine.predicate, s.predicate)):
            return _Update(tuple(conds), s, type(v), term)
    return None


def _is_hint(s) -> bool:
    """A prefetch hint, or a loop of them: it reads nothing the updates write."""
    while isinstance(s, n.For):
        s = s.body
    return isinstance(s, n.Evaluate) and isinstance(s.value, n.Call) and \
        s.value.name == "prefetch"


def _same(simp, a, b) -> bool:
    if a is None or b is None:
        return a is b
    return simp.key(a) == simp.key(b)


class _Reads(Visitor):
    def __init__(self):
        self.buffers: set = set()

    def visit_Load(self, node):
        self.buffers.add(node.buffer)
        self.generic_visit(node)


def buffers_loaded(*nodes) -> set:
    """The buffers ``nodes`` load from."""
    reads = _Reads()
    for node in nodes:
        reads.visit(node)
    return reads.buffers


def _span(index):
    """(base, lanes) of a scalar or unit-stride ramp index; None otherwise."""
    if isinstance(index, n.Ramp):
        if isinstance(index.stride, n.IntImm) and index.stride.value == 1:
            return index.base, index.lanes
        return None
    return index, 1


def _prefix_lanes(predicate, lanes: int) -> int:
    """How many leading lanes ``predicate`` may enable: ``ramp(0, 1, L) < c`` (a ragged
    vector at a row's end) enables the first ``c``; anything else, possibly all."""
    if isinstance(predicate, n.LT) and isinstance(predicate.a, n.Ramp) and \
            isinstance(predicate.b, n.Broadcast) and isinstance(predicate.b.value, n.IntImm):
        ramp = predicate.a
        if isinstance(ramp.base, n.IntImm) and ramp.base.value == 0 and \
                isinstance(ramp.stride, n.IntImm) and ramp.stride.value == 1:
            return max(0, min(lanes, predicate.b.value.value))
    return lanes


def _disjoint_or_same(simp, a, b, pa=None, pb=None) -> str | None:
    """'same', 'disjoint', or None when it cannot be proved either way (``pa``, ``pb``:
    the stores' predicates; disabled lanes touch nothing)."""
    sa, sb = _span(a), _span(b)
    if sa is None or sb is None:
        return None
    sa = (sa[0], _prefix_lanes(pa, sa[1]) if pa is not None else sa[1])
    sb = (sb[0], _prefix_lanes(pb, sb[1]) if pb is not None else sb[1])
    diff = simp.visit(n.Sub(sa[0], sb[0]))
    if not isinstance(diff, n.IntImm):
        return None
    d = diff.value
    if d == 0 and sa[1] == sb[1]:
        return "same"
    if d >= sb[1] or -d >= sa[1]:
        return "disjoint"
    return None


class LocalAccumulators(Mutator):
    def __init__(self):
        self.simp = Simplifier()
        self.count = 0
        self.temporaries: set = set()  # allocated here: small, hot, not worth a prefetch
        self.rewrites: dict = {}  # id(rewritten loop) -> (loop, updates, slots)

    def visit_Allocate(self, node):
        self.temporaries.add(node.buffer)
        return self.generic_visit(node)

    def visit_For(self, node):
        node = self.generic_visit(node)
        if node.kind != "serial" or not _long_enough(node.extent):
            return node
        stmts = _flat_seq(node.body) if isinstance(node.body, n.Seq) else [node.body]
        # prefetch hints (a gathered row fetched ahead) stay where they are
        hints = [s for s in stmts if _is_hint(s)]
        stmts = [s for s in stmts if not _is_hint(s)]
        updates = [_as_update(s, self.simp) for s in stmts]
        if not updates or any(u is None for u in updates):
            return node
        loop_var = node.var
        for u in updates:
            if loop_var in free_vars(u.store.index):
                return node
            guards = (u.store.predicate,) + u.conds
            if any(e is not None and loop_var in free_vars(e) for e in guards):
                if not self._always_writable(u.store):
                    return node
                u.loose = True
        loaded = buffers_loaded(*(u.term for u in updates))
        if any(u.store.buffer in loaded for u in updates):
            return node
        slots = self._slots(updates)
        if slots is None:
            return node
        return self._rewrite(node, updates, slots, list(hints))

    def _always_writable(self, store) -> bool:
        """``store``'s elements are a temporary's, at constant indices within it: its
        fold may run where the update's guards would not (no bounds to keep, and a
        temporary is no other thread's)."""
        span = _span(store.index)
        if store.buffer not in self.temporaries or span is None:
            return False
        base, lanes = span
        size = self.simp.visit(store.buffer.shape[0]) if len(store.buffer.shape) == 1 \
            else None
        return isinstance(base, n.IntImm) and isinstance(size, n.IntImm) and \
            0 <= base.value and base.value + lanes <= size.value

    def _slots(self, updates):
        """Accumulator slot of each update (updates of one element share a slot)."""
        slots, owners = [], []
        for u in updates:
            for k, other in enumerate(owners):
                if other.store.buffer is not u.store.buffer:
                    continue
                rel = _disjoint_or_same(self.simp, u.store.index, other.store.index,
                                        u.store.predicate, other.store.predicate)
                if rel is None or (rel == "same" and (
                        other.kind is not u.kind
                        or not _same(self.simp, other.store.predicate, u.store.predicate)
                        or len(other.conds) != len(u.conds)
                        or not all(_same(self.simp, a, b)
                                   for a, b in zip(other.conds, u.conds)))):
                    return None
                if rel == "same":
                    slots.append(k)
                    break
            else:
                slots.append(len(owners))
                owners.append(u)
        return slots

    def visit_Seq(self, node):
        """``if first: C[idx] = identity`` right before a rewritten loop whose folds are
        exactly those elements (a blocked reduction's init, see schedule_ops): on the
        first block the fold writes the accumulator instead, and the init goes. An
        unconditional ``C[idx] = identity`` (the loop is the whole reduction) goes too:
        the fold always writes the accumulator."""
        node = self.generic_visit(node)
        stmts, out, changed = _flat_seq(node), [], False
        k = 0
        while k < len(stmts):
            here = stmts[k]
            inits = self._inits_before_rewrite(stmts, k)
            if inits:
                info = self.rewrites[id(stmts[k + inits])][1:]
                first = here.condition if isinstance(here, n.IfThenElse) else _TRUE
                out.append(self._rewrite(*info, first_block=first))
                changed = True
                k += inits + 1
                continue
            nxt = stmts[k + 1] if k + 1 < len(stmts) else None
            single = self._single_update(here, nxt)
            if single is not None:
                out.append(single)
                changed = True
                k += 2
                continue
            out.append(here)
            k += 1
        return n.seq(*out) if changed else node

    def _single_update(self, init, update):
        """``x = identity; x = x + e`` (a reduction whose whole loop became one vector
        sum): ``x = e``, one add fewer per element (an SDDMM dot per stored entry)."""
        if not isinstance(init, n.Store) or init.predicate is not None or \
                not isinstance(update, n.Store):
            return None
        u = _as_update(update, self.simp)
        if u is None or u.store.buffer is not init.buffer or u.store.predicate is not None \
                or self.simp.key(u.store.index) != self.simp.key(init.index) \
                or not _is_identity(init.value, u.kind):
            return None
        if init.buffer in buffers_loaded(u.term):
            return None
        return n.Store(init.buffer, u.term, init.index)

    def _inits_before_rewrite(self, stmts: list, k: int) -> int:
        """How many statements from ``k`` initialize every target of the rewritten loop
        right after them: one ``if first: ...`` block, or a run of plain stores (a
        row of the result set to the identity vector by vector); 0 if none do."""
        if isinstance(stmts[k], n.IfThenElse):
            runs = [1]
        else:
            plain = 0
            while k + plain < len(stmts) and isinstance(stmts[k + plain], n.Store):
                plain += 1
            runs = range(1, plain + 1)
        for length in runs:
            nxt = stmts[k + length] if k + length < len(stmts) else None
            rewritten, *info = self.rewrites.get(id(nxt), (None,))
            # (an id alone could belong to a newer node once the rewritten one was freed)
            if rewritten is nxt and nxt is not None and \
                    self._is_init_of(stmts[k:k + length], info[1]):
                return length
        return 0

    def _is_init_of(self, stmts: list, updates) -> bool:
        if all(isinstance(st, n.Store) for st in stmts):
            inits = [((), st) for st in stmts]
        elif len(stmts) == 1 and isinstance(stmts[0], n.IfThenElse) and \
                stmts[0].else_case is None:
            inits = [_guarded_store(x) for x in _flat(stmts[0].then_case)]
        else:
            return False
        if any(i is None for i in inits):
            return False
        targets = {}
        for u in updates:
            targets[self._target_key(u.conds, u.store)] = u
        seen = set()
        for conds, st in inits:
            u = targets.get(self._target_key(conds, st))
            if u is None or not _is_identity(st.value, u.kind):
                return False
            seen.add(id(u))
        return len(seen) == len(targets)

    def _target_key(self, conds, store):
        pred = None if store.predicate is None else self.simp.key(store.predicate)
        return (id(store.buffer), self.simp.key(store.index), pred,
                tuple(self.simp.key(c) for c in conds))

    def _rewrite(self, loop, updates, slots, hints=(), first_block=None):
        self.count += 1
        first = {}
        for u, k in zip(updates, slots):
            first.setdefault(k, u)
        # one buffer per slot, each a vector of the update's width: SROA turns them into
        # registers
        accs = {}
        for k, u in first.items():
            dtype = u.store.value.dtype
            # the printer tells accumulators of the same name in one scope apart
            suffix = "" if len(first) == 1 else str(k)
            accs[k] = n.Buffer(f"{u.store.buffer.name}.acc{suffix}", dt.element(dtype),
                               (n.IntImm("int64", dt.lanes(dtype)),), "local")
        zero = n.IntImm("int64", 0)

        def acc_index(k):
            lanes = dt.lanes(first[k].store.value.dtype)
            return zero if lanes == 1 else n.Ramp(zero, n.IntImm("int64", 1), lanes)

        def acc_load(k):
            return n.Load(first[k].store.value.dtype, accs[k], acc_index(k))

        inits = []
        for k, u in first.items():
            ident = _identity(u.kind, u.store.value.dtype)
            lanes = dt.lanes(u.store.value.dtype)
            inits.append(n.Store(accs[k], ident if lanes == 1 else n.Broadcast(ident, lanes),
                                 acc_index(k)))
        # the guards stay: a term may read out of bounds where its guard is false
        body = list(hints) + [u.guarded(n.Store(accs[k], self._updated(u, acc_load(k)),
                                                acc_index(k)))
                              for u, k in zip(updates, slots)]
        folds = []
        for k, u in first.items():
            s = u.store
            if u.loose:
                # guards that vary in the loop: the lanes they left alone hold the
                # identity, so the fold covers every lane, unguarded
                old = n.Load(s.value.dtype, s.buffer, s.index)
                folds.append(n.Store(s.buffer, u.kind(old, acc_load(k)), s.index))
                continue
            old = n.Load(s.value.dtype, s.buffer, s.index, s.predicate)
            fold = n.Store(s.buffer, u.kind(old, acc_load(k)), s.index, s.predicate)
            if first_block is _TRUE:
                fold = n.Store(s.buffer, acc_load(k), s.index, s.predicate)
            elif first_block is not None:
                fold = n.IfThenElse(first_block, n.Store(s.buffer, acc_load(k), s.index,
                                                         s.predicate), fold)
            folds.append(u.guarded(fold))
        new_loop = n.For(loop.var, loop.min, loop.extent, loop.kind, n.seq(*body),
                         loop.thread_tag)
        # (the folds of a whole reduction only store: nothing to fetch ahead)
        ahead = [] if first_block is _TRUE else self._prefetches(first.values())
        out = n.seq(*inits, *ahead, new_loop, *folds)
        for k in sorted(accs, reverse=True):
            out = n.Allocate(accs[k], accs[k].shape[0], out)
        if first_block is None:
            self.rewrites[id(out)] = (out, loop, updates, slots, hints)
        return out


    @staticmethod
    def _updated(u, acc):
        """The accumulator after update ``u``: a predicated update (a ragged vector at a
        row's end) keeps the disabled lanes by a select, not a masked store, which
        would keep the accumulator out of registers."""
        value = u.kind(acc, u.term)
        if u.loose and u.store.predicate is not None:
            value = n.Select(u.store.predicate, value, acc)
        return value

    def _prefetches(self, updates):
        """Touch the lines the folds will read, so the loads at the end hit L1."""
        out = []
        for u in updates:
            span = _span(u.store.index)
            if span is None or u.store.buffer in self.temporaries:
                continue
            base, lanes = span
            elem = dt.element(u.store.value.dtype)
            per_line = max(1, LINE_BYTES // max(1, dt.bits(elem) // 8))
            offsets = sorted(set(range(0, lanes, per_line)) | {lanes - 1})
            for off in offsets:
                addr = n.Load(elem, u.store.buffer,
                              self.simp.visit(n.Add(base, n.IntImm("int64", off))))
                out.append(n.Evaluate(n.Call("int32", "prefetch", (addr,))))
        return out


def _flat(stmt):
    return list(stmt.stmts) if isinstance(stmt, n.Seq) else [stmt]


def _flat_seq(seq: n.Seq) -> list:
    """The statements of ``seq`` with nested sequences spliced in (a loop partition
    leaves ``[init, [loop, edge loop]]``: the init still comes right before the loop)."""
    out = []
    for s in seq.stmts:
        out.extend(_flat_seq(s) if isinstance(s, n.Seq) else [s])
    return out


def _guarded_store(stmt):
    """(conditions, store) of ``if c1: if c2: store``; None for anything else."""
    conds = []
    while isinstance(stmt, n.IfThenElse) and stmt.else_case is None:
        conds.append(stmt.condition)
        stmt = stmt.then_case
    return (tuple(conds), stmt) if isinstance(stmt, n.Store) else None


def _is_identity(value, kind) -> bool:
    v = value.value if isinstance(value, n.Broadcast) else value
    ident = _identity(kind, v.dtype)
    return isinstance(v, (n.FloatImm, n.IntImm)) and v.value == ident.value


def _long_enough(extent) -> bool:
    return not isinstance(extent, n.IntImm) or extent.value >= MIN_TRIP_COUNT


def local_accumulators(body: n.Stmt) -> n.Stmt:
    return LocalAccumulators().visit(body)
