"""``td.grad`` through the sparse operators (kernels/sparse.py): the adjoints keep the
sparse structure (``tensordsl/autodiff/segments.py``).

Each adjoint is built over ``A.placeholders()`` (the derived rows, tpos and perm among
them) and run on arrays from ``td.nd.sparse_array(...).arrays(like=A)``, into poisoned
outputs, and checked against

* a closed form written with scipy.sparse (``A.T @ H`` and the like), and
* central differences of ``sum(H * y)`` through the forward kernel alone,

over random patterns (hypothesis): empty rows, an empty matrix, a dense row. The lowered
adjoints are checked for their loop structure: no loop over all the rows or all the
positions inside another one (the O(nnz * m) forms this replaces).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels.dense as dense_ops
import kernels.sparse as K
import tensordsl as td
from tensordsl.autodiff.operators import prepare, schedule_derived, template_of
from tensordsl.ir import nodes as n
from tensordsl.ir.op import cast
from tensordsl.ir.visitor import Visitor
from tensordsl.nd import sparse_array
from tests.helpers import poisoned

EPS = 1e-6


# ---------------------------------------------------------------- the operators


def _operands(m, nc, f):
    """Dense operands of each operator: (name, shape)."""
    return {"spmv": [("x", (nc,))], "spmm": [("B", (nc, f))],
            "sddmm": [("X", (m, f)), ("Y", (nc, f))], "sparse_mul": [("D", (m, nc))],
            "sparse_softmax": []}


def _closed_forms(op, M, values, H) -> dict:
    """The adjoints of ``sum(H * op(M, *values))`` by scipy/numpy, by operand name."""
    rows, cols = M.nonzero()           # in CSR order (sorted indices)
    if op == "spmv":
        (x,) = values
        return {"vals": H[rows] * x[cols], "x": M.T @ H}
    if op == "spmm":
        (B,) = values
        return {"vals": np.einsum("pc,pc->p", H[rows], B[cols]), "B": M.T @ H}
    if op == "sddmm":
        X, Y = values
        G = sp.csr_matrix((H * M.data, M.indices, M.indptr), shape=M.shape)
        return {"vals": H * np.einsum("pk,pk->p", X[rows], Y[cols]),
                "X": G @ Y, "Y": G.T @ X}
    if op == "sparse_mul":
        (D,) = values
        G = sp.csr_matrix((H * M.data, M.indices, M.indptr), shape=M.shape)
        return {"vals": H * D[rows, cols], "D": G.toarray()}
    assert op == "sparse_softmax"
    e = np.exp(M.data - np.repeat(_row_max(M), np.diff(M.indptr)))
    y = e / np.bincount(rows, weights=e, minlength=M.shape[0])[rows]
    per_row = np.bincount(rows, weights=H * y, minlength=M.shape[0])
    return {"vals": y * (H - per_row[rows])}


def _row_max(M):
    return np.array([M.data[a:b].max() if b > a else 0.0
                     for a, b in zip(M.indptr[:-1], M.indptr[1:])])


class _Kernel:
    """``out`` built over ``[*A.placeholders(), *inputs, out]`` (default schedule, index
    checks on), called with a sparse array and the inputs' values into a poisoned
    output."""

    def __init__(self, out, A, inputs, schedule=None):
        """``schedule``: None (the default schedule), ``"auto"`` (``td.build([...])``'s
        auto-scheduler, as a user builds) or a ``td.Schedule`` of ``out``."""
        args = [*A.placeholders(), *inputs, out]
        if schedule == "auto":
            self.func = td.build(args)
        else:
            self.func = td.build(schedule or td.create_schedule(out.op), args)
        self.A, self.names, self.out = A, list(A.components()), out

    def __call__(self, S, values):
        assert list(self.A.components()) == self.names   # the arrays it was built over
        shape = tuple(d.value if isinstance(d, n.IntImm) else S.nnz for d in self.out.shape)
        result = poisoned(shape, "float64")
        self.func(*S.arrays(like=self.A), *values, result)
        return result


@functools.cache
def _derivation(op, m, nc, f):
    """The forward kernel of ``op`` on an (m, nc) CSR operand and the kernels of the
    adjoints of all its operands for a head ``H``."""
    A = td.sparse_placeholder((m, nc), "csr", "float64", name="A")
    dense = [td.placeholder(shape, "float64", name) for name, shape in _operands(m, nc, f)[op]]
    y = getattr(K, op)(A, *dense)
    H = td.placeholder(y.shape, "float64", "H")
    wrt = ["vals", *(t.name for t in dense)]
    grads = td.grad(y, [A.vals, *dense], head=H)
    # every kernel after every derivation: they take the same derived arrays
    forward = _Kernel(y, A, dense)
    adjoints = {w: _Kernel(g, A, [*dense, H]) for w, g in zip(wrt, grads)}
    return forward, adjoints


def _matrix(rng, m, nc, density, kind):
    M = sp.random(m, nc, density=density, format="lil", random_state=rng)
    if kind == "dense_row" and m:
        M[int(rng.integers(m)), :] = rng.uniform(0.5, 1.5, nc)
    if kind == "empty":
        M = sp.lil_matrix((m, nc))
    M = sp.csr_matrix(M, dtype="float64")
    M.sort_indices()
    M.data = rng.uniform(-1, 1, M.nnz)       # signed values, none of them zero
    return M


def _check(op, shape, M, rng):
    forward, adjoints = _derivation(op, *shape)
    m, nc, f = shape
    S = sparse_array(M)
    values = [rng.standard_normal(s) for _, s in _operands(m, nc, f)[op]]
    y = forward(S, values)
    H = rng.standard_normal(y.shape)
    got = {w: k(S, [*values, H]) for w, k in adjoints.items()}
    expected = _closed_forms(op, M, values, H)
    for w in expected:
        np.testing.assert_allclose(got[w], expected[w], rtol=1e-10, atol=1e-12,
                                   err_msg=f"{op}: adjoint of {w} against scipy")

    def loss(S_, values_):
        return float(np.sum(H * forward(S_, values_)))

    for k, w in enumerate(adjoints):
        d = rng.standard_normal(got[w].shape)
        if w == "vals":
            plus, minus = ((S.with_values(M.data + s * EPS * d), values) for s in (1, -1))
        else:
            k_ = k - 1
            plus, minus = ((S, [v + s * EPS * d if i == k_ else v
                                for i, v in enumerate(values)]) for s in (1, -1))
        fd = (loss(*plus) - loss(*minus)) / (2 * EPS)
        g = float(np.sum(got[w] * d))
        assert abs(g - fd) <= 1e-6 * (1 + abs(fd)), (
            f"{op}: <adjoint of {w}, d> = {g}, central difference {fd}")


SHAPES = [(6, 5, 3), (1, 7, 2), (8, 1, 1)]
patterns = st.tuples(st.sampled_from(SHAPES), st.sampled_from([0.0, 0.1, 0.4, 1.0]),
                     st.sampled_from(["random", "dense_row", "empty"]),
                     st.integers(0, 2**31))


@pytest.mark.parametrize("op", ["spmv", "spmm", "sddmm", "sparse_mul", "sparse_softmax"])
@settings(max_examples=12, deadline=None)
@given(spec=patterns)
def test_adjoints_match_scipy_and_differences(op, spec):
    shape, density, kind, seed = spec
    rng = np.random.default_rng(seed)
    _check(op, shape, _matrix(rng, shape[0], shape[1], density, kind), rng)


def test_adjoints_of_an_empty_matrix_and_of_no_rows():
    """nnz = 0 (every adjoint over positions is empty; the dense ones are zeros), and a
    matrix of no rows at all."""
    rng = np.random.default_rng(1)
    for op in ("spmm", "sddmm", "sparse_mul"):
        _check(op, (6, 5, 3), sp.csr_matrix((6, 5)), rng)
    _check("spmm", (0, 4, 2), sp.csr_matrix((0, 4)), rng)


# ---------------------------------------------------------------- schedules


# the template the operator table gives each adjoint: over the stored positions,
# SDDMM's; gathered over a row's or a column's entries, SpMM's (a matrix), SpMV's (a vector)
TEMPLATES = {("spmv", "vals"): "sddmm", ("spmv", "x"): "spmv", ("spmm", "vals"): "sddmm",
             ("spmm", "B"): "spmm", ("sddmm", "vals"): "sddmm", ("sddmm", "X"): "spmm",
             ("sddmm", "Y"): "spmm", ("sparse_mul", "vals"): "sddmm",
             ("sparse_mul", "D"): "spmm", ("sparse_softmax", "vals"): "sddmm"}


@pytest.mark.parametrize("op", ["spmv", "spmm", "sddmm", "sparse_mul", "sparse_softmax"])
def test_adjoints_under_the_sparse_templates_and_the_auto_scheduler(op):
    """Each adjoint built with the template the operator table names for it
    (``prepare``d, as ``td.build_program`` builds a derived kernel; both row splits, a
    loop over a column's entries balanced by ``tpos``) and by ``td.build([...])``'s
    auto-scheduler, against scipy: vector lanes, parallel rows, a dense row."""
    m, nc, f = 40, 30, 16
    A = td.sparse_placeholder((m, nc), "csr", "float64", name="A")
    dense = [td.placeholder(s, "float64", name) for name, s in _operands(m, nc, f)[op]]
    y = getattr(K, op)(A, *dense)
    H = td.placeholder(y.shape, "float64", "H")
    grads = dict(zip(["vals", *(t.name for t in dense)],
                     td.grad(y, [A.vals, *dense], head=H)))
    rng = np.random.default_rng(4)
    M = _matrix(rng, m, nc, 0.15, "dense_row")
    S = sparse_array(M)
    values = [rng.standard_normal(s) for _, s in _operands(m, nc, f)[op]]
    Hv = rng.standard_normal(M.nnz if op in K_PATTERN else (m, f)[:1 + (op == "spmm")])
    expected = _closed_forms(op, M, values, Hv)
    for w, g in grads.items():
        prepared = prepare(g)
        template = template_of(prepared)
        assert template == TEMPLATES[op, w], (op, w, template)
        configs = [{}, {"schedule": "nonzeros"}]
        kernels = [(f"{template} {c}", _Kernel(prepared, A, [*dense, H], schedule_derived(
            template, prepared, c))) for c in configs]
        kernels.append(("auto", _Kernel(g, A, [*dense, H], "auto")))
        for name, kernel in kernels:
            np.testing.assert_allclose(kernel(S, [*values, Hv]), expected[w], rtol=1e-10,
                                       atol=1e-12, err_msg=f"{op}: adjoint of {w}, {name}")


K_PATTERN = ("sddmm", "sparse_mul", "sparse_softmax")


# ---------------------------------------------------------------- composition


def test_loss_through_spmm_matmul_relu():
    """``sum(relu((A @ B) @ W))`` w.r.t. A's values, B and W, against numpy."""
    m, nc, f, g = 9, 7, 4, 3
    A = td.sparse_placeholder((m, nc), "csr", "float64", name="A")
    B = td.placeholder((nc, f), "float64", "B")
    W = td.placeholder((f, g), "float64", "W")
    Z = dense_ops.relu(dense_ops.matmul(K.spmm(A, B), W))
    loss = td.compute((1,), lambda _: _total(Z, m, g), name="loss")
    grads = td.grad(loss, [A.vals, B, W])
    kernels = [_Kernel(t, A, [B, W]) for t in grads]
    rng = np.random.default_rng(3)
    M = _matrix(rng, m, nc, 0.3, "dense_row")
    Bv, Wv = rng.standard_normal((nc, f)), rng.standard_normal((f, g))
    S = sparse_array(M)
    got = [k(S, [Bv, Wv]) for k in kernels]
    C = M @ Bv
    dZ = (C @ Wv > 0).astype("float64")
    dC = dZ @ Wv.T
    rows, cols = M.nonzero()
    expected = [np.einsum("pc,pc->p", dC[rows], Bv[cols]), M.T @ dC, C.T @ dZ]
    for w, a, b in zip(("vals", "B", "W"), got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=w)


def _total(Z, m, g):
    r, s = td.reduce_axis((0, m), "r"), td.reduce_axis((0, g), "s")
    return td.sum(Z[r, s], axis=[r, s])


# ---------------------------------------------------------------- loop structure


class _Nests(Visitor):
    """Every loop with the extents of the loops around it."""

    def __init__(self):
        self.stack, self.nests = [], []

    def visit_For(self, node):
        self.nests.append((tuple(self.stack), node.extent))
        self.stack.append(node.extent)
        self.visit(node.body)
        self.stack.pop()


ALL_OF = {37: "rows", 29: "columns"}
BIG = ("rows", "columns", "positions")


def _kind(extent, nnz) -> str:
    if isinstance(extent, n.IntImm):
        return ALL_OF.get(extent.value, "dense")
    return "positions" if extent is nnz else "run"


@pytest.mark.parametrize("op", ["spmv", "spmm", "sddmm", "sparse_mul", "sparse_softmax"])
def test_adjoints_loop_over_runs_not_over_everything(op):
    """In every adjoint kernel: no loop nest over more of the whole rows, columns and
    positions than the adjoint has such dimensions (its own loops), and no loop over all
    the positions inside another loop. (The derivation before sparse levels were solved
    had ``for p: for i in rows: if pos[i] <= p < pos[i + 1]`` for the values, and for a
    dense operand's row ``j`` a loop over every row's entries testing ``crd[q] == j``.)"""
    m, nc, f = 37, 29, 5
    A = td.sparse_placeholder((m, nc), "csr", "float32", name="A")
    dense = [td.placeholder(s, "float32", name) for name, s in _operands(m, nc, f)[op]]
    y = getattr(K, op)(A, *dense)
    grads = td.grad(y, [A.vals, *dense])
    for x, g in zip([A.vals, *dense], grads):
        func = td.lower(td.create_schedule(g.op), [*A.placeholders(), *dense, g])
        nests = _Nests()
        nests.visit(func.body)
        own = sum(_kind(d, A.nnz[1]) in BIG for d in g.shape)
        for outer, extent in nests.nests:
            kinds = [_kind(e, A.nnz[1]) for e in (*outer, extent)]
            where = f"{op}, adjoint of {x.name}: loops over {kinds}"
            assert sum(k in BIG for k in kinds) <= own, where
            assert "positions" not in kinds[1:], where


def test_values_adjoint_reads_the_row_of_each_position():
    """spmm's adjoint w.r.t. the values is an SDDMM over A's pattern:
    ``dvals[p] = sum_c dC[rows[p], c] * B[crd[p], c]``; w.r.t. B a product with the
    transpose, through ``perm``."""
    A = td.sparse_placeholder((64, 48), "csr", name="A")
    B = td.placeholder((48, 8), "float32", "B")
    (dvals, dB), dC = td.vjp(K.spmm(A, B), [A.vals, B])
    assert list(A.components()) == ["pos1", "crd1", "vals", "rows1", "tpos1", "perm1"]
    text = str(td.lower(td.create_schedule(dvals.op), [*A.placeholders(), B, dC, dvals]))
    assert "A.rows1[" in text and "A.pos1[" not in text, text
    text = str(td.lower(td.create_schedule(dB.op), [*A.placeholders(), B, dC, dB]))
    assert "A.perm1[" in text and "A.tpos1[" in text and "A.rows1[" in text, text


def test_regression_adjoint_of_the_dense_operand_lowers():
    """``td.grad(spmm(A, B), B)`` failed to lower: its loop over A's entries kept the
    bounds ``pos[i]`` of the forward row ``i``, a variable the adjoint no longer had
    ("variable 'i' is used but cannot be bound")."""
    A = td.sparse_placeholder((10, 6), "csr", "float64", name="A")
    B = td.placeholder((6, 3), "float64", "B")
    dB = td.grad(K.spmm(A, B), B)
    kernel = _Kernel(dB, A, [B])
    M = _matrix(np.random.default_rng(5), 10, 6, 0.3, "random")
    np.testing.assert_allclose(kernel(sparse_array(M), [np.zeros((6, 3))]),
                               M.T @ np.ones((10, 3)), rtol=1e-12)


def test_operands_longer_than_the_matrix_get_zeros_past_it():
    """A dense operand read at a column (``x[crd[q]]``) or a row (``v[rows[p]]``) may be
    longer than the matrix has columns or rows: the adjoint is zero past them, and the
    runs it loops over are clamped there (nothing reads past ``tpos`` or ``pos``)."""
    m, nc = 6, 5
    A = td.sparse_placeholder((m, nc), "csr", "float64", name="A")
    x = td.placeholder((nc + 4,), "float64", "x")
    v = td.placeholder((m + 3,), "float64", "v")

    def row(i):
        q, j = A.nonzeros(i)
        return td.sum(A.vals[q] * x[j], axis=q)

    y = td.compute((m,), row, name="y")
    rows = A.row_ids(1)
    z = td.compute(A.vals.shape, lambda p: A.vals[p] * v[rows[p].astype("int64")], name="z")
    dx, dv = td.grad(y, x), td.grad(z, v)
    M = _matrix(np.random.default_rng(6), m, nc, 0.5, "dense_row")
    S = sparse_array(M)
    got = _Kernel(dx, A, [x])(S, [np.zeros(nc + 4)])
    np.testing.assert_allclose(got, np.r_[M.T @ np.ones(m), np.zeros(4)], rtol=1e-12)
    got = _Kernel(dv, A, [v])(S, [np.zeros(m + 3)])
    np.testing.assert_allclose(got, np.r_[M @ np.ones(nc), np.zeros(3)], rtol=1e-12)


def test_the_rules_hold_for_a_level_under_a_compressed_one():
    """DCSR (compressed rows, then compressed columns): a product over the stored rows
    ``y[r] = sum over the entries q of stored row r of vals[q] * x[crd1[q]]``. The
    parent of a position is a position of the level above (``rows1``), and the
    transpose of level 1 gathers the adjoint of ``x``."""
    A = td.sparse_placeholder((8, 6), "dcsr", "float64", name="A")
    x = td.placeholder((6,), "float64", "x")

    def row(r):
        q, j = A.nonzeros(r, level=1)
        return td.sum(A.vals[q] * x[j], axis=q)

    y = td.compute((A.nnz[0],), row, name="y")
    H = td.placeholder((A.nnz[0],), "float64", "H")
    dx, dvals = td.grad(y, [x, A.vals], head=H)
    rng = np.random.default_rng(8)
    M = _matrix(rng, 8, 6, 0.3, "random")
    S = sparse_array(M, format="dcsr")
    stored = np.flatnonzero(np.diff(M.indptr))
    Hv, xv = rng.standard_normal(stored.size), rng.standard_normal(6)
    Hfull = np.zeros(8)
    Hfull[stored] = Hv
    rows, cols = M.nonzero()
    kernel = _Kernel(dx, A, [x, H])
    np.testing.assert_allclose(kernel(S, [xv, Hv]), M.T @ Hfull, rtol=1e-12)
    kernel = _Kernel(dvals, A, [x, H])
    np.testing.assert_allclose(kernel(S, [xv, Hv]), Hfull[rows] * xv[cols], rtol=1e-12)


def test_adjoint_of_a_row_max_is_one_entry_per_row():
    """``td.max`` over a row's entries: the adjoint goes to the first maximal entry of
    each row (the argmax compute's loop keeps the row's bounds)."""
    A = td.sparse_placeholder((7, 9), "csr", "float64", name="A")

    def row_max(i):
        q, _ = A.nonzeros(i)
        return td.max(A.vals[q], axis=q)

    y = td.compute((7,), row_max, name="row_max")
    H = td.placeholder((7,), "float64", "H")
    kernel = _Kernel(td.grad(y, A.vals, head=H), A, [H])
    rng = np.random.default_rng(2)
    M = _matrix(rng, 7, 9, 0.4, "dense_row")
    M.data = np.round(M.data * 2) / 2          # ties: the first of them takes it all
    Hv = rng.standard_normal(7)
    expected = np.zeros(M.nnz)
    for i in range(7):
        a, b = M.indptr[i], M.indptr[i + 1]
        if b > a:
            expected[a + np.argmax(M.data[a:b])] = Hv[i]
    np.testing.assert_array_equal(kernel(sparse_array(M), [Hv]), expected)


# ---------------------------------------------------------------- derived arrays


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 30), st.sampled_from([1, 5, 70_000]), st.floats(0, 1),
       st.integers(0, 2**31))
def test_transpose_arrays_are_scipys_csc(m, nc, density, seed):
    """``tpos``/``perm`` of a CSR array: the CSC of the matrix whose values are the
    positions (scipy's conversion, stable by row), coordinates past 2**16 included."""
    rng = np.random.default_rng(seed)
    M = sp.random(m, nc, density=density if nc < 100 else density / 1000, format="csr",
                  random_state=rng)
    M.sort_indices()
    S = sparse_array(M)
    order = sp.csr_matrix((np.arange(M.nnz) + 1, M.indices, M.indptr), shape=M.shape).tocsc()
    order.sort_indices()
    np.testing.assert_array_equal(S.component("tpos1"), order.indptr)
    np.testing.assert_array_equal(S.component("perm1"), order.data - 1)
    assert S.component("perm1").dtype == np.int32 and S.component("tpos1").dtype == np.int32
    assert S.component("perm1") is S.with_values(M.data * 2).component("perm1")  # kept


def test_arrays_follow_the_placeholders():
    A = td.sparse_placeholder((4, 3), "csr", name="A")
    A.transpose_ids(1)
    A.row_ids(1)
    S = sparse_array(np.eye(4, 3, dtype="float32"), format="csr")
    names = [t.name for t in A.placeholders()]
    assert names == ["A.pos1", "A.crd1", "A.vals", "A.rows1", "A.tpos1", "A.perm1"]
    for got, name in zip(S.arrays(like=A), A.components()):
        assert got is S.component(name)
    assert [a.tolist() for a in S.arrays(like=A)[3:]] == [[0, 1, 2], [0, 1, 2, 3], [0, 1, 2]]
    assert len(S.arrays()) == 3                              # the stored ones
    with pytest.raises(KeyError, match="no component 'perm0'"):
        S.component("perm0")
    with pytest.raises(ValueError, match="compressed level below another"):
        A.transpose_ids(0)


# ---------------------------------------------------------------- the solver


def test_solver_inverts_a_row_loop_and_a_column_coordinate():
    """``q = p`` on a row's entries gives the row ``rows[p]``, no range test; ``crd[q]
    == j`` a loop over column ``j``'s entries (``tpos``), ``q = perm[t]``, ``i = rows[q]``."""
    from tensordsl.autodiff.solve import Unknown, solve
    from tensordsl.ir.visitor import free_vars
    from tensordsl.te import api
    A = td.sparse_placeholder((8, 6), "csr", name="A")
    i = api.reduce_axis((0, 8), "i")
    q, j = A.nonzeros(i.var)
    unknowns = [Unknown(v.var, v.dom.min, v.dom.extent) for v in (i, q)]
    p, col = n.Var("p"), n.Var("col")

    def fresh(name, lo, extent):
        return api.reduce_axis((lo, lo + extent), name)

    sol = solve([q.var], [p], unknowns, fresh_axis=fresh, extents={p: A.nnz[1]})
    assert sol.free == [] and sol.conditions == [] and sol.exact
    assert str(sol.substitution[i.var]) == str(cast("int64", A.rows[1][p]))

    sol = solve([j], [col], unknowns, fresh_axis=fresh)
    (t,) = sol.free
    assert sol.conditions == [] and sol.exact
    assert [x.op.name for x in _reads_in(t.dom.min)] == ["A.tpos1"]
    assert [x.op.name for x in _reads_in(sol.substitution[q.var])] == ["A.perm1"]
    assert {x.op.name for x in _reads_in(sol.substitution[i.var])} == {"A.rows1", "A.perm1"}
    assert t.var in free_vars(sol.substitution[i.var])


def _reads_in(e) -> list:
    from tensordsl.ir.visitor import post_order
    return [x.tensor for x in post_order(e) if isinstance(x, n.TensorRead)]


# ---------------------------------------------------------------- forward mode


def test_tangent_of_spmm_and_hessian_vector_product_of_sparse_softmax():
    """``td.jvp`` keeps the forward loops (their ranges read the row): against scipy.
    ``td.hvp`` of ``sum(H * sparse_softmax(A))`` (forward over reverse) against central
    differences of the derived gradient."""
    m, nc = 7, 6
    A = td.sparse_placeholder((m, nc), "csr", "float64", name="A")
    B = td.placeholder((nc, 3), "float64", "B")
    ty, (tv, tB) = td.jvp(K.spmm(A, B), [A.vals, B])
    y = K.sparse_softmax(A)
    H = td.placeholder(y.shape, "float64", "H")
    hv, v = td.hvp(y, A.vals, head=H)
    grad = td.grad(y, A.vals, head=H)
    tangent, hessian, gradient = (_Kernel(ty, A, [B, tv, tB]), _Kernel(hv, A, [H, v]),
                                  _Kernel(grad, A, [H]))
    rng = np.random.default_rng(7)
    M = _matrix(rng, m, nc, 0.4, "dense_row")
    S = sparse_array(M)
    Bv, tBv, tvv = (rng.standard_normal((nc, 3)), rng.standard_normal((nc, 3)),
                    rng.standard_normal(M.nnz))
    T = sp.csr_matrix((tvv, M.indices, M.indptr), shape=M.shape)
    np.testing.assert_allclose(tangent(S, [Bv, tvv, tBv]), T @ Bv + M @ tBv, rtol=1e-12)
    Hv, vv = rng.standard_normal(M.nnz), rng.standard_normal(M.nnz)
    fd = (gradient(S.with_values(M.data + EPS * vv), [Hv])
          - gradient(S.with_values(M.data - EPS * vv), [Hv])) / (2 * EPS)
    np.testing.assert_allclose(hessian(S, [Hv, vv]), fd, rtol=1e-6, atol=1e-8)
