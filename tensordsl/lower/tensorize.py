"""``tensorize``: a loop nest replaced by a hardware intrinsic call.

Called by ``schedule_ops`` when it reaches a tensorized loop: checks that the loops from
there inward have the intrinsic's shape, that the body computes what the intrinsic does
(and reads its operands as unit-stride row-major tiles), and returns the call. Operands
are passed as reads of a tile's first element and of the element one row below it, so
after storage flattening the code generator has both the address and the row stride.
"""
from __future__ import annotations

from ..arith.simplify import simplify_expr
from ..errors import ScheduleError
from ..ir import nodes as n
from ..ir.visitor import substitute

_ZERO = n.IntImm("int64", 0)
_ONE = n.IntImm("int64", 1)


def lower_tensorized(stage, inner, extents, bodies, outputs, indices, intrin, part: str):
    """The call replacing loops ``inner`` (leaf IterVars, outermost first) of ``stage``;
    ``part`` is ``"init"`` (a reduction's initialization) or ``"body"``."""
    from ..schedule.tensor_intrin import DeclaredIntrin
    if isinstance(intrin, DeclaredIntrin):
        from .tensorize_declared import lower_declared
        return lower_declared(stage, inner, extents, bodies, outputs, indices, intrin, part)
    where = f"tensorize of stage {stage.name!r} at {inner[0].name!r} ({intrin.name})"
    shape = []
    for iv in inner:
        e = extents[iv]
        if not isinstance(e, n.IntImm):
            raise ScheduleError(f"{where}: loop {iv.name!r} has the symbolic extent {e}")
        shape.append(int(e.value))
    at_zero = {iv.var: _ZERO for iv in inner}
    out = outputs[0]
    if intrin.name == "wmma.mma_sync":
        if stage.scope != "wmma.accumulator":
            raise ScheduleError(f"{where}: the stage must be in scope 'wmma.accumulator' "
                                f"(s.cache_write(C, 'wmma.accumulator')), it is {stage.scope!r}")
        # (the tiles of a warp's block, down and across: each call's last two arguments)
        tiles = (n.IntImm("int64", intrin.shape[0] // 16),
                 n.IntImm("int64", intrin.shape[1] // 16))
        if part == "init":
            _expect(where, inner, shape, ("data_par", "data_par"), intrin.shape[:2])
            c = _tile(out, indices, at_zero)
            return _call("wmma.fill", *c, n.FloatImm(out.dtype, 0.0), *tiles)
        _expect(where, inner, shape, ("data_par", "data_par", "reduce"), intrin.shape)
        red = bodies[0]
        if not (isinstance(red, n.Reduce) and red.combiner.name == "sum"
                and len(red.source) == 1):
            raise ScheduleError(f"{where}: expected a sum reduction, got {red}")
        a_read, b_read = _product_reads(where, red.source[0])
        i, j, k = (iv.var for iv in inner)
        _check_unit_tile(where, a_read, i, k, (j,))
        _check_unit_tile(where, b_read, k, j, (i,))
        _check_unit_tile(where, n.TensorRead(out, indices), i, j, (k,))
        if out.dtype != "float32" or a_read.dtype not in ("float16", "bfloat16") \
                or a_read.dtype != b_read.dtype:
            raise ScheduleError(f"{where}: tensor cores multiply float16 or bfloat16 tiles "
                                f"into float32; got {a_read.dtype} x {b_read.dtype} -> "
                                f"{out.dtype}")
        return _call("wmma.mma_sync", *_tile(out, indices, at_zero),
                     *_tile(a_read.tensor, a_read.indices, at_zero),
                     *_tile(b_read.tensor, b_read.indices, at_zero), *tiles)
    if intrin.name == "wmma.store":
        _expect(where, inner, shape, ("data_par", "data_par"), intrin.shape)
        body = bodies[0]
        if isinstance(body, n.Cast) and body.dtype in ("float16", "bfloat16") and \
                body.value.dtype == "float32":
            body = body.value       # stored converted: each lane converts its elements
        if not (isinstance(body, n.TensorRead) and
                getattr(body.tensor.op, "name", None) is not None):
            raise ScheduleError(f"{where}: expected a copy of the accumulator, got {body}")
        src_stage = stage.schedule[body.tensor]
        if src_stage.scope != "wmma.accumulator":
            raise ScheduleError(f"{where}: the stage must copy a 'wmma.accumulator' tensor, "
                                f"{body.tensor.name!r} is in {src_stage.scope!r}")
        i, j = (iv.var for iv in inner)
        _check_unit_tile(where, body, i, j, ())
        ranges = {iv.var: (0, e.value - 1) for iv, e in extents.items()
                  if isinstance(e, n.IntImm)}
        _check_flat_tile(where, out, indices, i, j, ranges)
        return _call("wmma.store", *_rows(out, indices, at_zero, i),
                     *_tile(body.tensor, body.indices, at_zero))
    raise ScheduleError(f"{where}: unknown intrinsic")


def _expect(where, inner, shape, kinds, want):
    got_kinds = tuple(iv.kind for iv in inner)
    if got_kinds != kinds or tuple(shape) != tuple(want):
        raise ScheduleError(f"{where}: expected loops of kinds {kinds} and extents {want} "
                            f"from here inward, got {got_kinds} with extents {tuple(shape)} "
                            "(split the axes by the tile size and reorder them innermost)")


def _call(name, *args) -> n.Stmt:
    return n.Evaluate(n.Call("int32", name, tuple(args)))


def _tile(tensor, indices, at_zero):
    """Reads of the tile's first element and of the one a row below it (the row is the
    second-to-last dimension)."""
    base = [simplify_expr(substitute(i, at_zero)) for i in indices]
    below = list(base)
    below[-2] = simplify_expr(n.Add(below[-2], _ONE))
    return n.TensorRead(tensor, tuple(base)), n.TensorRead(tensor, tuple(below))


def _flat_offset(tensor, indices):
    """The row-major element offset of ``tensor[indices]`` (its shape constant)."""
    offset, stride = _ZERO, 1
    for extent, idx in zip(reversed(tensor.shape), reversed(indices)):
        offset = n.Add(offset, n.Mul(idx, n.IntImm("int64", stride)))
        stride *= int(extent.value)
    return offset


def _check_flat_tile(where, tensor, indices, row_var, col_var, ranges):
    """The store's tile is rows of 16 consecutive elements a constant stride apart in
    memory: the last two dimensions (a matrix), or a fused axis of several whose layout
    is the rows' (an implicit GEMM's (image, row, column) positions). ``ranges``: the
    loops' (a fused index wraps only where they run past it)."""
    if not all(isinstance(d, n.IntImm) for d in tensor.shape):
        return _check_unit_tile(where, n.TensorRead(tensor, indices), row_var, col_var, ())
    flat = _flat_offset(tensor, indices)

    def steps(var, count: int) -> set:
        """flat(var = k + 1) - flat(var = k) for k < count (the other var at 0): the
        constant steps, and None for one that is not constant."""
        at = [substitute(flat, {row_var: _ZERO, col_var: _ZERO, var: n.IntImm("int64", k)})
              for k in range(count + 1)]
        diffs = (simplify_expr(n.Sub(b, a), ranges) for a, b in zip(at, at[1:]))
        return {d.value if isinstance(d, n.IntImm) else None for d in diffs}

    # every step along a row; down, the first (a fused row index is rows of one
    # tensor's memory order, whose later steps the simplifier does not always see
    # as constant: (p // 3136, p // 56 % 56, p % 56) once split by 8 at p = 8q + 7)
    across, down = steps(col_var, 15), steps(row_var, 1)
    if across != {1} or len(down) != 1 or None in down or min(down) < 16:
        raise ScheduleError(f"{where}: {tensor.name!r} must be written as rows of 16 "
                            f"consecutive elements a constant stride (at least 16) apart; "
                            f"its steps are {down} down and {across} across (None: not "
                            f"constant)")


def _rows(tensor, indices, at_zero, row_var):
    """Reads of the tile's first element and of the first of its next row (whatever
    dimensions the row index runs through)."""
    base = [simplify_expr(substitute(i, at_zero)) for i in indices]
    below = [simplify_expr(substitute(i, {**at_zero, row_var: _ONE})) for i in indices]
    return n.TensorRead(tensor, tuple(base)), n.TensorRead(tensor, tuple(below))


def _product_reads(where, source):
    if not isinstance(source, n.Mul):
        raise ScheduleError(f"{where}: expected a product A[i, k] * B[k, j], got {source}")
    reads = []
    for x in (source.a, source.b):
        while isinstance(x, n.Cast):
            x = x.value
        if not isinstance(x, n.TensorRead):
            raise ScheduleError(f"{where}: expected each factor to read a tensor, got {x}")
        reads.append(x)
    return reads


def _check_unit_tile(where, read, row_var, col_var, unused):
    """The read's last two indices step by one with ``row_var`` and ``col_var`` and no
    other index depends on them or on ``unused``."""
    nd = len(read.indices)
    if nd < 2:
        raise ScheduleError(f"{where}: {read.tensor.name!r} must have two dimensions or more")
    for var, dim in ((row_var, nd - 2), (col_var, nd - 1), *((u, None) for u in unused)):
        for d, idx in enumerate(read.indices):
            step = simplify_expr(n.Sub(substitute(idx, {var: _ONE}),
                                       substitute(idx, {var: _ZERO})))
            want = 1 if d == dim else 0
            if not (isinstance(step, n.IntImm) and step.value == want):
                raise ScheduleError(
                    f"{where}: {read.tensor.name!r} must be read as a row-major tile "
                    f"(index {d} should step by {want} with {var.name}, it steps by {step})")
