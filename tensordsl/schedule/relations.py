"""How a stage's leaf axes derive from its root axes (split and fuse), and back.

Lowering needs two directions: leaf extents from root extents (``leaf_extents``), and
root indices from leaf loop variables (``root_values``), with the predicates that keep a
non-dividing split inside its root range.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..arith.simplify import Simplifier
from ..ir import nodes as n


@dataclass(frozen=True, eq=False)
class Split:
    parent: n.IterVar
    outer: n.IterVar
    inner: n.IterVar
    factor: int | None
    nparts: int | None
    tail: str = "guard"   # or "shift_inwards": the last block overlaps the previous one


@dataclass(frozen=True, eq=False)
class Fuse:
    outer: n.IterVar
    inner: n.IterVar
    fused: n.IterVar


@dataclass(frozen=True, eq=False)
class Segment:
    """The positions ``parent`` (0 .. pos[-1]) by the runs of ``pos`` (a compressed
    level's): ``outer`` over the runs, ``inner`` over the run of ``outer``, with
    ``parent = pos[outer] + inner`` (TACO's coordinate recovery, as a loop nest)."""
    parent: n.IterVar
    outer: n.IterVar
    inner: n.IterVar
    pos: object


def _pos_at(r: Segment, index: n.Expr) -> n.Expr:
    return n.Cast("int64", n.TensorRead(r.pos, (index,)))


def segment_position(r: Segment, run: n.Expr) -> n.Expr:
    """The position ``pos[run] + inner`` of a segment's loops (``run``: the runs axis'
    value), simplified as ``root_values`` writes it."""
    from ..arith.simplify import Simplifier
    return Simplifier().visit(n.Add(_pos_at(r, run), r.inner.var))


def _ceildiv(a: n.Expr, b: n.Expr) -> n.Expr:
    return n.FloorDiv(n.Add(a, n.Sub(b, n.IntImm("int64", 1))), b)


def leaf_extents(relations, root_extents: dict, s: Simplifier) -> dict:
    """Extent of every axis (root, intermediate and leaf) given the root extents."""
    ext = dict(root_extents)
    for r in relations:
        if isinstance(r, Segment):
            ext[r.outer] = s.visit(n.Sub(r.pos.shape[0], n.IntImm("int64", 1)))
            ext[r.inner] = n.Sub(_pos_at(r, n.Add(r.outer.var, n.IntImm("int64", 1))),
                                 _pos_at(r, r.outer.var))
        elif isinstance(r, Split):
            e = ext[r.parent]
            if r.factor is not None:
                f = n.IntImm("int64", r.factor)
                ext[r.inner], ext[r.outer] = f, s.visit(_ceildiv(e, f))
            else:
                p = n.IntImm("int64", r.nparts)
                ext[r.outer], ext[r.inner] = p, s.visit(_ceildiv(e, p))
        else:
            ext[r.fused] = s.visit(n.Mul(ext[r.outer], ext[r.inner]))
    return ext


def _covers_block(r: Split, ext: dict) -> bool:
    """Shifting inwards needs a whole block inside the extent bound inference found (a
    stage computed at a loop may need less than its axis's full range); otherwise the
    split falls back to a guard."""
    e, f = ext[r.parent], ext[r.inner]
    return isinstance(e, n.IntImm) and isinstance(f, n.IntImm) and e.value >= f.value


def root_values(relations, values: dict, ext: dict, s: Simplifier):
    """Offsets of root axes from leaf loop values; returns (values, predicates).

    ``values`` maps leaf IterVars to expressions; the result adds every root axis.
    A predicate ``offset < extent`` is emitted for each split that may overrun.
    """
    values = dict(values)
    predicates = []
    for r in reversed(relations):
        if isinstance(r, Segment):
            # the runs tile 0 .. pos[-1], the parent's range (a checked structure): no
            # predicate
            values[r.parent] = s.visit(n.Add(_pos_at(r, values[r.outer]), values[r.inner]))
        elif isinstance(r, Split) and r.tail == "shift_inwards" and _covers_block(r, ext):
            # block starts are clamped to extent - factor: no overrun, no predicate
            start = n.Min(n.Mul(values[r.outer], ext[r.inner]), n.Sub(ext[r.parent], ext[r.inner]))
            values[r.parent] = s.visit(n.Add(start, values[r.inner]))
        elif isinstance(r, Split):
            v = s.visit(n.Add(n.Mul(values[r.outer], ext[r.inner]), values[r.inner]))
            values[r.parent] = v
            covered = s.visit(n.Sub(n.Mul(ext[r.outer], ext[r.inner]), ext[r.parent]))
            if not (isinstance(covered, n.IntImm) and covered.value == 0):
                cond = s.visit(n.LT(v, ext[r.parent]))
                if not (isinstance(cond, n.IntImm) and cond.value == 1):
                    predicates.append(cond)
        else:
            f = values[r.fused]
            values[r.outer] = s.visit(n.FloorDiv(f, ext[r.inner]))
            values[r.inner] = s.visit(n.FloorMod(f, ext[r.inner]))
    return values, predicates
