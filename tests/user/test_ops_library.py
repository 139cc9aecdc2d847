"""``td.ops`` used as a library, from the user's side: what ``help`` shows, PyTorch/numpy
keyword names, lists and numbers where numpy takes them, numpy's result types."""
import inspect
import pydoc

import numpy as np
import pytest

import tensordsl as td


def test_help_shows_signature_and_docstring():
    op = td.ops.max_pool2d
    assert inspect.isfunction(op)
    sig = inspect.signature(op)
    assert list(sig.parameters) == ["x", "kernel_size", "stride", "padding", "out", "target",
                                    "check_indices"]
    assert sig.parameters["out"].kind is inspect.Parameter.KEYWORD_ONLY
    assert op.__name__ == "max_pool2d" and op.__wrapped__.__module__ == "kernels.dense"
    text = pydoc.render_doc(op, renderer=pydoc.plaintext)
    assert "max_pool2d(x, kernel_size, stride=None, padding=0, *, out=None" in text
    assert "Max over ``kernel_size`` windows" in text and "check_indices" in text


@pytest.mark.parametrize("name", sorted(dir(td.ops)))
def test_every_operator_documented(name):
    op = getattr(td.ops, name)
    doc = inspect.getdoc(op)
    assert doc and ">>> " in doc, name
    # out= documented where taken (an assembled sparse result's size is known only
    # once it is counted: sparse_add takes none)
    assert ("out :" in doc) == ("out" in inspect.signature(op).parameters), name
    assert "name" not in inspect.signature(op).parameters


def test_keyword_names_follow_pytorch_and_numpy():
    params = {name: set(inspect.signature(getattr(td.ops, name)).parameters)
              for name in dir(td.ops)}
    assert {"x", "weight", "stride", "padding", "dilation", "groups"} <= params["conv2d_nchw"]
    assert {"x", "weight", "bias"} <= params["dense"]
    assert {"x", "kernel_size", "stride", "padding"} <= params["avg_pool2d"]
    for name in ("reduce_sum", "reduce_mean", "reduce_max", "softmax", "take"):
        assert "axis" in params[name] and "x" in params[name], name
    for p in params.values():
        assert not p & {"data", "kernel", "A", "B", "W", "dim", "pool_size", "strides"}


def test_keywords_and_positions_give_the_same_result(rng):
    x = rng.standard_normal((2, 3, 9, 9)).astype("float32")
    a = td.ops.max_pool2d(x, 3, 2, 1)
    b = td.ops.max_pool2d(x, kernel_size=3, stride=(2, 2), padding=(1, 1))
    c = td.ops.max_pool2d(x=x, kernel_size=np.int64(3), stride=[2, 2], padding=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    w = rng.standard_normal((4, 3, 3, 3)).astype("float32")
    np.testing.assert_array_equal(td.ops.conv2d_nchw(x, w, 2, 1),
                                  td.ops.conv2d_nchw(x, weight=w, stride=(2, 2), padding=1))


def test_numbers_and_lists_like_numpy():
    x = np.arange(6, dtype="float32").reshape(2, 3)
    for got, want in [(td.ops.add(x, 1.0), np.add(x, 1.0)),
                      (td.ops.subtract(1, x), np.subtract(1, x)),
                      (td.ops.multiply(x, np.float32(2)), np.multiply(x, np.float32(2))),
                      (td.ops.relu([[1, -2]]), np.maximum([[1, -2]], 0)),
                      (td.ops.add([1, 2], [[10], [20]]), np.add([1, 2], [[10], [20]])),
                      (td.ops.maximum(x, [0.5, 1.5, 9.0]), np.maximum(x, [0.5, 1.5, 9.0])),
                      (td.ops.take([[1, 2, 3]], [2, 0], axis=1), np.take([[1, 2, 3]], [2, 0], 1))]:
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_allclose(got, want)


def test_binary_result_types_like_numpy():
    i32, i8 = np.arange(1, 5, dtype="int32"), np.ones(4, "int8")
    f32, f64 = np.ones(4, "float32"), np.full(4, 0.25)
    for a, b, op, ref in [(i32, 1.5, td.ops.add, np.add), (i32, 2, td.ops.divide, np.divide),
                          (f32, f64, td.ops.multiply, np.multiply),
                          (i8, i32, td.ops.add, np.add), (i8, 3, td.ops.multiply, np.multiply)]:
        got, want = op(a, b), ref(a, b)
        assert got.dtype == want.dtype, (op.__name__, a.dtype, b, got.dtype, want.dtype)
        np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("call, argument", [
    (lambda x: td.ops.relu("abc"), "'x'"),
    (lambda x: td.ops.relu({"a": 1}), "'x'"),
    (lambda x: td.ops.add(x, object()), "'b'"),
    (lambda x: td.ops.relu([[1], [2, 3]]), "'x'"),
    (lambda x: td.ops.max_pool2d(x[None, None], 2, stride="2"), "stride"),
    (lambda x: td.ops.max_pool2d(x[None, None], 2, stride=2.0), "stride"),
    (lambda x: td.ops.avg_pool2d(x[None, None], kernel_size=1.5), "kernel_size"),
    (lambda x: td.ops.reduce_sum(x, axis=1.0), "axis"),
    (lambda x: td.ops.take(x, [0], axis="0"), "axis"),
    (lambda x: td.ops.relu(x, dim=1), "dim"),
    (lambda x: td.ops.softmax(), "'x'"),
])
def test_wrong_types_raise_typeerror_naming_the_argument(call, argument):
    x = np.ones((4, 4), "float32")
    td.ops.max_pool2d(x[None, None], 2, stride=2)   # a cached integer stride is no excuse
    with pytest.raises(TypeError, match=argument):
        call(x)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint8", "bool"])
def test_integer_sum_accumulates_like_numpy(dtype):
    x = np.ones(30000, dtype)
    got = td.ops.reduce_sum(x)
    assert got.dtype == np.sum(x).dtype or (dtype == "uint8" and got.dtype == np.int64)
    assert int(got[0]) == 30000
    rows = np.full((3, 200), 100, "int8") if dtype == "int8" else np.ones((3, 200), dtype)
    got = td.ops.reduce_sum(rows, axis=1, keepdims=True)
    want = np.sum(rows, axis=1, keepdims=True)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8", "bool", "float32"])
def test_mean_result_type_like_numpy(dtype):
    x = (np.arange(120) % 7).reshape(4, 30).astype(dtype)
    got, want = td.ops.reduce_mean(x, axis=1), np.mean(x, axis=1)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_reduce_sum_dtype_option(rng):
    x = np.full(300, 100, "int8")
    got = td.ops.reduce_sum(x, dtype="int32")
    assert got.dtype == np.int32 and got[0] == np.sum(x, dtype="int32")
