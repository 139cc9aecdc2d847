"""What the sparse benchmark times (benchmarks/sparse_ops.py): every competitor computes
the operator it is named for, the error measure catches wrong results, and our side's
options reach ``td.ops`` only where its signature takes them."""
import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks import sparse_ops
from benchmarks.sparse_matrices import matrix

SMALL = {"matrix": "digits_knn", "f": 8}
ADD = {"matrix": "uniform", "matrix_b": "uniform_b"}
SIDES = [("spmm", "scipy"), ("spmm", "torch"), ("spmv", "scipy"), ("spmv", "torch"),
         ("sddmm", "numpy"), ("sddmm", "torch"), ("sparse_add", "scipy"),
         ("sparse_add", "torch")]


def _params(op):
    return ADD if op == "sparse_add" else SMALL


def _dense_reference(op, p):
    """Independent of ``sparse_ops.reference``: dense numpy in float64."""
    ops = [o.toarray() if sp.issparse(o) else o for o in sparse_ops.inputs(op, p)]
    ops = [o.astype(np.float64) for o in ops]
    if op in ("spmm", "spmv"):
        return ops[0] @ ops[1]
    if op == "sddmm":
        s, x, y = ops
        return s * (x @ y.T)
    return ops[0] + ops[1]


@pytest.mark.parametrize("op", sparse_ops.OPS)
def test_reference_is_the_dense_result(op):
    p = _params(op)
    ref = sparse_ops.reference(op, p)
    ref = ref.toarray() if sp.issparse(ref) else ref
    np.testing.assert_allclose(ref, _dense_reference(op, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op,side", SIDES)
def test_each_competitor_computes_the_operator(op, side):
    result = sparse_ops.check(op, _params(op), side)
    assert result["error"] < 1e-5


@pytest.mark.parametrize("side", ["numpy", "torch"])
def test_sddmm_results_keep_the_pattern(side):
    s = matrix(SMALL["matrix"])
    fn = getattr(sparse_ops, f"{side}_fn")("sddmm", SMALL)
    out = sparse_ops.as_scipy_or_numpy(fn())
    np.testing.assert_array_equal(out.indptr, s.indptr)
    np.testing.assert_array_equal(out.indices, s.indices)


def test_relative_error_sees_a_wrong_result():
    p = SMALL
    ref = sparse_ops.reference("spmm", p)
    wrong = ref.astype(np.float32)
    wrong[5, 3] += 0.01 * np.abs(ref).max()
    assert sparse_ops.relative_error(wrong, ref) == pytest.approx(0.01, rel=1e-3)
    sparse_ref = sparse_ops.reference("sddmm", p)
    missing = sparse_ref.copy()
    missing.data[0] = 0          # a value lost from the pattern
    assert sparse_ops.relative_error(missing, sparse_ref) > 0


def test_relative_error_names_a_wrong_shape():
    ref = sparse_ops.reference("spmv", SMALL)
    with pytest.raises(ValueError, match=r"expected a \(1797,\) result, got \(1796,\)"):
        sparse_ops.relative_error(ref[:-1], ref)
    with pytest.raises(ValueError, match="expected a sparse"):
        sparse_ops.relative_error(np.zeros(3), sparse_ops.reference("sddmm", SMALL))


def test_options_reach_only_a_function_that_takes_them(monkeypatch):
    import tensordsl.ops
    seen = []

    # (the sparse operand arrives as a td.nd sparse array, built once)
    def with_schedule(a, b, schedule="rows"):
        seen.append(schedule)
        return a.to_scipy() @ b

    def without(a, b):
        seen.append(None)
        return a.to_scipy() @ b

    def with_kwargs(a, b, **options):
        seen.append(options.get("schedule"))
        return a.to_scipy() @ b

    for fn, expect_applied in ((with_schedule, {"schedule": "nonzeros"}), (without, {}),
                               (with_kwargs, {"schedule": "nonzeros"})):
        monkeypatch.setattr(tensordsl.ops, "spmm", fn, raising=False)
        call, applied = sparse_ops.tensordsl_fn("spmm", SMALL, {"schedule": "nonzeros"})
        assert applied == expect_applied
        call()
    assert seen == ["nonzeros", None, "nonzeros"]


def test_competitor_without_the_operator_refuses():
    with pytest.raises(KeyError, match="scipy has no SDDMM"):
        sparse_ops.scipy_fn("sddmm", SMALL)
    with pytest.raises(KeyError, match="only sddmm"):
        sparse_ops.numpy_fn("spmm", SMALL)
    with pytest.raises(KeyError, match="'spgemm'"):
        sparse_ops.inputs("spgemm", SMALL)


@pytest.mark.parametrize("op", ["spmm", "spmv", "sddmm"])
@pytest.mark.parametrize("schedule", ["rows", "nonzeros"])
def test_our_side_in_the_benchmark_path(op, schedule):
    result = sparse_ops.check(op, SMALL, "tensordsl", {"schedule": schedule})
    assert result["applied"] == {"schedule": schedule}
    assert result["error"] < 1e-5
