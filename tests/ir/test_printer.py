"""``td.lower`` reads as a person would write the loop nest: the user's names (a loop
split in two keeps ``i.outer`` in both parts), bounds without ``min`` a person would
simplify, no init store a reduction overwrites."""
import numpy as np

import tensordsl as td
from tensordsl.ir import nodes as n
from tensordsl.ir.printer import print_ir


def split_symbolic_reduction():
    """The README's first example: a symbolic axis split by 8, made parallel."""
    size = td.var("n")
    A = td.placeholder((size, 64), name="A")
    k = td.reduce_axis((0, 64), name="k")
    B = td.compute((size,), lambda i: td.sum(A[i, k] * A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    io, _ = s[B].split(B.op.axis[0], factor=8)
    s[B].parallel(io)
    return s, [A, B]


def test_split_of_a_symbolic_axis_reads_cleanly():
    s, args = split_symbolic_reduction()
    text = str(td.lower(s, args))
    assert "min(n // 8" not in text and "0 - " not in text
    assert "parallel for i.outer in range(0, n // 8):" in text
    assert "parallel for i.outer in range(n // 8, (n + 7) // 8):" in text
    assert "for i.inner in range(0, min(8, n - i.outer*8)):" in text
    assert "outer_1" not in text and "acc1" not in text
    # the reduction writes its sum once: no zero store it then overwrites
    assert "B[i.outer*8 + i.inner] = 0.0f" not in text
    assert text.count("B[i.outer*8 + i.inner] = B.acc[0]") == 2
    f = td.build(s, args)
    for rows in (0, 5, 16, 21):
        a = np.random.default_rng(rows).random((rows, 64), dtype="float32")
        b = np.full(rows, np.nan, "float32")
        f(a, b)
        np.testing.assert_allclose(b, (a * a).sum(1), rtol=1e-5)


def test_sibling_scopes_reuse_a_name_nested_ones_do_not():
    i1, i2, i3 = n.Var("i"), n.Var("i"), n.Var("i")
    buf = n.Buffer("B", "float32", (n.IntImm("int64", 64),))
    one = n.FloatImm("float32", 1.0)
    eight = n.IntImm("int64", 8)
    inner = n.For(i3, n.IntImm("int64", 0), eight, "serial",
                  n.Store(buf, one, n.Add(n.Mul(i2, eight), i3)))
    prog = n.seq(n.For(i1, n.IntImm("int64", 0), eight, "serial", n.Store(buf, one, i1)),
                 n.For(i2, n.IntImm("int64", 0), eight, "serial", inner))
    assert print_ir(prog).splitlines() == [
        "for i in range(0, 8):",
        "  B[i] = 1.0f",
        "for i in range(0, 8):",
        "  for i_1 in range(0, 8):",
        "    B[i*8 + i_1] = 1.0f",
    ]


def test_fused_symbolic_axes_vectorize_contiguously_and_the_edge_has_no_dead_branch():
    m, size = td.var("m"), td.var("n")
    A = td.placeholder((m, size), name="A")
    B = td.compute((m, size), lambda i, j: A[i, j] * 2.0, name="B")
    s = td.create_schedule(B.op)
    fo, fi = s[B].split(s[B].fuse(*B.op.axis), factor=32)
    s[B].parallel(fo)
    s[B].vectorize(fi)
    text = str(td.lower(s, [A, B]))
    lines = [line.strip() for line in text.splitlines()]
    assert "parallel for i.j.fused.outer in range(0, m*n // 32):" in lines
    assert "parallel for i.j.fused.outer in range(m*n // 32, (m*n + 31) // 32):" in lines
    assert "B[ramp(i.j.fused.outer*32, 1, 32)] = A[ramp(i.j.fused.outer*32, 1, 32)]" \
        ":float32x32*x32(2.0f)" in lines                     # no // n*n + % n gathers
    # the edge loop holds only the ragged tile: no "whole tile inside?" branch, no else
    assert "else:" not in lines and "max(" not in text and "min(" not in text
    f = td.build(s, [A, B])
    for shape in ((0, 5), (3, 7), (5, 64), (9, 33)):
        a = np.random.default_rng(1).random(shape, dtype="float32")
        b = np.full(shape, np.nan, "float32")
        f(a, b)
        np.testing.assert_array_equal(b, a * 2)


def test_rfactor_partials_are_stored_once():
    """TVM's reduction tutorial: the factored partials start in a register, and the
    zero store before the loop (overwritten by the fold) goes."""
    size = td.var("n")
    A = td.placeholder((size, size), name="A")
    k = td.reduce_axis((0, size), "k")
    B = td.compute((size,), lambda i: td.sum(A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    _, ki = s[B].split(B.op.reduce_axis[0], factor=16)
    s.rfactor(B, ki)
    text = str(td.lower(s, [A, B]))
    assert "B.rf[k.inner.v*n + i] = 0.0f" not in text
    assert "B.rf[k.inner.v*n + i] = B.rf.acc[0]" in text
    assert "for k.outer in range(0, (n - k.inner.v + 15) // 16):" in text
    f = td.build(s, [A, B])
    for rows in (0, 1, 17, 40):
        a = np.random.default_rng(rows).random((rows, rows), dtype="float32")
        b = np.full(rows, np.nan, "float32")
        f(a, b)
        np.testing.assert_allclose(b, a.sum(1), rtol=1e-5)
