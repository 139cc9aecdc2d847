"""Reads at solved indices (autodiff/solve.py): each pattern's adjoint against a numpy
scatter of the head (np.add.at over the forward's reads) and central differences;
broadcasting, whose adjoint sums over the broadcast axes; a size left symbolic."""
import numpy as np
import pytest

import kernels.dense as K
import tensordsl as td

from .fd import assert_close, away_from_zero, check_grad, ph, random_values, static_shape

SHAPE = (5, 7)


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


# name: (x extent, y extent, K, index of x read at (i, k), k < K); the reference
# evaluates the same function on numpy arrays
WINDOWS = {
    "k_div_2": (6, 3, 4, lambda i, k: i + k // 2),
    "k_mod_2": (6, 3, 4, lambda i, k: i + k % 2),
    "k_mod_2_written_with_div": (6, 3, 4, lambda i, k: i + k - 2 * (k // 2)),
    "k_mod_3": (7, 4, 5, lambda i, k: i + k % 3),
    "stride_2_dilation_2": (11, 4, 3, lambda i, k: 2 * i + 2 * k),
    "k_div_3_mixed": (9, 3, 5, lambda i, k: i + k + 2 - 2 * (k // 3)),
}


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_window_reduction_index_forms(rng, name):
    """Reads x[f(i, k)] summed over k: the same set of reads written in different forms
    (``k % 2`` and ``k - 2 * (k // 2)``) must differentiate alike."""
    n, m, K, at = WINDOWS[name]
    x = ph((n,), "x")
    k = td.reduce_axis((0, K), "k")
    y = td.compute((m,), lambda i: td.sum(td.tanh(x[at(i, k)]), axis=k), name="y")
    values = random_values(rng, [x])
    head = rng.standard_normal(m)
    (g,) = check_grad(y, [x], values, rng, head=head)
    i, kk = np.meshgrid(np.arange(m), np.arange(K), indexing="ij")
    where = at(i, kk)
    expected = np.zeros(n)
    np.add.at(expected, where, head[i] * (1 - np.tanh(values[x][where]) ** 2))
    assert_close(g, expected, f"adjoint of a window read at {name}")


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
