"""The index solver against brute force: for each target index, the iterations the
solution enumerates (free axes where the conditions hold, mapped through the
substitution) are exactly the iterations whose read lands there."""
from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis import given, settings

from tensordsl.arith.simplify import simplify_expr
from tensordsl.autodiff.solve import Unknown, solve
from tensordsl.ir import nodes as n
from tensordsl.ir.op import const
from tensordsl.ir.visitor import substitute
from tensordsl.te import api


def _value(e, env) -> int:
    v = simplify_expr(substitute(e, {k: const(x) for k, x in env.items()}))
    assert isinstance(v, n.IntImm), f"not a constant: {v}"
    return v.value


def _check(indices, domain, target_shape):
    """``indices``: expressions of the vars in ``domain`` ({var: extent})."""
    unknowns = [Unknown(v, const(0), const(e)) for v, e in domain.items()]
    targets = [n.Var(f"j{k}") for k in range(len(indices))]
    ranges = {t: (0, e - 1) for t, e in zip(targets, target_shape)}
    sol = solve(indices, targets, unknowns, ranges,
                fresh_axis=lambda name, lo, ext: api.reduce_axis((lo, lo + ext), name))
    expected: dict = {}
    for point in itertools.product(*[range(e) for e in domain.values()]):
        env = dict(zip(domain, point))
        j = tuple(_value(i, env) for i in indices)
        expected.setdefault(j, []).append(point)
    for j in itertools.product(*[range(e) for e in target_shape]):
        env = dict(zip(targets, j))
        got = []
        if sol.substitution:
            for free in itertools.product(*[range(_value(iv.dom.min, env),
                                                  _value(iv.dom.min + iv.dom.extent, env))
                                            for iv in sol.free]):
                env2 = {**env, **{iv.var: x for iv, x in zip(sol.free, free)}}
                if all(_value(c, env2) for c in sol.conditions):
                    got.append(tuple(_value(sol.substitution[v], env2) for v in domain))
        assert sorted(got) == sorted(expected.get(j, [])), (j, sol)
    return sol


def _vars(*names):
    return [n.Var(x) for x in names]


def test_convolution_window_sums_over_the_window_only():
    y, ry = _vars("y", "ry")
    sol = _check([y + ry], {y: 6, ry: 3}, (8,))
    assert [int(iv.dom.extent.value) for iv in sol.free] == [3] and sol.exact


def test_strided_window_is_decomposed_by_the_stride():
    y, ry = _vars("y", "ry")
    sol = _check([y * 2 + ry], {y: 4, ry: 3}, (9,))
    # ry = j % 2 + 2*s: two steps of s instead of three taps with a divisibility test
    assert [int(iv.dom.extent.value) for iv in sol.free] == [2] and sol.exact


def test_flattened_index_is_inverted_without_a_loop():
    y, x = _vars("y", "x")
    sol = _check([y * 7 + x], {y: 3, x: 5}, (21,))
    assert sol.free == [] and sol.exact


def test_division_and_modulo_reads():
    p, r = _vars("p", "r")
    sol = _check([(p + r) // 4, (p + r) % 4], {p: 9, r: 2}, (3, 4))
    assert sol.exact and len(sol.free) == 1


def test_broadcast_read_sums_the_broadcast_axis():
    i, j = _vars("i", "j")
    sol = _check([j], {i: 3, j: 4}, (4,))
    assert [int(iv.dom.extent.value) for iv in sol.free] == [3]


def test_constant_index_is_a_condition():
    i, j = _vars("i", "j")
    _check([i * 0 + 1, j], {i: 2, j: 3}, (3, 3))


def test_non_affine_index_falls_back_to_an_exact_accumulation():
    i, j = _vars("i", "j")
    sol = _check([i * j], {i: 3, j: 4}, (7,))
    assert not sol.exact


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=2, max_size=2),
       st.lists(st.integers(1, 4), min_size=2, max_size=2),
       st.integers(0, 5), st.sampled_from([None, 2, 3]), st.booleans())
def test_random_affine_reads(coeffs, extents, offset, divisor, modulo):
    a, b = _vars("a", "b")
    e = a * coeffs[0] + b * coeffs[1] + offset
    indices = [e]
    if divisor is not None:
        indices = [e % divisor] if modulo else [e // divisor, e % divisor]
    lo = offset + sum(min(0, c * (x - 1)) for c, x in zip(coeffs, extents))
    hi = offset + sum(max(0, c * (x - 1)) for c, x in zip(coeffs, extents))
    if lo < 0:   # keep the reads in a tensor starting at 0
        indices = [e + (-lo)] if divisor is None else [x for x in indices]
        e = e + (-lo)
        hi -= lo
        if divisor is not None:
            indices = [e % divisor] if modulo else [e // divisor, e % divisor]
    if divisor is None:
        shape = (hi + 1,)
    elif modulo:
        shape = (divisor,)
    else:
        shape = (hi // divisor + 1, divisor)
    _check(indices, {a: extents[0], b: extents[1]}, shape)
