"""One derivative rule at a time (autodiff/derivative.py, reductions.py): each adjoint
against central differences in float64 and, where the rule has a closed form, against
that form written in numpy; the documented tie rules against numpy's argmax."""
import math

import numpy as np
import pytest

import kernels.dense as K
import tensordsl as td

from .fd import (Kernel, assert_close, away_from_zero, check_grad, check_hvp, check_jvp, ph,
                 random_values)

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


def test_a_bool_mask_compute_selects(rng):
    x = ph((6,), "x")
    mask = td.compute((6,), lambda i: x[i] > 0.1, name="mask")
    y = td.compute((6,), lambda i: td.select(mask[i], x[i] * x[i], 2.0 * x[i]), name="y")
    xv = rng.uniform(-2, 2, 6)
    xv[np.abs(xv - 0.1) < 0.01] = 1.0
    (g,) = check_grad(y, [x], {x: xv}, rng, head="ones")
    assert_close(g, np.where(xv > 0.1, 2 * xv, 2.0), "d select(mask)")
    check_hvp(y, x, {x: xv}, rng)


# ---------------------------------------------------------------- casts and integer paths


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


def test_a_path_through_an_integer_compute_carries_no_derivative(rng):
    x = ph((6,), "x")
    m = td.compute((6,), lambda i: (x[i] * 3.0).astype("int32") * 2, name="m")
    y = td.compute((6,), lambda i: m[i].astype("float64") * x[i], name="y")
    xv = rng.uniform(-2, 2, 6)
    xv[np.abs(xv * 3 - np.round(xv * 3)) < 1e-3] += 0.01
    (g,) = check_grad(y, [x], {x: xv}, rng, head="ones")
    assert_close(g, np.trunc(xv * 3) * 2, "d (int(3x) * 2 * x)")
    check_jvp(y, [x], {x: xv}, rng)


def test_float32_end_to_end(rng):
    x = ph(SHAPE, "x", "float32")
    y = td.compute(SHAPE, lambda i, j: td.tanh(x[i, j]) * x[i, j], name="y")
    g = td.grad(y, x)
    assert g.dtype == "float32"
    xv = rng.uniform(-1, 1, SHAPE).astype("float32")
    t = np.tanh(xv.astype("float64"))
    np.testing.assert_allclose(Kernel(g)({x: xv}), t + xv * (1 - t * t), rtol=1e-5, atol=1e-6)


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


def test_an_input_read_only_in_a_condition_gets_zeros(rng):
    x, c = ph(SHAPE, "x"), ph(SHAPE, "c")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda i: td.sum(x[i, k], axis=k, where=c[i, k] > 0), name="y")
    (gc,) = td.grad(y, [c])
    np.testing.assert_array_equal(Kernel(gc)(random_values(rng, [x, c])), np.zeros(SHAPE))


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
