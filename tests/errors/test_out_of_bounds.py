"""Reads outside a tensor are refused, Halide-style: at build time for static shapes, at
call time (before the kernel runs) for symbolic ones, and as the kernel runs for indices
read from data."""
import numpy as np
import pytest

import tensordsl as td


def _shifted(shape, di):
    A = td.placeholder(shape, name="A")
    B = td.compute(shape, lambda i, j: A[i + di, j], name="B")
    return A, B


@pytest.mark.parametrize("di, where", [(1, r"at 8, which is beyond the max \(7\)"),
                                       (100000, r"at 100007, which is beyond the max \(7\)"),
                                       (-1, r"at -1, which is below the min \(0\)")])
def test_static_out_of_bounds_read_is_a_build_error(di, where):
    A, B = _shifted((8, 5), di)
    with pytest.raises(td.BuildError, match=rf"'B' reads tensor 'A' {where} in dimension 0"):
        td.build(td.create_schedule(B.op), [A, B])


def test_the_message_gives_the_accessed_range_and_the_extent():
    A, B = _shifted((8, 5), 1)
    with pytest.raises(td.BuildError, match=r"accessed range \[1, 8\], extent 8"):
        td.lower(td.create_schedule(B.op), [A, B])


@pytest.mark.parametrize("di", [1, 100000])
def test_symbolic_out_of_bounds_read_is_refused_before_the_kernel_runs(di):
    A, B = _shifted((td.var("n"), td.var("m")), di)
    f = td.build(td.create_schedule(B.op), [A, B])
    b = np.full((8, 5), np.nan, "float32")
    with pytest.raises(ValueError, match=r"'B' reads tensor 'A' at \d+, which is beyond the "
                                         r"max \(7\) in dimension 0"):
        f(np.ones((8, 5), "float32"), b)
    assert np.isnan(b).all()  # the kernel never ran


def test_symbolic_read_checks_only_the_sizes_that_are_out_of_bounds():
    n, m = td.var("n"), td.var("m")
    A = td.placeholder((n,), name="A")
    B = td.compute((m,), lambda i: A[i + 2], name="B")
    f = td.build(td.create_schedule(B.op), [A, B])
    a = np.arange(10, dtype="float32")
    for _ in range(2):   # (sizes that passed are remembered: checked once, not per call)
        b = np.full(8, np.nan, "float32")
        f(a, b)  # reads A[2..9]: fine
        np.testing.assert_array_equal(b, a[2:])
    with pytest.raises(ValueError, match=r"at 10, which is beyond the max \(9\)"):
        f(a, np.full(9, np.nan, "float32"))
    # a bound entry point checks its sizes once, when it is made
    assert f.bound_call({"n": 10, "m": 8}) is not None
    with pytest.raises(ValueError, match=r"at 11, which is beyond the max \(9\)"):
        f.bound_call({"n": 10, "m": 10})


def test_reading_an_intermediate_tensor_out_of_bounds_is_refused():
    A = td.placeholder((8,), name="A")
    B = td.compute((8,), lambda i: A[i] * 2.0, name="B")
    C = td.compute((8,), lambda i: B[i + 1], name="C")
    with pytest.raises(td.BuildError, match=r"'C' reads tensor 'B' at 8"):
        td.build(td.create_schedule(C.op), [A, C])


@pytest.mark.parametrize("n_value", [1, 6])
def test_reads_guarded_by_if_then_else_are_accepted(n_value):
    n = td.var("n")
    A = td.placeholder((n,), name="A")
    B = td.compute((n,), lambda i: td.if_then_else(i + 1 < n, A[i + 1], 0.0)
                   + td.if_then_else(i >= 1, A[i - 1], 0.0), name="B")
    f = td.build(td.create_schedule(B.op), [A, B])
    a = np.arange(1, n_value + 1, dtype="float32")
    b = np.full(n_value, np.nan, "float32")
    f(a, b)
    want = np.concatenate([a[1:], [0]]) + np.concatenate([[0], a[:-1]])
    np.testing.assert_array_equal(b, want)


def test_padding_guarded_by_a_conjunction_on_the_index_is_accepted():
    A = td.placeholder((6, 6), name="A")
    P = td.compute((8, 8), lambda y, x: td.if_then_else(
        td.all(y - 1 >= 0, y - 1 < 6, x >= 1, x < 7), A[y - 1, x - 1], 0.0), name="P")
    f = td.build(td.create_schedule(P.op), [A, P])
    a = np.random.default_rng(0).random((6, 6), dtype="float32")
    p = np.full((8, 8), np.nan, "float32")
    f(a, p)
    np.testing.assert_array_equal(p, np.pad(a, 1))


def test_reduction_where_condition_guards_its_reads():
    A = td.placeholder((10,), name="A")
    k = td.reduce_axis((0, 12), "k")
    B = td.compute((1,), lambda i: td.sum(A[k], axis=k, where=k < 10), name="B")
    f = td.build(td.create_schedule(B.op), [A, B])
    a = np.arange(10, dtype="float32")
    b = np.full(1, np.nan, "float32")
    f(a, b)
    assert b[0] == a.sum()


def test_select_evaluates_both_values_so_it_does_not_guard():
    A = td.placeholder((8,), name="A")
    B = td.compute((8,), lambda i: td.select(i + 1 < 8, A[i + 1], 0.0), name="B")
    with pytest.raises(td.BuildError, match="'B' reads tensor 'A' at 8"):
        td.build(td.create_schedule(B.op), [A, B])


def _gather(vectorize):
    n, m = td.var("n"), td.var("m")
    A = td.placeholder((m, 16), name="A")
    idx = td.placeholder((n,), dtype="int32", name="idx")
    B = td.compute((n, 16), lambda i, j: A[idx[i], j] * 2.0, name="B")
    s = td.create_schedule(B.op)
    if vectorize:
        s[B].vectorize(B.op.axis[1])
        s[B].parallel(B.op.axis[0])
    return s, [A, idx, B]


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("bad", [10, -1, 1 << 40])
def test_data_dependent_index_is_checked_as_the_kernel_runs(vectorize, bad):
    s, args = _gather(vectorize)
    f = td.build(s, args)
    a = np.random.default_rng(1).random((10, 16), dtype="float32")
    ix = np.array([3, 0, 9, 2], "int32")
    b = np.full((4, 16), np.nan, "float32")
    f(a, ix, b)
    np.testing.assert_array_equal(b, a[ix] * 2)
    ix[2] = np.int32(bad) if -2**31 <= bad < 2**31 else np.int32(-7)
    with pytest.raises(ValueError, match=rf"'B' reads tensor 'A' at index {ix[2]} in "
                                         r"dimension 0, outside its extent 10"):
        f(a, ix, b)


def test_checked_reads_can_be_switched_off():
    s, args = _gather(False)
    assert "index_error" in str(td.lower(s, args))
    assert "index_error" not in str(td.lower(s, args, check_indices=False))
    f = td.build(s, args, check_indices=False)
    a = np.random.default_rng(2).random((10, 16), dtype="float32")
    ix = np.array([1, 2], "int32")
    b = np.full((2, 16), np.nan, "float32")
    f(a, ix, b)
    np.testing.assert_array_equal(b, a[ix] * 2)


def test_ops_take_checks_its_indices_by_default():
    x = np.random.default_rng(3).random((5, 7), dtype="float32")
    for axis in (0, 1, -1):
        ix = np.array([[4, 0], [2, 2]])
        np.testing.assert_array_equal(td.ops.take(x, ix, axis=axis), np.take(x, ix, axis=axis))
    with pytest.raises(ValueError, match="at index 5 in dimension 0, outside its extent 5"):
        td.ops.take(x, np.array([5, 0]), axis=0)
    np.testing.assert_array_equal(td.ops.take(x, np.array([1]), check_indices=False), x[[1]])


def test_a_where_condition_bounds_a_fused_index_inside_a_division():
    # rfactor of a fused reduction reads x[(o*8 + r) // 7, (o*8 + r) % 7] where
    # o*8 + r < 21: the interval of o*8 + r alone reaches 23, whose row (3) is outside
    x = td.placeholder((3, 7), name="x")
    o = td.reduce_axis((0, 3), "o")
    r = td.reduce_axis((0, 8), "r")
    B = td.compute((1,), lambda i: td.sum(x[(o * 8 + r) // 7, (o * 8 + r) % 7], axis=[o, r],
                                          where=o * 8 + r < 21), name="B")
    f = td.build(td.create_schedule(B.op), [x, B])
    a = np.random.default_rng(4).random((3, 7), dtype="float32")
    b = np.full(1, np.nan, "float32")
    f(a, b)
    np.testing.assert_allclose(b, [a.sum()], rtol=1e-6)


def test_a_where_condition_bounds_a_division_the_simplifier_pulls_apart():
    # x[(o*6 + r) // 2] under o*6 + r < 7: simplified, the index is o*3 + r // 2, a sum
    # the condition does not bound (its interval reaches 5); as written it is at most 3
    x = td.placeholder((4,), name="x")
    o = td.reduce_axis((0, 2), "o")
    r = td.reduce_axis((0, 6), "r")
    B = td.compute((1,), lambda i: td.sum(x[(o * 6 + r) // 2], axis=[o, r],
                                          where=o * 6 + r < 7), name="B")
    f = td.build(td.create_schedule(B.op), [x, B])
    a = np.random.default_rng(5).random(4, dtype="float32")
    b = np.full(1, np.nan, "float32")
    f(a, b)
    np.testing.assert_allclose(b, [2 * a[:3].sum() + a[3]], rtol=1e-6)


def test_a_packed_tensor_read_by_an_rfactor_of_a_guarded_split_is_accepted():
    # the fuzzer's find (seed 3367392594): pack(X, axis 0, by 2) read by S's rfactor
    # over r split by 6 (7 = 6 + 1, guarded)
    X = td.placeholder((7, 1), name="X")
    r = td.reduce_axis((0, 7), "r")
    S = td.compute((1,), lambda i: td.sum(X[r, i], axis=r), name="S")
    s = td.create_schedule(S.op)
    s.pack(X, 0, 2, [S])
    ro, _ = s[S].split(S.op.reduce_axis[0], factor=6)
    s.rfactor(S, ro)
    f = td.build(s, [X, S])
    a = np.random.default_rng(6).random((7, 1), dtype="float32")
    b = np.full(1, np.nan, "float32")
    f(a, b)
    np.testing.assert_allclose(b, a.sum(0), rtol=1e-6)


def test_a_condition_with_other_variables_bounds_the_index_by_their_range():
    # a prefix sum split by 4: A[ko*4 + ki] under ko*4 + ki < i + 1, i < n
    n = td.var("n")
    A = td.placeholder((n,), name="A")
    ko = td.reduce_axis((0, (n + 3) // 4), "ko")
    ki = td.reduce_axis((0, 4), "ki")
    B = td.compute((n,), lambda i: td.sum(A[ko * 4 + ki], axis=[ko, ki],
                                          where=ko * 4 + ki < i + 1), name="B")
    f = td.build(td.create_schedule(B.op), [A, B])
    for size in (1, 6):
        a = np.arange(1, size + 1, dtype="float32")
        b = np.full(size, np.nan, "float32")
        f(a, b)
        np.testing.assert_array_equal(b, np.cumsum(a))


def test_data_dependent_index_is_checked_on_the_gpu_path_too():
    n, m = td.var("n"), td.var("m")
    A = td.placeholder((m, 16), name="A")
    idx = td.placeholder((n,), dtype="int32", name="idx")
    B = td.compute((n, 16), lambda i, j: A[idx[i], j] * 2.0, name="B")
    s = td.create_schedule(B.op)
    s[B].bind(B.op.axis[0], td.thread_axis("blockIdx.x"))
    s[B].bind(B.op.axis[1], td.thread_axis("threadIdx.x"))
    f = td.build(s, [A, idx, B], target="cuda -arch=sm_80")
    a = np.random.default_rng(5).random((10, 16), dtype="float32")
    ix = np.array([3, 0, 9, 2], "int32")
    b = np.full((4, 16), np.nan, "float32")
    f.emulate(a, ix, b)
    np.testing.assert_array_equal(b, a[ix] * 2)
    ix[1] = 10
    with pytest.raises(ValueError, match="'B' reads tensor 'A' at index 10 in dimension 0"):
        f.emulate(a, ix, b)

