"""The API's contract (tensordsl/autodiff/__init__.py): graphs (several consumers,
multi-output computes, inputs not read, intermediate tensors), lists vs tensors, the
placeholders vjp, jvp and hvp create, refused arguments; Hessian-vector products, and
reverse over reverse against them."""
import numpy as np
import pytest

import tensordsl as td
from tensordsl.te.tensor import PlaceholderOp

from .fd import (Kernel, assert_close, check_adjoints, check_grad, check_hvp, check_jvp, ph,
                 placeholders, random_values, static_shape)

SHAPE = (5, 7)


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


def test_an_integer_x_is_refused_by_name(rng):
    w, idx = ph((5,), "w"), ph((5,), "idx", "int32")
    y = td.compute((5,), lambda i: idx[i].astype("float64") * w[i], name="y")
    with pytest.raises((td.TensorDSLError, TypeError, ValueError), match="idx"):
        td.grad(y, [w, idx])
    with pytest.raises((td.TensorDSLError, TypeError, ValueError), match="idx"):
        td.jvp(y, [idx])


def test_a_head_or_tangent_unlike_its_tensor_is_refused():
    x = ph((3,), "x")
    y = td.compute((3,), lambda i: x[i] * 2.0, name="y")
    with pytest.raises(ValueError, match="head"):
        td.grad(y, x, head=ph((3,), "h", "float32"))
    with pytest.raises(ValueError, match="head"):
        td.vjp(y, [x], head=ph((4,), "h"))
    with pytest.raises(ValueError, match="tangent"):
        td.jvp(y, [x], tangents=[ph((2,), "t")])


# ---------------------------------------------------------------- HVPs, reverse over reverse


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
    hv, _ = td.hvp(y, x, v)
    assert_close(Kernel(reverse_reverse, "default")(values), Kernel(hv, "default")(values),
                 f"{name}: reverse over reverse against forward over reverse")
    check_hvp(y, x, values, rng, schedule="default")


def test_hvp_of_a_list_uses_the_joint_hessian(rng):
    """``td.hvp(y, [x, w])``: each part of H v, with H the Hessian in (x, w) together,
    against differences of the derived gradients moving x and w at once."""
    x, w = ph((5, 7), "x"), ph((7,), "w")
    k = td.reduce_axis((0, 7), "k")
    y = td.compute((5,), lambda i: td.sum(td.tanh(x[i, k] * w[k]) * x[i, k], axis=k), name="y")
    (hx, hw), (vx, vw) = td.hvp(y, [x, w])
    assert [v.name for v in (vx, vw)] == ["x.tangent", "w.tangent"]
    values = random_values(rng, [x, w])
    tangent = {x: rng.standard_normal((5, 7)), w: rng.standard_normal(7)}
    feeds = {**values, vx: tangent[x], vw: tangent[w]}
    eps = 1e-6
    for t, g in zip((hx, hw), td.grad(y, [x, w])):
        kernel = Kernel(g, "default")
        moved = [{**values, **{a: values[a] + s * eps * tangent[a] for a in (x, w)}}
                 for s in (1, -1)]
        expected = (kernel(moved[0]) - kernel(moved[1])) / (2 * eps)
        assert_close(Kernel(t, "default")(feeds), expected, f"joint H v, part {t.name}")
