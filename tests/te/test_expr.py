import pytest

import tensordsl as td
from tensordsl.ir import nodes as n


def test_python_numbers_adopt_the_other_operand_type():
    x = td.placeholder((4,), dtype="float64", name="x")
    e = x[0] * 2 + 1
    assert e.dtype == "float64"
    i = td.var("i")
    assert (i * 2 + 1).dtype == "int64"
    assert (i * 0.5).dtype == "float32"


def test_mixed_dtypes_promote_to_the_wider_float():
    a = td.placeholder((4,), dtype="float16", name="a")
    b = td.placeholder((4,), dtype="float32", name="b")
    assert (a[0] + b[0]).dtype == "float32"


def test_integer_true_division_is_refused():
    i = td.var("i")
    with pytest.raises(TypeError, match="ambiguous"):
        i / 2


def test_comparisons_build_nodes_and_identity_equality_still_works():
    i, j = td.var("i"), td.var("j")
    assert isinstance(i < j, n.LT)
    assert isinstance(i == j, n.EQ)
    assert i in [j, i]
    assert {i: 1}[i] == 1


def test_expression_truth_value_is_refused():
    i = td.var("i")
    with pytest.raises(TypeError, match="truth value"):
        bool(i < 3)


def test_logical_operators_need_booleans():
    i = td.var("i")
    with pytest.raises(TypeError, match="boolean"):
        td.all(i, i < 2)


def test_nested_reduction_is_refused():
    A = td.placeholder((4, 4), name="A")
    k = td.reduce_axis((0, 4), "k")
    with pytest.raises(ValueError, match="whole body"):
        td.compute((4,), lambda i: td.sum(A[i, k], axis=k) * 2.0)


def test_compute_argument_count_must_match_shape():
    with pytest.raises(ValueError, match="2 dimensions"):
        td.compute((4, 4), lambda i: i)


def test_placeholder_rejects_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=">= 0"):
        td.placeholder((-1,), name="A")
    with pytest.raises(TypeError, match="dtype"):
        td.placeholder((4,), dtype="float13", name="A")
    with pytest.raises(TypeError, match="shape"):
        td.placeholder((4.5,), name="A")


def test_indexing_needs_one_index_per_dimension():
    A = td.placeholder((4, 4), name="A")
    with pytest.raises(IndexError, match="2 dimensions"):
        A[0, 1, 2]
    with pytest.raises(TypeError, match="2 dimensions but is read with 1"):
        td.compute((4,), lambda i: A[i] + 1.0)
    with pytest.raises(TypeError, match="TensorSlice"):
        td.compute((4,), lambda i: td.exp(A[i]))


def test_chained_indexing_reads_one_element():
    """TVM's ``T[i][j]`` is ``T[i, j]``."""
    A = td.placeholder((4, 5), name="A")
    read = A[1][2]
    assert read.tensor == A and [int(i.value) for i in read.indices] == [1, 2]


def test_multi_output_compute_returns_tensors_of_one_op():
    A = td.placeholder((4,), name="A")
    B, C = td.compute((4,), lambda i: (A[i] + 1.0, A[i] * 2.0), name="BC")
    assert B.op is C.op and (B.value_index, C.value_index) == (0, 1)


def test_op_axis_and_reduce_axis():
    A = td.placeholder((5, 7), name="A")
    k = td.reduce_axis((0, 7), "k")
    B = td.compute((5,), lambda i: td.sum(A[i, k], axis=k), name="B")
    assert [iv.name for iv in B.op.axis] == ["i"]
    assert B.op.reduce_axis == (k,)
