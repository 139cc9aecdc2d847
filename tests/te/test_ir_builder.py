"""``td.ir_builder`` bodies of ``td.extern``: loops, while loops, if/else, buffers, and
the checks on every access (a hand-written loop nest never reads or writes outside a
tensor), against numpy."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensordsl as td
from tests.helpers import poisoned

n = td.var("n")


def _build(shape, inputs, fcompute, dtype=None, **kw):
    out = td.extern(shape, inputs, fcompute, name="out", dtype=dtype)
    s = td.create_schedule(out.op)
    return td.build(s, [*inputs, out], **kw), out


def test_prefix_sum_with_an_allocated_accumulator():
    A = td.placeholder((n,), "float32", "A")

    def prefix(ins, outs):
        ib = td.ir_builder.create()
        a, out = ib.buffer_ptr(ins[0]), ib.buffer_ptr(outs[0])
        total = ib.allocate("float32", (1,), name="total")
        total[0] = 0.0
        with ib.for_range(0, n, name="i") as i:
            total[0] += a[i]
            out[i] = total[0]
        return ib.get()

    f, _ = _build((n,), [A], prefix)
    a = np.random.default_rng(0).random(37).astype("float32")
    out = poisoned((37,))
    f(a, out)
    np.testing.assert_allclose(out, np.cumsum(a), rtol=1e-5)


def _merge(ins, outs):
    """Two sorted lists into one: the while loop of a merge."""
    ib = td.ir_builder.create()
    a, b, out = ib.buffer_ptr(ins[0]), ib.buffer_ptr(ins[1]), ib.buffer_ptr(outs[0])
    na, nb = ins[0].shape[0], ins[1].shape[0]
    p, q = ib.pointer("int64", name="p"), ib.pointer("int64", name="q")
    p[0], q[0] = 0, 0
    with ib.while_loop(td.all(p[0] < na, q[0] < nb)):
        with ib.if_scope(a[p[0]] <= b[q[0]]):
            out[p[0] + q[0]] = a[p[0]]
            p[0] = p[0] + 1
        with ib.else_scope():
            out[p[0] + q[0]] = b[q[0]]
            q[0] = q[0] + 1
    with ib.while_loop(p[0] < na):
        out[p[0] + q[0]] = a[p[0]]
        p[0] = p[0] + 1
    with ib.while_loop(q[0] < nb):
        out[p[0] + q[0]] = b[q[0]]
        q[0] = q[0] + 1
    return ib.get()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(-50, 50), max_size=30), st.lists(st.integers(-50, 50), max_size=30))
def test_a_while_loop_merges_two_sorted_lists(xs, ys):
    na, nb = td.var("na"), td.var("nb")
    A, B = td.placeholder((na,), "int32", "A"), td.placeholder((nb,), "int32", "B")
    f = _merged_kernel(A, B, na, nb)
    a, b = np.sort(np.array(xs, "int32")), np.sort(np.array(ys, "int32"))
    out = poisoned((a.size + b.size,), "int32")
    f(a, b, out)
    np.testing.assert_array_equal(out, np.sort(np.concatenate([a, b])))


_MERGED = {}


def _merged_kernel(A, B, na, nb):
    if "f" not in _MERGED:
        _MERGED["f"], _ = _build((na + nb,), [A, B], _merge, dtype="int32")
    return _MERGED["f"]


def test_while_prints():
    na, nb = td.var("na"), td.var("nb")
    A, B = td.placeholder((na,), "int32", "A"), td.placeholder((nb,), "int32", "B")
    out = td.extern((na + nb,), [A, B], _merge, name="merged", dtype="int32")
    text = str(td.lower(td.create_schedule(out.op), [A, B, out]))
    assert "while p[0] < na && q[0] < nb:" in text


def test_parallel_rows_each_with_their_own_buffer():
    m = td.var("m")
    A = td.placeholder((m, 16), "float64", "A")

    def row_max(ins, outs):
        ib = td.ir_builder.create()
        a, out = ib.buffer_ptr(ins[0]), ib.buffer_ptr(outs[0])
        with ib.for_range(0, m, name="i", kind="parallel") as i:
            best = ib.allocate("float64", (1,), name="best")
            best[0] = a[i, 0]
            with ib.for_range(1, 16, name="j") as j:
                with ib.if_scope(a[i, j] > best[0]):
                    best[0] = a[i, j]
            out[i] = best[0]
        return ib.get()

    f, _ = _build((m,), [A], row_max)
    a = np.random.default_rng(1).standard_normal((300, 16))
    out = poisoned((300,), "float64")
    f(a, out)
    np.testing.assert_array_equal(out, a.max(1))


def test_a_flat_index_reads_a_matrix_in_row_major_order():
    A = td.placeholder((4, 6), "float32", "A")

    def flat(ins, outs):
        ib = td.ir_builder.create()
        a, out = ib.buffer_ptr(ins[0]), ib.buffer_ptr(outs[0])
        with ib.for_range(0, 24, name="k") as k:
            out[k] = a[k] * 2.0
        return ib.get()

    f, _ = _build((24,), [A], flat)
    a = np.arange(24, dtype="float32").reshape(4, 6)
    out = poisoned((24,))
    f(a, out)
    np.testing.assert_array_equal(out, a.ravel() * 2)


def _indexed(ins, outs):
    """out[i] = a[idx[i]] + 0, then out[idx[i]] = 1: reads and writes at data indices."""
    ib = td.ir_builder.create()
    a, idx, out = (ib.buffer_ptr(t) for t in (*ins, outs[0]))
    with ib.for_range(0, ins[1].shape[0], name="i") as i:
        out[i] = a[idx[i]]
    with ib.for_range(0, ins[1].shape[0], name="i") as i:
        out[idx[i]] = out[idx[i]] + 1.0
    return ib.get()


@pytest.mark.parametrize("bad", [10, -1])
def test_accesses_at_data_indices_are_checked_as_they_run(bad):
    A = td.placeholder((10,), "float32", "A")
    idx = td.placeholder((10,), "int32", "idx")
    f, _ = _build((10,), [A, idx], _indexed)
    a = np.arange(10, dtype="float32")
    good = np.arange(10)[::-1].astype("int32")
    out = poisoned((10,))
    f(a, good, out)
    np.testing.assert_array_equal(out, a[good] + 1)
    wrong = good.copy()
    wrong[3] = bad
    # (the read of A and the write of out are both bad: the first is named)
    with pytest.raises(ValueError, match=f"reads tensor 'A' at index {bad}"):
        f(a, wrong, poisoned((10,)))


def test_a_write_past_the_end_is_refused_not_done():
    A = td.placeholder((n,), "float32", "A")

    def shifted(ins, outs):
        ib = td.ir_builder.create()
        a, out = ib.buffer_ptr(ins[0]), ib.buffer_ptr(outs[0])
        with ib.for_range(0, n, name="i") as i:
            out[i + 5] = a[i]
        return ib.get()

    f, _ = _build((n,), [A], shifted)
    with pytest.raises(ValueError, match="writes tensor 'out' at index 10"):
        f(np.ones(10, "float32"), poisoned((10,)))


def test_checks_the_loop_ranges_prove_are_left_out():
    A = td.placeholder((n,), "float32", "A")

    def copy(ins, outs):
        ib = td.ir_builder.create()
        a, out = ib.buffer_ptr(ins[0]), ib.buffer_ptr(outs[0])
        with ib.for_range(0, n, name="i") as i:
            out[i] = a[i]
        return ib.get()

    out = td.extern((n,), [A], copy, name="out")
    assert "index_error" not in str(td.lower(td.create_schedule(out.op), [A, out]))


def test_misuse_is_refused_with_what_was_expected():
    ib = td.ir_builder.create()
    with pytest.raises(RuntimeError, match="else_scope must follow an if_scope"):
        with ib.else_scope():
            pass
    A = td.placeholder((4,), "float32", "A")
    a = ib.buffer_ptr(A)
    with pytest.raises(TypeError, match="expected a float32 value, got int32"):
        a[0] = td.const(1, "int32")
    with pytest.raises(IndexError, match="expected 1 indices"):
        a[0, 1]
    with pytest.raises(ValueError, match="kind must be one of"):
        ib.for_range(0, 4, kind="sideways")
    with pytest.raises(ValueError, match="shape must be positive integers"):
        ib.allocate("float32", (0,))
    with pytest.raises(TypeError, match="fcompute must return"):
        td.extern((4,), [A], lambda ins, outs: 3, name="bad")
