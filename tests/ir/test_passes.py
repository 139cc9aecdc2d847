"""Each lowering pass on small programs: the IR before and after."""
import pytest

import tensordsl as td
from tensordsl.ir import nodes as n
from tensordsl.ir.printer import print_ir
from tensordsl.lower.pipeline import PASS_NAMES
from tensordsl.lower.unroll import unroll_loops
from tensordsl.lower.vectorize import vectorize_loops
from tensordsl.schedule.trace import dumps, loads, replay


def body_text(func):
    return "\n".join(line.strip() for line in str(func).splitlines()[1:])


def stencil():
    A = td.placeholder((49,), name="A")
    B = td.compute((49,), lambda i: A[i] * 2.0, name="B")
    C = td.compute((47,), lambda i: B[i] + B[i + 2], name="C")
    s = td.create_schedule(C.op)
    o, i = s[C].split(C.op.axis[0], factor=16)
    s[B].compute_at(s[C], o)
    return s, [A, C]


def test_bound_inference_of_a_compute_at_stage():
    s, args = stencil()
    bounds = str(td.lower(s, args, stop_after="bound_inference"))
    # one iteration of C's outer loop reads B[16*o : 16*o + 18]
    assert "B: i in range(i.outer*16, i.outer*16 + 18)" in bounds


def test_schedule_ops_nests_and_guards_the_attached_stage():
    s, args = stencil()
    text = body_text(td.lower(s, args, stop_after="schedule_ops"))
    assert "realize B[i.outer*16:i.outer*16 + 18] float32 in global:" in text
    assert "if i.outer*16 + i >= 0 && i.outer*16 + i < 49:" in text


def test_simplify_removes_provable_guards():
    s, args = stencil()
    text = body_text(td.lower(s, args, stop_after="simplify"))
    assert ">= 0" not in text            # i.outer*16 + i is never negative
    assert "if i.outer*16 + i < 49:" in text  # the last tile overruns: kept


def test_flatten_allocates_the_tile_and_rebases_indices():
    s, args = stencil()
    text = body_text(td.lower(s, args, stop_after="simplify_flat"))
    assert "B = allocate(float32[18], global)" in text
    assert "C[i.outer*16 + i.inner] = B[i.inner] + B[i.inner + 2]" in text


def test_vectorize_turns_the_loop_into_ramps():
    buf_a = n.Buffer("A", "float32", (n.IntImm("int64", 64),))
    buf_b = n.Buffer("B", "float32", (n.IntImm("int64", 64),))
    i, o = n.Var("i"), n.Var("o")
    store = n.Store(buf_b, n.Add(n.Load("float32", buf_a, o * 8 + i), n.FloatImm("float32", 1.0)),
                    o * 8 + i)
    loop = n.For(i, n.IntImm("int64", 0), n.IntImm("int64", 8), "vectorized", store)
    after = print_ir(vectorize_loops(loop))
    assert after == "B[ramp(o*8 + 0, 1, 8)] = A[ramp(o*8 + 0, 1, 8)]:float32x8 + x8(1.0f)"


def test_vectorize_masks_a_lane_dependent_guard():
    buf = n.Buffer("B", "float32", (n.IntImm("int64", 64),))
    i = n.Var("i")
    body = n.IfThenElse(n.LT(i, n.IntImm("int64", 5)), n.Store(buf, n.FloatImm("float32", 0.0), i))
    loop = n.For(i, n.IntImm("int64", 0), n.IntImm("int64", 8), "vectorized", body)
    after = vectorize_loops(loop)
    assert isinstance(after, n.IfThenElse)  # runs only if some lane is active
    store = after.then_case
    assert isinstance(store, n.Store) and store.predicate is not None
    assert print_ir(after).startswith("if vector_any(ramp(0, 1, 8) < x8(5)):")


def test_vectorize_falls_back_on_a_lane_dependent_else():
    buf = n.Buffer("B", "float32", (n.IntImm("int64", 64),))
    i = n.Var("i")
    body = n.IfThenElse(n.LT(i, n.IntImm("int64", 5)), n.Store(buf, n.FloatImm("float32", 0.0), i),
                        n.Store(buf, n.FloatImm("float32", 1.0), i))
    loop = n.For(i, n.IntImm("int64", 0), n.IntImm("int64", 8), "vectorized", body)
    after = vectorize_loops(loop)
    assert isinstance(after, n.For) and after.kind == "serial"


def test_unroll_copies_the_body():
    buf = n.Buffer("B", "float32", (n.IntImm("int64", 4),))
    i = n.Var("i")
    loop = n.For(i, n.IntImm("int64", 0), n.IntImm("int64", 3), "unrolled",
                 n.Store(buf, n.FloatImm("float32", 1.0), i))
    assert print_ir(unroll_loops(loop)).count("B[") == 3


@pytest.mark.parametrize("name", PASS_NAMES)
def test_every_pass_can_be_shown_and_verified(name):
    s, args = stencil()
    assert str(td.lower(s, args, stop_after=name, verify_passes=True))


def test_unknown_pass_name():
    s, args = stencil()
    with pytest.raises(ValueError, match="stop_after"):
        td.lower(s, args, stop_after="nope")


def test_trace_round_trip_replays_the_same_program():
    A = td.placeholder((64, 64), name="A")
    Bt = td.placeholder((64, 64), name="B")
    k = td.reduce_axis((0, 64), "k")
    C = td.compute((64, 64), lambda i, j: td.sum(A[i, k] * Bt[k, j], axis=k), name="C")
    s = td.create_schedule(C.op)
    CC = s.cache_write(C, "global")
    xo, yo, xi, yi = s[C].tile(C.op.axis[0], C.op.axis[1], 16, 16)
    s[CC].compute_at(s[C], yo)
    ko, ki = s[CC].split(s[CC].op.reduce_axis[0], factor=4)
    s[CC].reorder(ko, s[CC].op.axis[0], ki, s[CC].op.axis[1])
    s[CC].vectorize(s[CC].op.axis[1])
    s[C].parallel(xo)
    steps = loads(dumps(s.trace))
    s2 = replay(steps, [C.op])
    assert str(td.lower(s2, [A, Bt, C])) == str(td.lower(s, [A, Bt, C]))
