"""Co-iteration and assembly (tensordsl/sparse/coiterate.py, ``td.ops.sparse_add``):
sparse results of elementwise expressions of CSR operands against scipy/numpy — the
values, and the pattern (the union under + and -, the intersection under *, computed
here from the operands' patterns alone) — over random shapes and densities, empty rows,
an empty matrix, one dense row."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import tensordsl as td
from tensordsl.sparse.coiterate import lattice
from tests.helpers import poison_allocations

SHAPE = (13, 11)


def _placeholders(k, shape=SHAPE, dtype="float32"):
    return [td.sparse_placeholder(shape, "csr", dtype, name=name) for name in "ABC"[:k]]


# each expression: (build it from placeholders, its value from dense matrices, its
# pattern from the operands' patterns)
EXPRESSIONS = {
    "A + B": (lambda A, B, C: A + B, lambda a, b, c: a + b, lambda a, b, c: a | b),
    "A * B": (lambda A, B, C: A * B, lambda a, b, c: a * b, lambda a, b, c: a & b),
    "2A - B": (lambda A, B, C: 2 * A - B, lambda a, b, c: 2 * a - b, lambda a, b, c: a | b),
    "A * B + C": (lambda A, B, C: A * B + C, lambda a, b, c: a * b + c,
                  lambda a, b, c: (a & b) | c),
    "-(A + B) * C": (lambda A, B, C: -(A + B) * C, lambda a, b, c: -(a + b) * c,
                     lambda a, b, c: (a | b) & c),
    "A - A * B": (lambda A, B, C: A - A * B, lambda a, b, c: a - a * b,
                  lambda a, b, c: a),
}


@functools.cache
def _kernel(name):
    A, B, C = _placeholders(3)
    expr = EXPRESSIONS[name][0](A, B, C)
    assembly = td.sparse.assemble(expr, name="R")
    return assembly.build(), [t.name for t in assembly.operands]


def _matrix(rng, density, kind):
    m, n = SHAPE
    M = sp.random(m, n, density=density, format="lil", dtype="float32", random_state=rng)
    if kind == "dense_row":
        M[rng.integers(m), :] = rng.random(n).astype("float32") + 0.5
    if kind == "empty":
        M = sp.lil_matrix((m, n), dtype="float32")
    M = sp.csr_matrix(M)
    M.sort_indices()
    return M


matrix = st.tuples(st.sampled_from([0.0, 0.1, 0.4, 1.0]),
                   st.sampled_from(["random", "dense_row", "empty"]))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(EXPRESSIONS)), matrix, matrix, matrix, st.integers(0, 2**31))
def test_assembled_results_match_numpy_in_values_and_pattern(name, a, b, c, seed):
    rng = np.random.default_rng(seed)
    mats = {"A": _matrix(rng, *a), "B": _matrix(rng, *b), "C": _matrix(rng, *c)}
    kernel, used = _kernel(name)
    with pytest.MonkeyPatch.context() as patch:   # pos, crd, vals start poisoned
        poison_allocations(patch)
        result = kernel(*[td.nd.sparse_array(mats[k]) for k in used])
    _, value, pattern = EXPRESSIONS[name]
    dense = [mats[k].toarray() for k in "ABC"]
    masks = [mats[k].toarray() != 0 for k in "ABC"]
    # the result is valid CSR (sorted, unique columns) with exactly the pattern
    td.sparse.validate(result)
    got_mask = np.zeros(SHAPE, bool)
    rows = np.repeat(np.arange(SHAPE[0]), np.diff(result.pos[1]))
    got_mask[rows, result.crd[1]] = True
    assert result.nnz == int(pattern(*masks).sum())
    np.testing.assert_array_equal(got_mask, pattern(*masks))
    np.testing.assert_allclose(result.to_dense(), value(*dense), rtol=1e-6, atol=1e-6)


def test_the_lattices_of_union_and_intersection():
    A, B, C = _placeholders(3)
    assert lattice(td.sparse.coiterate.as_expr(A + B)) == [
        frozenset([A, B]), frozenset([A]), frozenset([B])]
    assert lattice(td.sparse.coiterate.as_expr(A * B)) == [frozenset([A, B])]
    points = lattice(td.sparse.coiterate.as_expr(A * B + C))
    assert points == [frozenset([A, B, C]), frozenset([A, B]), frozenset([C])]


def test_the_merge_loops_are_printed():
    A, B = _placeholders(2)
    union = td.sparse.assemble(A + B, name="S")
    fill = str(td.lower(td.create_schedule(union.fill[0].op), union.fill_args()))
    assert "while A.p[0] < A.end && B.p[0] < B.end:" in fill
    assert "while A.p[0] < A.end:" in fill and "while B.p[0] < B.end:" in fill
    product = td.sparse.assemble(A * B, name="P")
    fill = str(td.lower(td.create_schedule(product.fill[0].op), product.fill_args()))
    assert fill.count("while") == 1
    # a union's count needs no comparisons: one entry per step of the merge
    count = str(td.lower(td.create_schedule(union.count.op), union.count_args()))
    assert "count[0] = count[0] + 1" in count and "if A.j == j" not in count


@pytest.mark.parametrize("kind", ["csr_matrix", "csr_array", "coo_matrix"])
def test_td_ops_sparse_add_takes_and_gives_scipy(kind, monkeypatch):
    poison_allocations(monkeypatch)
    rng = np.random.default_rng(4)
    a = getattr(sp, kind)(sp.random(40, 30, 0.1, dtype="float64", random_state=rng))
    b = getattr(sp, kind)(sp.random(40, 30, 0.2, dtype="float64", random_state=rng))
    c = td.ops.sparse_add(a, b)
    assert sp.issparse(c) and c.format == "csr"
    assert isinstance(c, sp.spmatrix) == isinstance(a, sp.spmatrix)
    np.testing.assert_allclose(c.toarray(), (a + b).toarray(), rtol=1e-12)
    c2 = td.ops.sparse_add(td.nd.sparse_array(a), td.nd.sparse_array(b))
    np.testing.assert_allclose(c2.to_dense(), (a + b).toarray(), rtol=1e-12)


def test_cancelling_entries_stay_in_the_pattern():
    a = sp.csr_matrix(np.array([[1.0, 0.0, 2.0]], "float32"))
    c = td.ops.sparse_add(a, -a)
    assert c.nnz == 2 and not c.toarray().any()


def test_bad_operands_are_refused():
    a = sp.random(5, 4, 0.5, format="csr", dtype="float32", random_state=1)
    with pytest.raises(ValueError, match=r"b must be float32\[5, 4\] like a, got float32\[4, 5\]"):
        td.ops.sparse_add(a, a.T.tocsr())
    with pytest.raises(ValueError, match="like a, got float64"):
        td.ops.sparse_add(a, a.astype("float64"))
    with pytest.raises(TypeError, match="sparse_add"):
        td.ops.sparse_add(a, np.ones((5, 4), "float32"))
    with pytest.raises(TypeError, match=r"\+ needs a sparse operand on both sides"):
        A = td.sparse_placeholder((5, 4), "csr", name="A")
        A + 1
    with pytest.raises(ValueError, match="must be CSR with sorted, unique columns"):
        C = td.sparse_placeholder((5, 4), "csc", name="C")
        td.sparse.assemble(A + C)
    with pytest.raises(ValueError, match="they must agree"):
        D = td.sparse_placeholder((5, 5), "csr", name="D")
        td.sparse.assemble(A + D)
