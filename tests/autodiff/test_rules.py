"""One derivative rule at a time (autodiff/derivative.py, reductions.py, solve.py): each
adjoint against central differences in float64 and, where the rule has a closed form,
against that form written in numpy; the documented tie rules against numpy's argmax; the
API's contract (names and shapes of created placeholders, lists vs tensors, errors)."""
import math

import numpy as np
import pytest

import kernels.dense as K
import tensordsl as td
from tensordsl.te.tensor import PlaceholderOp

from .fd import (Kernel, assert_close, check_adjoints, check_grad, check_hvp, check_jvp,
                 placeholders, random_values, static_shape)


def ph(shape, name, dtype="float64"):
    return td.placeholder(shape, dtype=dtype, name=name)


def away_from_zero(rng, shape, low=0.1, high=1.0):
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, shape)


SHAPE = (5, 7)


# ---------------------------------------------------------------- intrinsics


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


# name: (td function, numpy derivative, values)
UNARY = {
    "exp": (td.exp, np.exp, (-1, 1)),
    "log": (td.log, lambda v: 1 / v, (0.3, 2)),
    "sqrt": (td.sqrt, lambda v: 0.5 / np.sqrt(v), (0.3, 2)),
    "tanh": (td.tanh, lambda v: 1 - np.tanh(v) ** 2, (-2, 2)),
    "erf": (td.erf, lambda v: 2 / math.sqrt(math.pi) * np.exp(-v * v), (-2, 2)),
    "sigmoid": (td.sigmoid, lambda v: _sigmoid(v) * (1 - _sigmoid(v)), (-3, 3)),
    "abs": (td.abs, np.sign, "away_from_zero"),
    "neg": (lambda v: -v, lambda v: -np.ones_like(v), (-1, 1)),
    "pow_const_int": (lambda v: td.pow(v, 3.0), lambda v: 3 * v * v, (-1.5, 1.5)),
    "pow_const_frac": (lambda v: td.pow(v, 2.5), lambda v: 2.5 * v ** 1.5, (0.3, 2)),
    "pow_const_base": (lambda v: td.pow(2.0, v), lambda v: 2.0 ** v * math.log(2.0), (-2, 2)),
    "floor": (td.floor, np.zeros_like, (-3, 3)),
    "ceil": (td.ceil, np.zeros_like, (-3, 3)),
    "round": (td.round, np.zeros_like, (-3, 3)),
    "square": (lambda v: v * v, lambda v: 2 * v, (-1, 1)),
    "reciprocal": (lambda v: 1.0 / v, lambda v: -1 / (v * v), "away_from_zero"),
    "const_minus": (lambda v: 2.0 - v, lambda v: -np.ones_like(v), (-1, 1)),
}


def _unary_values(rng, domain, shape=SHAPE):
    if domain == "away_from_zero":
        return away_from_zero(rng, shape, 0.2, 1.5)
    return rng.uniform(*domain, shape)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_rule_matches_its_derivative_and_differences(rng, name):
    fn, deriv, domain = UNARY[name]
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: fn(x[i, j]), name="y")
    values = {x: _unary_values(rng, domain)}
    head = rng.standard_normal(SHAPE)
    (g,) = check_grad(y, [x], values, rng, head=head)
    assert_close(g, head * deriv(values[x]), f"d{name}")


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "erf", "sigmoid", "abs", "pow_const_frac",
                                  "floor"])
def test_unary_rule_forward_mode(rng, name):
    fn, deriv, domain = UNARY[name]
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: fn(x[i, j]), name="y")
    values = {x: _unary_values(rng, domain)}
    ty, (t,) = check_jvp(y, [x], values, rng)
    assert_close(ty, t * deriv(values[x]), f"tangent of {name}")


def test_pow_with_a_tensor_exponent(rng):
    a, b = ph(SHAPE, "a"), ph(SHAPE, "b")
    y = td.compute(SHAPE, lambda i, j: td.pow(a[i, j], b[i, j]), name="y")
    values = {a: rng.uniform(0.3, 2, SHAPE), b: rng.uniform(-1.5, 1.5, SHAPE)}
    head = rng.standard_normal(SHAPE)
    ga, gb = check_grad(y, [a, b], values, rng, head=head)
    av, bv = values[a], values[b]
    assert_close(ga, head * bv * av ** (bv - 1), "d pow / d base")
    assert_close(gb, head * av ** bv * np.log(av), "d pow / d exponent")
    check_jvp(y, [a, b], values, rng)


# ---------------------------------------------------------------- arithmetic


BINARY = {
    "add": (lambda p, q: p + q, lambda p, q: (1.0, 1.0)),
    "sub": (lambda p, q: p - q, lambda p, q: (1.0, -1.0)),
    "mul": (lambda p, q: p * q, lambda p, q: (q, p)),
    "div": (lambda p, q: p / q, lambda p, q: (1 / q, -p / (q * q))),
    "mixed": (lambda p, q: (p * q - 3.0 * p) / (q * q + 1.0),
              lambda p, q: ((q - 3) / (q * q + 1),
                            p / (q * q + 1) - (p * q - 3 * p) * 2 * q / (q * q + 1) ** 2)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_arithmetic_rule(rng, name):
    fn, deriv = BINARY[name]
    a, b = ph(SHAPE, "a"), ph(SHAPE, "b")
    y = td.compute(SHAPE, lambda i, j: fn(a[i, j], b[i, j]), name="y")
    values = {a: rng.uniform(-1, 1, SHAPE), b: away_from_zero(rng, SHAPE, 0.5, 2)}
    head = rng.standard_normal(SHAPE)
    ga, gb = check_grad(y, [a, b], values, rng, head=head)
    da, db = deriv(values[a], values[b])
    assert_close(ga, head * da, f"d{name}/da")
    assert_close(gb, head * db, f"d{name}/db")


def test_one_tensor_read_twice_in_an_expression(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: x[i, j] * x[i, j] * x[i, j] - x[i, j], name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(SHAPE)
    (g,) = check_grad(y, [x], values, rng, head=head)
    assert_close(g, head * (3 * values[x] ** 2 - 1), "d(x^3 - x)")


# ---------------------------------------------------------------- max, min: the tie rule


@pytest.mark.parametrize("which", ["maximum", "minimum"])
def test_maximum_minimum_without_ties(rng, which):
    a, b = ph(SHAPE, "a"), ph(SHAPE, "b")
    op = getattr(td, which)
    y = td.compute(SHAPE, lambda i, j: op(a[i, j], b[i, j]) * 2.0, name="y")
    values = random_values(rng, [a, b])
    head = rng.standard_normal(SHAPE)
    ga, gb = check_grad(y, [a, b], values, rng, head=head)
    a_wins = values[a] > values[b] if which == "maximum" else values[a] < values[b]
    assert_close(ga, 2 * head * a_wins, f"{which}: d/da")
    assert_close(gb, 2 * head * ~a_wins, f"{which}: d/db")


@pytest.mark.parametrize("which", ["maximum", "minimum"])
def test_maximum_minimum_tie_goes_to_the_second_operand(rng, which):
    a, b = ph(SHAPE, "a"), ph(SHAPE, "b")
    op = getattr(td, which)
    y = td.compute(SHAPE, lambda i, j: op(a[i, j], b[i, j]), name="y")
    av = rng.standard_normal(SHAPE)
    bv = av.copy()
    bv[::2] = rng.standard_normal(bv[::2].shape)        # rows 1 and 3 tie exactly
    head = rng.standard_normal(SHAPE)
    (ga, gb), head_t = td.vjp(y, [a, b])
    values = {a: av, b: bv, head_t: head}
    strictly = av > bv if which == "maximum" else av < bv
    assert_close(Kernel(ga)(values), head * strictly, f"{which}: d/da (ties: 0)")
    assert_close(Kernel(gb)(values), head * ~strictly, f"{which}: d/db (ties: all)")


def test_relu_derivative_at_zero_is_zero(rng):
    x = ph(SHAPE, "x")
    y = K.relu(x)
    xv = rng.standard_normal(SHAPE)
    xv[1::2, ::3] = 0.0
    head = rng.standard_normal(SHAPE)
    (g,), head_t = td.vjp(y, [x])
    assert_close(Kernel(g)({x: xv, head_t: head}), head * (xv > 0), "relu'")


def test_maximum_of_a_value_with_itself_has_derivative_one(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: td.maximum(x[i, j], x[i, j]), name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(SHAPE)
    (g,) = check_grad(y, [x], values, rng, head=head)
    assert_close(g, head, "d max(x, x)")


# ---------------------------------------------------------------- selects


def test_select_on_data_takes_the_chosen_arm(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: td.select(x[i, j] > 0.2, x[i, j] * x[i, j], 3.0 * x[i, j]),
                   name="y")
    xv = rng.uniform(-1, 1, SHAPE)
    xv[np.abs(xv - 0.2) < 0.01] = 0.5     # no finite difference across the switch
    head = rng.standard_normal(SHAPE)
    (g,) = check_grad(y, [x], {x: xv}, rng, head=head)
    assert_close(g, head * np.where(xv > 0.2, 2 * xv, 3.0), "d select")
    check_jvp(y, [x], {x: xv}, rng)


def test_if_then_else_on_an_index_guards_a_shifted_read(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: td.if_then_else(
        i >= 1, x[i - 1, j] * 2.0, td.exp(x[i, j])), name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(SHAPE)
    (g,) = check_grad(y, [x], values, rng, head=head)
    expected = np.zeros(SHAPE)
    expected[:-1] += 2 * head[1:]
    expected[0] += head[0] * np.exp(values[x][0])
    assert_close(g, expected, "d if_then_else")
    check_jvp(y, [x], values, rng)


# ---------------------------------------------------------------- casts


def test_float32_input_read_as_float64(rng):
    x, w = ph(SHAPE, "x", "float32"), ph(SHAPE, "w")
    y = td.compute(SHAPE, lambda i, j: x[i, j].astype("float64") * w[i, j], name="y")
    xv, wv = rng.standard_normal(SHAPE).astype("float32"), rng.standard_normal(SHAPE)
    head = rng.standard_normal(SHAPE)
    (gx, gw), head_t = td.vjp(y, [x, w])
    assert gx.dtype == "float32" and gw.dtype == "float64"
    values = {x: xv, w: wv, head_t: head}
    assert_close(Kernel(gx)(values), (head * wv).astype("float32"), "d/dx (float32)", rtol=1e-6)
    assert_close(Kernel(gw)(values), head * xv.astype("float64"), "d/dw")


def test_float64_input_through_a_float32_result(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: td.exp(x[i, j].astype("float32")), name="y")
    assert y.dtype == "float32"
    xv = rng.uniform(-1, 1, SHAPE)
    head = rng.standard_normal(SHAPE).astype("float32")
    (gx,), head_t = td.vjp(y, [x])
    assert gx.dtype == "float64"
    expected = head.astype("float64") * np.exp(xv.astype("float32")).astype("float64")
    assert_close(Kernel(gx)({x: xv, head_t: head}), expected, "d exp(float32(x))", rtol=1e-6)


def test_an_integer_cast_carries_no_derivative(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: x[i, j].astype("int32").astype("float64") * x[i, j],
                   name="y")
    xv = rng.uniform(-5, 5, SHAPE)
    xv[np.abs(xv - np.round(xv)) < 1e-3] += 0.01   # no difference across an integer
    head = rng.standard_normal(SHAPE)
    np.testing.assert_array_equal(Kernel(y)({x: xv}), np.trunc(xv) * xv)   # C's cast
    (g,) = check_grad(y, [x], {x: xv}, rng, head=head)
    assert_close(g, head * np.trunc(xv), "d (int(x) * x)")
    only_int = td.compute(SHAPE, lambda i, j: x[i, j].astype("int64").astype("float64"), name="z")
    (gz,), head_z = td.vjp(only_int, [x])
    np.testing.assert_array_equal(Kernel(gz)({x: xv, head_z: head}), np.zeros(SHAPE))


# ---------------------------------------------------------------- index patterns (solve.py)


# name: (x shape, y shape, the index x is read at as a function of y's index: written
# once, evaluated on td variables for the compute and on numpy arrays for the reference)
PATTERNS = {
    "shift": ((9,), (6,), lambda i: (i + 3,)),
    "stride": ((13,), (6,), lambda i: (2 * i + 1,)),
    "reverse": ((7,), (7,), lambda i: (6 - i,)),
    "upsample": ((5,), (9,), lambda i: (i // 2,)),
    "modulo": ((3,), (10,), lambda i: (i % 3,)),
    "constant": ((4,), (6,), lambda i: (2,)),
    "diagonal": ((5, 5), (5,), lambda i: (i, i)),
    "transpose": ((5, 7), (7, 5), lambda i, j: (j, i)),
    "flatten": ((3, 5), (15,), lambda i: (i // 5, i % 5)),
    "unflatten": ((15,), (3, 5), lambda i, j: (i * 5 + j,)),
    "strided_2d": ((11, 9), (4, 3), lambda i, j: (3 * i + 1, 2 * j + 2)),
    "window": ((12,), (5, 4), lambda i, j: (i + j,)),
    "anti_window": ((10,), (5, 5), lambda i, j: (i - j + 4,)),
    "overlapping_stride": ((13,), (5, 4), lambda i, j: (2 * i + j,)),
    "skewed_2d": ((7, 9), (5, 3), lambda i, j: (i + 1, i + 2 * j)),
    "broadcast_row": ((7,), (5, 7), lambda i, j: (j,)),
    # no affine solution: accumulated over the reading domain, still exact
    "square_mod": ((7,), (10,), lambda i: ((i * i) % 7,)),
    "clamped": ((7,), (9,), lambda i: (_clamp(i - 1, 0, 6),)),
}


def _clamp(e, lo, hi):
    if isinstance(e, np.ndarray):
        return np.clip(e, lo, hi)
    return td.maximum(td.minimum(e, hi), lo)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_index_pattern_adjoint_is_a_correct_gather(rng, name):
    xshape, yshape, at = PATTERNS[name]
    x = ph(xshape, "x")
    y = td.compute(yshape, lambda *i: td.tanh(x[at(*i)]) * 1.5, name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(yshape)
    (g,) = check_grad(y, [x], values, rng, head=head)
    where = at(*np.indices(yshape))
    where = tuple(np.broadcast_to(w, yshape) for w in where)
    expected = np.zeros(xshape)
    np.add.at(expected, where, head * 1.5 * (1 - np.tanh(values[x][where]) ** 2))
    assert_close(g, expected, f"adjoint of a {name} read")


def test_strided_window_reduction(rng):
    x, w = ph((13,), "x"), ph((4,), "w")
    k = td.reduce_axis((0, 4), "k")
    y = td.compute((5,), lambda i: td.sum(x[2 * i + k] * w[k], axis=k), name="y")
    values = random_values(rng, [x, w])
    head = rng.standard_normal((5,))
    gx, gw = check_grad(y, [x, w], values, rng, head=head)
    ex, ew = np.zeros(13), np.zeros(4)
    for i in range(5):
        ex[2 * i:2 * i + 4] += head[i] * values[w]
        ew += head[i] * values[x][2 * i:2 * i + 4]
    assert_close(gx, ex, "d/dx of a strided window")
    assert_close(gw, ew, "d/dw of a strided window")


# ---------------------------------------------------------------- broadcasting


@pytest.mark.parametrize("op,a_shape,b_shape", [
    ("add", (5, 1), (1, 7)),
    ("subtract", (5, 7), (7,)),
    ("multiply", (5, 3, 7), (3, 1)),
    ("divide", (3, 1, 4), (5, 4)),
])
def test_broadcasting_reduces_the_adjoint_over_the_broadcast_axes(rng, op, a_shape, b_shape):
    a, b = ph(a_shape, "a"), ph(b_shape, "b")
    y = getattr(K, op)(a, b)
    values = {a: rng.uniform(-1, 1, a_shape), b: away_from_zero(rng, b_shape, 0.5, 2)}
    head = rng.standard_normal(static_shape(y))
    ga, gb = check_grad(y, [a, b], values, rng, head=head)
    av, bv = values[a], values[b]
    da, db = {"add": (1.0, 1.0), "subtract": (1.0, -1.0), "multiply": (bv, av),
              "divide": (1 / bv, -av / (bv * bv))}[op]
    assert_close(ga, _unbroadcast(head * da, a_shape), f"{op}: d/da")
    assert_close(gb, _unbroadcast(head * db, b_shape), f"{op}: d/db")


def _unbroadcast(g, shape):
    g = np.broadcast_to(g, np.broadcast_shapes(g.shape, shape))
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    return g.sum(axis=tuple(d for d, s in enumerate(shape) if s == 1), keepdims=True)


def test_a_scalar_element_broadcast_to_every_output(rng):
    x = ph((4,), "x")
    y = td.compute(SHAPE, lambda i, j: x[2] * x[3] + x[0], name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(SHAPE)
    (g,) = check_grad(y, [x], values, rng, head=head)
    xv = values[x]
    assert_close(g, np.array([1, 0, xv[3], xv[2]]) * head.sum(), "d of a constant read")


# ---------------------------------------------------------------- reductions


def test_sum_with_an_index_condition(rng):
    x = ph((6, 6), "x")
    k = td.reduce_axis((0, 6), "k")
    y = td.compute((6,), lambda i: td.sum(x[i, k] * x[i, k], axis=k, where=k <= i), name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(6)
    (g,) = check_grad(y, [x], values, rng, head=head)
    assert_close(g, np.tril(2 * values[x]) * head[:, None], "d sum(where=k <= i)")


def test_sum_with_a_data_condition(rng):
    x = ph(SHAPE, "x")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda i: td.sum(td.exp(x[i, k]), axis=k, where=x[i, k] > 0.0), name="y")
    xv = away_from_zero(rng, SHAPE, 0.05, 1)
    head = rng.standard_normal(5)
    (g,) = check_grad(y, [x], {x: xv}, rng, head=head)
    assert_close(g, (xv > 0) * np.exp(xv) * head[:, None], "d sum(where=x > 0)")
    check_jvp(y, [x], {x: xv}, rng)


def test_sum_over_two_axes_and_jvp(rng):
    x = ph((3, 4, 5), "x")
    r, s = td.reduce_axis((0, 3), "r"), td.reduce_axis((0, 5), "s")
    y = td.compute((4,), lambda j: td.sum(td.sigmoid(x[r, j, s]), axis=[r, s]), name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(4)
    (g,) = check_grad(y, [x], values, rng, head=head)
    sig = _sigmoid(values[x])
    assert_close(g, sig * (1 - sig) * head[None, :, None], "d sum over two axes")
    check_jvp(y, [x], values, rng)


@pytest.mark.parametrize("which", ["max", "min"])
def test_max_min_reduction_without_ties(rng, which):
    x = ph(SHAPE, "x")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda i: getattr(td, which)(x[i, k] * 3.0, axis=k), name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(5)
    (g,) = check_grad(y, [x], values, rng, head=head)
    arg = (np.argmax if which == "max" else np.argmin)(values[x], axis=1)
    expected = np.zeros(SHAPE)
    expected[np.arange(5), arg] = 3 * head
    assert_close(g, expected, f"d {which}")
    check_jvp(y, [x], values, rng)


@pytest.mark.parametrize("which", ["max", "min"])
def test_max_min_reduction_tie_goes_to_the_first_element(rng, which):
    x = ph((6, 7), "x")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((6,), lambda i: getattr(td, which)(x[i, k], axis=k), name="y")
    sign = 1.0 if which == "max" else -1.0
    xv = rng.uniform(-1, 1, (6, 7))
    xv[0, [2, 5]] = 2.0 * sign        # two tied extremes
    xv[1, [0, 6]] = 2.0 * sign        # at both ends
    xv[2, [1, 3, 4]] = 2.0 * sign     # three
    xv[3, :] = 0.5                    # every element
    xv[4, [6, 3]] = 2.0 * sign
    head = rng.standard_normal(6)
    (g,), head_t = td.vjp(y, [x])
    arg = (np.argmax if which == "max" else np.argmin)(xv, axis=1)   # numpy: the first
    expected = np.zeros((6, 7))
    expected[np.arange(6), arg] = head
    assert_close(Kernel(g)({x: xv, head_t: head}), expected, f"d {which} with ties")


def test_max_over_two_axes_tie_goes_to_the_first_in_row_major_order(rng):
    x = ph((3, 3, 4), "x")
    a, b = td.reduce_axis((0, 3), "a"), td.reduce_axis((0, 4), "b")
    y = td.compute((3,), lambda i: td.max(x[i, a, b], axis=[a, b]), name="y")
    xv = rng.uniform(-1, 1, (3, 3, 4))
    xv[0, 0, 3] = xv[0, 1, 0] = 5.0   # (0, 3) comes first although its b is larger
    xv[1, 2, 1] = xv[1, 1, 2] = 5.0   # (1, 2) first although its b is larger
    xv[2, :, :] = -0.25               # every element
    head = rng.standard_normal(3)
    (g,), head_t = td.vjp(y, [x])
    first = np.argmax(xv.reshape(3, 12), axis=1)
    expected = np.zeros((3, 12))
    expected[np.arange(3), first] = head
    assert_close(Kernel(g)({x: xv, head_t: head}), expected.reshape(3, 3, 4),
                 "d max over (a, b) with ties")


def test_max_reduction_over_the_leading_axis(rng):
    x = ph((7, 5), "x")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda j: td.max(x[k, j], axis=k), name="y")
    xv = rng.uniform(-1, 1, (7, 5))
    xv[[1, 4], 2] = 3.0
    head = rng.standard_normal(5)
    (g,), head_t = td.vjp(y, [x])
    expected = np.zeros((7, 5))
    expected[np.argmax(xv, axis=0), np.arange(5)] = head
    assert_close(Kernel(g)({x: xv, head_t: head}), expected, "d max over axis 0")


def test_a_user_comm_reducer_is_refused_by_name():
    x = ph(SHAPE, "x")
    prod = td.comm_reducer(lambda p, q: p * q, lambda d: td.const(1, d), name="prod")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda i: prod(x[i, k], axis=k), name="y")
    with pytest.raises(td.TensorDSLError, match="prod"):
        td.grad(y, x)
    with pytest.raises(td.TensorDSLError, match="prod"):
        td.jvp(y, x)


@pytest.mark.parametrize("which", ["max", "min"])
def test_hvp_through_a_max_min_reduction(rng, which):
    """Forward over reverse through the argmax mask the reverse pass creates: the mask is
    piecewise constant, so H v = 2 v at the chosen element."""
    x = ph(SHAPE, "x")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda i: getattr(td, which)(x[i, k] * x[i, k], axis=k), name="y")
    values = random_values(rng, [x])
    hv = check_hvp(y, x, values, rng)
    arg = (np.argmax if which == "max" else np.argmin)(values[x] ** 2, axis=1)
    assert (hv[np.arange(5), arg] != 0).all()
    hv[np.arange(5), arg] = 0
    np.testing.assert_array_equal(hv, 0.0)


# ---------------------------------------------------------------- graphs


def test_several_consumers_sum_their_adjoints(rng):
    x = ph(SHAPE, "x")
    a = td.compute(SHAPE, lambda i, j: x[i, j] * 2.0, name="a")
    b = td.compute(SHAPE, lambda i, j: x[i, j] * x[i, j], name="b")
    y = td.compute(SHAPE, lambda i, j: a[i, j] * b[i, j] + td.exp(x[i, j]) + a[i, j], name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(SHAPE)
    (g,) = check_grad(y, [x], values, rng, head=head)
    xv = values[x]
    assert_close(g, head * (6 * xv * xv + np.exp(xv) + 2), "adjoints of three paths")
    check_jvp(y, [x], values, rng)


def test_a_diamond_through_reductions(rng):
    x = ph(SHAPE, "x")
    k = td.reduce_axis((0, 7), "k")
    m = td.compute((5,), lambda i: td.sum(x[i, k], axis=k), name="m")
    c = td.compute(SHAPE, lambda i, j: x[i, j] - m[i] * (1 / 7), name="c")
    k2 = td.reduce_axis((0, 7), "k2")
    y = td.compute((5,), lambda i: td.sum(c[i, k2] * c[i, k2], axis=k2), name="y")
    values = random_values(rng, [x])
    check_grad(y, [x], values, rng)
    check_jvp(y, [x], values, rng)


@pytest.mark.parametrize("read", ["both", "first", "second"])
def test_multi_output_compute(rng, read):
    x, w = ph(SHAPE, "x"), ph(SHAPE, "w")
    s, p = td.compute(SHAPE, lambda i, j: (x[i, j] + w[i, j], x[i, j] * w[i, j]), name="sp")
    if read == "both":
        y = td.compute(SHAPE, lambda i, j: s[i, j] * s[i, j] + p[i, j], name="y")
    else:
        y = s if read == "first" else p
    values = random_values(rng, [x, w])
    head = rng.standard_normal(SHAPE)
    gx, gw = check_grad(y, [x, w], values, rng, head=head)
    xv, wv = values[x], values[w]
    ex, ew = {"both": (2 * (xv + wv) + wv, 2 * (xv + wv) + xv), "first": (1.0, 1.0),
              "second": (wv, xv)}[read]
    assert_close(gx, head * ex, "d/dx through a multi-output compute")
    assert_close(gw, head * ew, "d/dw through a multi-output compute")


def test_an_input_y_does_not_read_gets_zeros(rng):
    x, z = ph(SHAPE, "x"), ph((3, 4), "z")
    y = td.compute(SHAPE, lambda i, j: td.exp(x[i, j]), name="y")
    gx, gz = td.grad(y, [x, z])
    assert static_shape(gz) == (3, 4) and gz.dtype == "float64"
    values = {x: rng.standard_normal(SHAPE), z: rng.standard_normal((3, 4))}
    np.testing.assert_array_equal(Kernel(gz)(values), np.zeros((3, 4)))
    assert_close(Kernel(gx)(values), np.exp(values[x]), "d/dx with the default head")


def test_y_itself_as_x_gets_the_head(rng):
    """dy/dy is the head (ones by default), as a compute like every other result."""
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: x[i, j] * 2.0, name="y")
    xv, head = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    gx, gy = td.grad(y, [x, y])
    assert gy is not None, "td.grad(y, [x, y]) gave None for y's own adjoint"
    assert_close(Kernel(gy)({x: xv}), np.ones(SHAPE), "dy/dy, default head")
    assert_close(Kernel(gx)({x: xv}), 2 * np.ones(SHAPE), "dy/dx beside it")
    (gy,), head_t = td.vjp(y, [y])
    assert_close(Kernel(gy)({x: xv, head_t: head}), head, "dy/dy, given head")


def test_an_intermediate_tensor_as_x(rng):
    x = ph(SHAPE, "x")
    a = td.compute(SHAPE, lambda i, j: td.tanh(x[i, j]), name="a")
    y = td.compute(SHAPE, lambda i, j: a[i, j] * a[i, j] * x[i, j], name="y")
    (ga,), head_t = td.vjp(y, [a])
    xv, head = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    # y as a function of a (x held): dy/da = 2 a x
    assert_close(Kernel(ga)({x: xv, head_t: head}), head * 2 * np.tanh(xv) * xv, "d/da")


def test_an_integer_x_is_refused_by_name(rng):
    w, idx = ph((5,), "w"), ph((5,), "idx", "int32")
    y = td.compute((5,), lambda i: idx[i].astype("float64") * w[i], name="y")
    with pytest.raises((td.TensorDSLError, TypeError, ValueError), match="idx"):
        td.grad(y, [w, idx])
    with pytest.raises((td.TensorDSLError, TypeError, ValueError), match="idx"):
        td.jvp(y, [idx])


def test_an_integer_index_input_beside_the_float_ones(rng):
    x, idx = ph((6, 4), "x"), ph((9,), "idx", "int32")
    y = td.compute((9, 4), lambda i, j: x[idx[i], j] * x[idx[i], j], name="y")
    iv = np.array([0, 5, 5, 2, 0, 5, 1, 3, 3], "int32")
    xv = rng.standard_normal((6, 4))
    head = rng.standard_normal((9, 4))
    (g,) = check_grad(y, [x], {x: xv, idx: iv}, rng, head=head)
    expected = np.zeros((6, 4))
    np.add.at(expected, iv, 2 * xv[iv] * head)
    assert_close(g, expected, "d/dx of a gather through data")


# ---------------------------------------------------------------- the API's contract


def test_grad_returns_a_tensor_for_a_tensor_and_a_list_for_a_list():
    x, w = ph(SHAPE, "x"), ph(SHAPE, "w")
    y = td.compute(SHAPE, lambda i, j: x[i, j] * w[i, j], name="y")
    g = td.grad(y, x)
    assert isinstance(g, td.Tensor) and static_shape(g) == SHAPE
    gs = td.grad(y, [x, w])
    assert isinstance(gs, list) and len(gs) == 2
    assert isinstance(td.grad(y, [x]), list)


def test_gradient_tvm_name_always_returns_a_list(rng):
    x, w = ph(SHAPE, "x"), ph(SHAPE, "w")
    y = td.compute(SHAPE, lambda i, j: x[i, j] * w[i, j], name="y")
    gs = td.gradient(y, x)
    assert isinstance(gs, list) and len(gs) == 1
    values = random_values(rng, [x, w])
    assert_close(Kernel(gs[0])(values), values[w], "td.gradient with the default head")
    head_t = ph(SHAPE, "h")
    gx, gw = td.gradient(y, [x, w], head_t)
    head = rng.standard_normal(SHAPE)
    values[head_t] = head
    assert_close(Kernel(gx)(values), head * values[w], "td.gradient(y, xs, head): d/dx")
    assert_close(Kernel(gw)(values), head * values[x], "td.gradient(y, xs, head): d/dw")


def test_default_head_is_ones(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: td.tanh(x[i, j]) * x[i, j], name="y")
    values = random_values(rng, [x])
    (g,) = check_grad(y, [x], values, rng, head="ones")
    xv = values[x]
    assert_close(g, np.tanh(xv) + xv * (1 - np.tanh(xv) ** 2), "d sum(y)")


def test_head_given_as_a_placeholder_or_a_compute(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: td.tanh(x[i, j]) * x[i, j], name="y")
    h = ph(SHAPE, "h")
    values = {**random_values(rng, [x]), h: rng.standard_normal(SHAPE)}
    g = td.grad(y, x, head=h)
    check_adjoints(y, [x], [g], values, values[h], rng)
    doubled = td.compute(SHAPE, lambda i, j: h[i, j] * 2.0, name="doubled")
    g2 = td.grad(y, [x], head=doubled)[0]
    check_adjoints(y, [x], [g2], values, 2 * values[h], rng)


def test_vjp_creates_the_head_placeholder(rng):
    x = ph(SHAPE, "x")
    y = td.compute((5,), lambda i: x[i, 0] * x[i, 6], name="y")
    (g,), head_t = td.vjp(y, [x])
    assert isinstance(head_t.op, PlaceholderOp)
    assert head_t.name == "y.grad"
    assert static_shape(head_t) == (5,) and head_t.dtype == "float64"
    assert any(p.op is head_t.op for p in placeholders(g))
    given = ph((5,), "given")
    (g2,), back = td.vjp(y, [x], head=given)
    assert back.op is given.op
    single, _ = td.vjp(y, x)
    assert isinstance(single, td.Tensor)


def test_jvp_creates_tangent_placeholders(rng):
    x, w = ph(SHAPE, "x"), ph((7,), "w")
    y = td.compute(SHAPE, lambda i, j: x[i, j] * w[j], name="y")
    ty, (tx, tw) = td.jvp(y, [x, w])
    assert [t.name for t in (tx, tw)] == ["x.tangent", "w.tangent"]
    assert all(isinstance(t.op, PlaceholderOp) for t in (tx, tw))
    assert static_shape(tx) == SHAPE and static_shape(tw) == (7,)
    assert static_shape(ty) == SHAPE and ty.dtype == "float64"
    given = ph(SHAPE, "given")
    ty2, (back,) = td.jvp(y, [x], tangents=[given])
    assert back.op is given.op
    values = random_values(rng, [x, w, given])
    assert_close(Kernel(ty2)(values), values[given] * values[w][None, :],
                 "jvp along a given tangent")


def test_hvp_creates_v_and_matches_differences(rng):
    x = ph((7,), "x")
    k = td.reduce_axis((0, 7), "k")
    loss = td.compute((1,), lambda _: td.sum(
        x[k] * x[k] * x[k] + td.exp(x[k]) * x[(k + 1) % 7], axis=k), name="loss")
    hv, v = td.hvp(loss, x)
    assert isinstance(v.op, PlaceholderOp) and v.name == "x.tangent"
    assert static_shape(v) == (7,) and static_shape(hv) == (7,)
    values = random_values(rng, [x])
    got = check_hvp(loss, x, values, rng)
    assert got.shape == (7,)


def test_hvp_with_a_head(rng):
    x = ph(SHAPE, "x")
    y = td.compute(SHAPE, lambda i, j: td.tanh(x[i, j]) * x[i, (j + 1) % 7], name="y")
    check_hvp(y, x, random_values(rng, [x]), rng, head="random")


def test_two_reads_of_one_tensor_in_a_reduction(rng):
    x = ph((9,), "x")
    k = td.reduce_axis((0, 3), "k")
    y = td.compute((6,), lambda i: td.sum(x[i + k] * x[i + 2 - k + 1], axis=k), name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(6)
    (g,) = check_grad(y, [x], values, rng, head=head)
    xv, expected = values[x], np.zeros(9)
    for i in range(6):
        for kk in range(3):
            expected[i + kk] += head[i] * xv[i + 3 - kk]
            expected[i + 3 - kk] += head[i] * xv[i + kk]
    assert_close(g, expected, "d of x[i + k] * x[i + 3 - k]")


def test_symbolic_extent(rng):
    """A size left symbolic: the adjoint's gather bounds depend on it."""
    n = td.var("n")
    x = td.placeholder((n, 4), dtype="float64", name="x")
    y = td.compute((n - 1, 4), lambda i, j: x[i + 1, j] * x[i, j], name="y")
    (g,), head_t = td.vjp(y, [x])
    f = td.build([x, head_t, g])
    for rows in (2, 5, 9):
        xv, head = rng.standard_normal((rows, 4)), rng.standard_normal((rows - 1, 4))
        out = np.full((rows, 4), np.nan)
        f(xv, head, out)
        expected = np.zeros((rows, 4))
        expected[1:] += head * xv[:-1]
        expected[:-1] += head * xv[1:]
        assert_close(out, expected, f"adjoint with n = {rows}")


# y[i] = sum over k < K of body(x, i, k): reverse over reverse (the gradient of a derived
# gradient, td.grad(td.grad(y, x), x, head=v)) is another H v, to agree with td.hvp
SECOND_ORDER = {
    "shifted": (7, 5, None, lambda x, i, k: td.tanh(x[i + 2]) * x[i]),
    "window": (8, 3, 5, lambda x, i, k: x[i + k] * x[i + k + 1]),
    "stride": (9, 4, None, lambda x, i, k: td.tanh(x[2 * i + 1])),
    "window_with_division": (9, 3, 5, lambda x, i, k: td.tanh(x[i + k + 2 - 2 * (k // 3)])),
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_reverse_over_reverse_agrees_with_hvp(rng, name):
    n, m, K, body = SECOND_ORDER[name]
    x, v = ph((n,), "x"), ph((n,), "v")
    if K is None:
        y = td.compute((m,), lambda i: body(x, i, None), name="y")
    else:
        k = td.reduce_axis((0, K), "k")
        y = td.compute((m,), lambda i: td.sum(body(x, i, k), axis=k), name="y")
    values = random_values(rng, [x, v])
    reverse_reverse = td.grad(td.grad(y, x), x, head=v)
    hv, _ = td.hvp(y, x, v=v)
    assert_close(Kernel(reverse_reverse, "default")(values), Kernel(hv, "default")(values),
                 f"{name}: reverse over reverse against forward over reverse")
    check_hvp(y, x, values, rng, schedule="default")


@pytest.mark.parametrize("length", [300, 1000])
def test_argmax_tie_rule_in_a_long_auto_scheduled_reduction(rng, length):
    """A reduction long enough for the auto-scheduler to split or vectorize it: the first
    tied element still gets the whole derivative, whatever order the lanes reduce in."""
    x = ph((3, length), "x")
    k = td.reduce_axis((0, length), "k")
    y = td.compute((3,), lambda i: td.max(x[i, k], axis=k), name="y")
    xv = rng.uniform(-1, 1, (3, length))
    xv[0, [17, 130, length - 1]] = 2.0
    xv[1, [length - 1, length - 2]] = 2.0
    xv[2, :] = 1.0
    xv[2, [5, 9]] = 3.0
    head = rng.standard_normal(3)
    (g,), head_t = td.vjp(y, [x])
    expected = np.zeros((3, length))
    expected[np.arange(3), np.argmax(xv, axis=1)] = head
    assert_close(Kernel(g)({x: xv, head_t: head}), expected, "d max with ties, auto-scheduled")


def test_an_input_read_only_in_a_condition_gets_zeros(rng):
    x, c = ph(SHAPE, "x"), ph(SHAPE, "c")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda i: td.sum(x[i, k], axis=k, where=c[i, k] > 0), name="y")
    (gc,) = td.grad(y, [c])
    np.testing.assert_array_equal(Kernel(gc)(random_values(rng, [x, c])), np.zeros(SHAPE))


def test_a_path_through_an_integer_compute_carries_no_derivative(rng):
    x = ph((6,), "x")
    m = td.compute((6,), lambda i: (x[i] * 3.0).astype("int32") * 2, name="m")
    y = td.compute((6,), lambda i: m[i].astype("float64") * x[i], name="y")
    xv = rng.uniform(-2, 2, 6)
    xv[np.abs(xv * 3 - np.round(xv * 3)) < 1e-3] += 0.01
    (g,) = check_grad(y, [x], {x: xv}, rng, head="ones")
    assert_close(g, np.trunc(xv * 3) * 2, "d (int(3x) * 2 * x)")
    check_jvp(y, [x], {x: xv}, rng)


def test_a_bool_mask_compute_selects(rng):
    x = ph((6,), "x")
    mask = td.compute((6,), lambda i: x[i] > 0.1, name="mask")
    y = td.compute((6,), lambda i: td.select(mask[i], x[i] * x[i], 2.0 * x[i]), name="y")
    xv = rng.uniform(-2, 2, 6)
    xv[np.abs(xv - 0.1) < 0.01] = 1.0
    (g,) = check_grad(y, [x], {x: xv}, rng, head="ones")
    assert_close(g, np.where(xv > 0.1, 2 * xv, 2.0), "d select(mask)")
    check_hvp(y, x, {x: xv}, rng)


def test_float32_end_to_end(rng):
    x = ph(SHAPE, "x", "float32")
    y = td.compute(SHAPE, lambda i, j: td.tanh(x[i, j]) * x[i, j], name="y")
    g = td.grad(y, x)
    assert g.dtype == "float32"
    xv = rng.uniform(-1, 1, SHAPE).astype("float32")
    t = np.tanh(xv.astype("float64"))
    np.testing.assert_allclose(Kernel(g)({x: xv}), t + xv * (1 - t * t), rtol=1e-5, atol=1e-6)


def test_a_head_or_tangent_unlike_its_tensor_is_refused():
    x = ph((3,), "x")
    y = td.compute((3,), lambda i: x[i] * 2.0, name="y")
    with pytest.raises(ValueError, match="head"):
        td.grad(y, x, head=ph((3,), "h", "float32"))
    with pytest.raises(ValueError, match="head"):
        td.vjp(y, [x], head=ph((4,), "h"))
    with pytest.raises(ValueError, match="tangent"):
        td.jvp(y, [x], tangents=[ph((2,), "t")])
