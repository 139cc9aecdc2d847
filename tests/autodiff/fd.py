"""Checking derived tensors against central finite differences, in float64.

A derived tensor (an adjoint, a tangent, a Hessian-vector product) is an ordinary
tensor: ``Kernel`` builds it as a function of the placeholders it reads (auto-scheduled,
as ``td.build([...])`` does for a user, or under the default schedule, which compiles
faster) and runs it on a poisoned output, so a store the kernel skips shows up as NaN. The references never share code with the derivation:

* a gradient: ``f(x) = sum(head * y(x))`` evaluated by the forward kernel alone; the
  adjoint ``g`` projected on random directions ``d`` against
  ``(f(x + eps d) - f(x - eps d)) / (2 eps)``, and element by element for small ``x``;
* a JVP: ``(y(x + eps t) - y(x - eps t)) / (2 eps)``, every ``x`` moved at once;
* an HVP: ``(g(x + eps v) - g(x - eps v)) / (2 eps)`` with the derived gradient kernel
  (itself checked by the gradient check), and ``<v, H v>`` against the second
  difference of ``f``, which uses no derived kernel at all.

Values are keyed by placeholder tensor (``Tensor`` is hashable by its operation).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

import tensordsl as td
from tensordsl.ir import nodes as n
from tensordsl.te.tensor import ComputeOp, PlaceholderOp, Tensor

from tests.helpers import poisoned

EPS = 1e-6      # central differences: truncation ~eps^2, rounding ~1e-16/eps, in float64
RTOL = 1e-5     # relative to the largest element (or the norm) of the reference
ELEMENTWISE_LIMIT = 256  # below this many elements, every element is differenced too


# ---------------------------------------------------------------- graphs and kernels


def static_shape(t: Tensor) -> tuple[int, ...]:
    shape = []
    for d in t.shape:
        if not isinstance(d, n.IntImm):
            raise AssertionError(f"{t.name}: the checks need static shapes, got {t.shape}")
        shape.append(d.value)
    return tuple(shape)


def operations(*tensors: Tensor) -> list:
    """Every operation the tensors are computed from (themselves included), each once,
    consumers before producers."""
    seen, order, stack = set(), [], [t.op for t in tensors]
    while stack:
        op = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        order.append(op)
        stack.extend(t.op for t in reversed(op.input_tensors))
    return order


def placeholders(*tensors: Tensor) -> list[Tensor]:
    """The placeholders the tensors read, directly or through other computes, in the
    order first met walking back from the outputs."""
    return [op.output(0) for op in operations(*tensors) if isinstance(op, PlaceholderOp)]


def compute_ops(*tensors: Tensor) -> list[ComputeOp]:
    return [op for op in operations(*tensors) if isinstance(op, ComputeOp)]


class Kernel:
    """``out`` compiled as a function of the placeholders it reads: ``kernel({x: array,
    ...})`` returns a new array.

    ``schedule="auto"``: ``td.build([*placeholders, out])``, auto-scheduled, as a user
    builds a derived tensor; ``"default"``: ``td.create_schedule`` (every stage at root),
    which compiles derived kernels ten times faster (the auto-scheduler's generic form
    of a convolution's adjoint takes seconds) and checks the same derivation. An output
    of a multi-output compute is built with its siblings under the default schedule."""

    def __init__(self, out: Tensor, schedule: str = "auto"):
        assert isinstance(out.op, ComputeOp), (
            f"{out.name} is a {type(out.op).__name__}, not a compute")
        assert schedule in ("auto", "default"), schedule
        self.out = out
        self.inputs = placeholders(out)
        self.outputs = list(out.op.outputs)
        if schedule == "auto" and len(self.outputs) == 1:
            self.func = td.build([*self.inputs, out])
        else:
            self.func = td.build(td.create_schedule(out.op), [*self.inputs, *self.outputs])

    def __call__(self, values: Mapping[Tensor, np.ndarray]) -> np.ndarray:
        missing = [p.name for p in self.inputs if p not in values]
        assert not missing, f"{self.out.name} reads {missing}, which have no values"
        results = [poisoned(static_shape(t), t.dtype) for t in self.outputs]
        self.func(*[np.ascontiguousarray(values[p]) for p in self.inputs], *results)
        return results[self.out.value_index]


@functools.cache
def compiled(t: Tensor, schedule: str = "auto") -> Kernel:
    """``Kernel(t, schedule)``, once per tensor (a forward is run by several checks)."""
    return Kernel(t, schedule)


def evaluate(t: Tensor, values: Mapping[Tensor, np.ndarray]) -> np.ndarray:
    return compiled(t)(values)


def ph(shape, name: str, dtype: str = "float64") -> Tensor:
    """A placeholder, float64 unless told."""
    return td.placeholder(shape, dtype=dtype, name=name)


def away_from_zero(rng, shape, low=0.1, high=1.0) -> np.ndarray:
    """Values of either sign with ``low <= |v| < high``: divisors, inputs of a kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, shape)


def random_values(rng, tensors: Sequence[Tensor], low=-1.0, high=1.0) -> dict:
    """Uniform values for float placeholders (each its own dtype)."""
    return {t: rng.uniform(low, high, static_shape(t)).astype(t.dtype) for t in tensors}


def moved(values: Mapping, deltas: Mapping) -> dict:
    """``values`` with ``values[x] + deltas[x]`` for each ``x`` in ``deltas``."""
    out = dict(values)
    for x, d in deltas.items():
        out[x] = values[x] + d
    return out


# ---------------------------------------------------------------- comparisons


def assert_close(got, expected, what: str, rtol: float = RTOL, floor: float = 1e-3):
    """``|got - expected| <= rtol * max(max|expected|, floor)`` element by element; NaN
    (a store skipped over the poison) anywhere in ``got`` fails."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    assert np.isfinite(got).all(), (
        f"{what}: {int((~np.isfinite(got)).sum())} of {got.size} elements are not finite "
        f"(first at {np.argwhere(~np.isfinite(got))[0].tolist()})")
    scale = max(float(np.abs(expected).max(initial=0.0)), floor)
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale, err_msg=what)


def _directional_tolerance(g, d, f_scale, rtol):
    # the projection's own size, plus the rounding of f's difference (~1e-16 |f| / eps)
    return rtol * float(np.linalg.norm(g) * np.linalg.norm(d)) + 1e-8 * (1.0 + f_scale)


# ---------------------------------------------------------------- reverse mode


class Loss:
    """``f(values) = sum(head * y(values))`` through the forward kernel only."""

    def __init__(self, y: Tensor, head: np.ndarray):
        self.forward = compiled(y, "default")   # run often: no thread pool for tiny work
        self.head = head

    def __call__(self, values) -> float:
        return float(np.sum(self.head * self.forward(values)))

    def scale(self, values) -> float:
        return float(np.sum(np.abs(self.head * self.forward(values))))


def check_adjoints(y: Tensor, xs: Sequence[Tensor], adjoints: Sequence[Tensor],
                   values: Mapping, head: np.ndarray, rng, *, schedule: str = "auto",
                   **kw) -> list[np.ndarray]:
    """Each derived adjoint (``adjoints[k]`` of ``xs[k]``, built with ``schedule``) against
    central differences of ``sum(head * y)``. ``values`` holds every placeholder the
    forward and the adjoints read (a head placeholder among them). Returns the adjoints'
    values."""
    grads = []
    for x, adj in zip(xs, adjoints, strict=True):
        assert static_shape(adj) == static_shape(x), (
            f"adjoint of {x.name}: shape {static_shape(adj)}, expected {static_shape(x)}")
        assert adj.dtype == x.dtype, f"adjoint of {x.name}: dtype {adj.dtype}, not {x.dtype}"
        grads.append(Kernel(adj, schedule)(values))
    check_adjoint_values(y, xs, grads, values, head, rng, **kw)
    return grads


def check_adjoint_values(y: Tensor, xs: Sequence[Tensor], grads: Sequence[np.ndarray],
                         values: Mapping, head: np.ndarray, rng, *, directions: int = 3,
                         elementwise: bool | None = None, eps: float = EPS,
                         rtol: float = RTOL):
    """Adjoint values (``grads[k]`` of ``xs[k]``, evaluated at ``values``) against central
    differences of ``sum(head * y)``: projected on ``directions`` random directions, and
    element by element when ``elementwise`` (default: for small ``x``)."""
    loss = Loss(y, head)
    f_scale = loss.scale(values)
    for x, g in zip(xs, grads, strict=True):
        assert np.isfinite(g).all(), f"adjoint of {x.name} has non-finite elements:\n{g}"
        for k in range(directions):
            d = rng.standard_normal(g.shape)
            fd = (loss(moved(values, {x: eps * d}))
                  - loss(moved(values, {x: -eps * d}))) / (2 * eps)
            got = float(np.sum(g * d))
            tol = _directional_tolerance(g, d, f_scale, rtol)
            assert abs(got - fd) <= tol, (
                f"adjoint of {x.name}, direction {k}: <g, d> = {got!r}, central difference "
                f"{fd!r} (tolerance {tol:.3g})")
        if elementwise if elementwise is not None else g.size <= ELEMENTWISE_LIMIT:
            assert_close(g, elementwise_difference(loss, values, x, eps),
                         f"adjoint of {x.name} against element-by-element differences", rtol)


def elementwise_difference(loss, values, x, eps=EPS) -> np.ndarray:
    base = values[x]
    out = np.zeros(base.shape)
    for i in np.ndindex(*base.shape):
        e = np.zeros(base.shape)
        e[i] = eps
        out[i] = (loss(moved(values, {x: e})) - loss(moved(values, {x: -e}))) / (2 * eps)
    return out


def check_grad(y: Tensor, xs: Sequence[Tensor], values: Mapping, rng, *,
               head="random", **kw) -> list[np.ndarray]:
    """``td.vjp(y, xs)`` against central differences, its created head placeholder fed
    ``head``: an array, or ``"random"``; ``head="ones"`` checks ``td.grad(y, xs)`` with
    its default head instead. Returns the adjoints' values."""
    xs = list(xs)
    if isinstance(head, str) and head == "ones":
        adjoints = td.grad(y, xs)
        head_value = np.ones(static_shape(y), y.dtype)
        feeds = dict(values)
    else:
        adjoints, head_t = td.vjp(y, xs)
        head_value = (rng.standard_normal(static_shape(y)).astype(y.dtype)
                      if isinstance(head, str) else np.asarray(head, y.dtype))
        feeds = {**values, head_t: head_value}
    assert isinstance(adjoints, list) and len(adjoints) == len(xs), adjoints
    return check_adjoints(y, xs, adjoints, feeds, head_value, rng, **kw)


# ---------------------------------------------------------------- forward mode


def check_jvp(y: Tensor, xs: Sequence[Tensor], values: Mapping, rng, *, eps: float = EPS,
              rtol: float = RTOL, schedule: str = "auto") -> tuple[np.ndarray, list[np.ndarray]]:
    """``td.jvp(y, xs)`` with random tangents against the central difference of ``y``
    along them (all of ``xs`` moved at once). Returns the tangent of ``y`` and the
    tangents' values."""
    xs = list(xs)
    ty, tangents = td.jvp(y, xs)
    assert isinstance(tangents, list) and len(tangents) == len(xs), tangents
    assert static_shape(ty) == static_shape(y), (static_shape(ty), static_shape(y))
    ts = [rng.standard_normal(static_shape(x)).astype(x.dtype) for x in xs]
    feeds = dict(values)
    feeds.update(zip(tangents, ts))
    got = Kernel(ty, schedule)(feeds)
    forward = compiled(y, "default")
    fd = (forward(moved(values, {x: eps * t for x, t in zip(xs, ts)}))
          - forward(moved(values, {x: -eps * t for x, t in zip(xs, ts)}))) / (2 * eps)
    assert_close(got, fd, f"tangent of {y.name} along random tangents of "
                          f"{[x.name for x in xs]}", rtol)
    return got, ts


def check_hvp(y: Tensor, x: Tensor, values: Mapping, rng, *, head: str = "ones",
              eps: float = EPS, rtol: float = RTOL, schedule: str = "auto") -> np.ndarray:
    """``td.hvp(y, x)`` (random ``v``; a random head placeholder unless ``head="ones"``)
    against the central difference of the derived gradient along ``v``, and ``<v, Hv>``
    against the second difference of ``sum(head * y)``. Returns ``H v``."""
    feeds = dict(values)
    if head == "ones":
        hv, v = td.hvp(y, x)
        grad = td.grad(y, x)
        head_value = np.ones(static_shape(y), y.dtype)
    else:
        head_t = td.placeholder(static_shape(y), dtype=y.dtype, name=f"{y.op.name}.head")
        hv, v = td.hvp(y, x, head=head_t)
        grad = td.grad(y, x, head=head_t)
        head_value = rng.standard_normal(static_shape(y)).astype(y.dtype)
        feeds[head_t] = head_value
    assert static_shape(hv) == static_shape(x) and static_shape(v) == static_shape(x)
    v_value = rng.standard_normal(static_shape(x)).astype(x.dtype)
    got = Kernel(hv, schedule)({**feeds, v: v_value})
    g = Kernel(grad, schedule)
    fd = (g(moved(feeds, {x: eps * v_value})) - g(moved(feeds, {x: -eps * v_value}))) / (2 * eps)
    assert_close(got, fd, f"H v of {y.name} w.r.t. {x.name} against differences of the "
                          "derived gradient", rtol)
    # <v, H v> from f alone: a larger step, as the second difference loses eps^2 to rounding
    loss, h = Loss(y, head_value), 1e-4
    second = (loss(moved(feeds, {x: h * v_value})) - 2 * loss(feeds)
              + loss(moved(feeds, {x: -h * v_value}))) / h**2
    vhv = float(np.sum(v_value * got))
    tol = (1e-4 * float(np.linalg.norm(got) * np.linalg.norm(v_value))
           + 1e-6 * (1 + loss.scale(feeds)))
    assert abs(vhv - second) <= tol, (
        f"<v, H v> of {y.name} w.r.t. {x.name}: {vhv!r}, second difference {second!r}")
    return got
