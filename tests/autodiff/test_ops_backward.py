"""``td.ops.<name>_backward``: every operator's gradients, derived by ``td.vjp``, against
central finite differences of the forward operator in float64 (and PyTorch's autograd in
float32 where it is installed).

The finite-difference check is a directional one: for a random direction ``v`` of an
operand ``x``, ``<grad_x, v>`` must equal ``d/de sum(grad_out * f(x + e v))`` at 0 — any
wrong element of ``grad_x`` changes the left side, with probability one."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td
from tensordsl import ops

EPS = 1e-6


def _rng(seed=0):
    return np.random.default_rng(seed)


def _fd_check(name, operands: dict, attrs: dict, seed=0, rtol=1e-6):
    """Each float64 operand's gradient against a central difference along two random
    directions; returns the gradients."""
    forward = getattr(td.ops, name)
    backward = getattr(td.ops, f"{name}_backward")
    rng = _rng(seed)
    y = forward(**operands, **attrs)
    g = rng.standard_normal(np.shape(y))
    grads = backward(**operands, grad_out=g, **attrs)
    names = ops._OPERANDS[name]
    assert len(grads) == len(names)
    for param, grad in zip(names, grads):
        value = operands.get(param)
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            assert grad is None, f"{name}: {param} has no gradient"
            continue
        assert grad.shape == value.shape and grad.dtype == value.dtype
        assert np.all(np.isfinite(grad))
        for _ in range(2):
            v = rng.standard_normal(value.shape)
            plus = forward(**{**operands, param: value + EPS * v}, **attrs)
            minus = forward(**{**operands, param: value - EPS * v}, **attrs)
            fd = float(np.sum(g * (plus - minus))) / (2 * EPS)
            ours = float(np.sum(grad * v))
            assert abs(ours - fd) <= rtol * 10 * max(1.0, abs(fd)), (name, param, ours, fd)
    return grads


def f64(*shape, seed=0):
    return _rng(seed).standard_normal(shape)


CASES = [
    ("matmul", {"a": f64(7, 5), "b": f64(5, 9, seed=1)}, {}),
    ("matmul", {"a": f64(5, 7), "b": f64(9, 5, seed=1)}, {"transpose_a": True,
                                                          "transpose_b": True}),
    ("batch_matmul", {"a": f64(3, 4, 5), "b": f64(3, 5, 6, seed=1)}, {}),
    ("dense", {"x": f64(6, 5), "weight": f64(4, 5, seed=1), "bias": f64(4, seed=2)}, {}),
    ("dense", {"x": f64(6, 5), "weight": f64(4, 5, seed=1)}, {}),
    ("conv2d_nchw", {"x": f64(2, 3, 7, 6), "weight": f64(4, 3, 3, 3, seed=1)},
     {"padding": 1}),
    ("conv2d_nchw", {"x": f64(1, 4, 9, 8), "weight": f64(6, 2, 3, 2, seed=1)},
     {"stride": 2, "padding": (1, 0), "groups": 2}),
    ("conv2d_nchw", {"x": f64(1, 3, 9, 9), "weight": f64(2, 3, 3, 3, seed=1)},
     {"dilation": 2, "padding": 2}),
    ("conv2d_nchw", {"x": f64(1, 3, 5, 7), "weight": f64(5, 3, 1, 1, seed=1)}, {}),
    ("conv2d_nhwc", {"x": f64(1, 7, 6, 3), "weight": f64(3, 3, 3, 4, seed=1)},
     {"stride": 2, "padding": 1}),
    ("max_pool2d", {"x": f64(2, 3, 7, 7)}, {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("avg_pool2d", {"x": f64(2, 3, 7, 7)}, {"kernel_size": 2}),
    ("avg_pool2d", {"x": f64(1, 2, 7, 6)}, {"kernel_size": 3, "stride": 2, "padding": 1,
                                            "count_include_pad": False}),
    ("add", {"a": f64(3, 1, 5), "b": f64(4, 5, seed=1)}, {}),
    ("subtract", {"a": f64(4, 5), "b": 2.5}, {}),
    ("multiply", {"a": f64(3, 4, 5), "b": f64(5, seed=1)}, {}),
    ("divide", {"a": f64(4, 5), "b": f64(4, 5, seed=1) ** 2 + 1.0}, {}),
    ("maximum", {"a": f64(4, 5), "b": f64(4, 5, seed=1)}, {}),
    ("minimum", {"a": f64(4, 5), "b": f64(1, 5, seed=1)}, {}),
    ("relu", {"x": f64(5, 7)}, {}),
    ("gelu", {"x": f64(5, 7)}, {}),
    ("gelu", {"x": f64(5, 7)}, {"approximate": "tanh"}),
    ("reduce_sum", {"x": f64(4, 5, 6)}, {"axis": (0, 2)}),
    ("reduce_mean", {"x": f64(4, 5, 6)}, {"axis": 1, "keepdims": True}),
    ("reduce_max", {"x": f64(4, 5, 6)}, {"axis": -1}),
    ("reduce_max", {"x": f64(4, 5)}, {}),
    ("softmax", {"x": f64(5, 11)}, {}),
    ("softmax", {"x": f64(4, 6, 3)}, {"axis": 1}),
    ("log_softmax", {"x": f64(5, 11)}, {}),
    ("layer_norm", {"x": f64(5, 11), "gamma": f64(11, seed=1), "beta": f64(11, seed=2)}, {}),
    ("take", {"x": f64(6, 5), "indices": np.array([[4, 0, 4], [1, 5, 4]])}, {"axis": 0}),
    ("tanh", {"x": f64(5, 7)}, {}),
    ("sigmoid", {"x": f64(5, 7)}, {}),
    ("reshape", {"x": f64(2, 3, 4)}, {"shape": (4, -1)}),
    ("bias_add", {"x": f64(2, 3, 4, 5), "bias": f64(3, seed=1)}, {}),
    ("cross_entropy", {"logits": f64(6, 5), "labels": np.array([0, 4, 2, 2, 1, 3])}, {}),
    ("cross_entropy", {"logits": f64(6, 5), "labels": np.array([1, 1, 0, 4, 3, 2])},
     {"reduction": "none"}),
    ("mse_loss", {"x": f64(4, 5), "y": f64(4, 5, seed=1)}, {"reduction": "sum"}),
    ("batch_norm", {"x": f64(3, 2, 4, 4), "gamma": f64(2, seed=1), "beta": f64(2, seed=2)},
     {}),
    ("batch_norm", {"x": f64(3, 2, 4, 4), "gamma": f64(2, seed=1), "beta": f64(2, seed=2),
                    "moving_mean": f64(2, seed=3), "moving_var": f64(2, seed=4) ** 2 + 1},
     {"eps": 1e-3}),
    ("batch_norm_update_stats", {"x": f64(3, 2, 4), "moving_mean": f64(2, seed=1),
                                 "moving_var": f64(2, seed=2) ** 2}, {"momentum": 0.2}),
    ("dropout", {"x": f64(4, 5), "mask": _rng(1).random((4, 5)) > 0.5}, {"p": 0.5}),
    ("capsule_routing", {"u": f64(2, 5, 3), "weight": f64(5, 3, 4, 3, seed=1) * 0.5},
     {"iterations": 3}),
    ("primary_capsules", {"x": f64(2, 3, 5, 5), "weight": f64(4, 3, 3, 3, seed=1),
                          "bias": f64(4, seed=2)}, {"caps_dim": 2, "stride": 2}),
    ("margin_loss", {"v": f64(3, 4, 2) * 0.4, "labels_onehot": np.eye(4)[[1, 0, 3]]}, {}),
]


@pytest.mark.parametrize("name,operands,attrs", CASES,
                         ids=[f"{c[0]}-{k}" for k, c in enumerate(CASES)])
def test_gradients_match_finite_differences(name, operands, attrs):
    _fd_check(name, operands, attrs)


def test_every_operator_has_a_backward():
    names = set(ops._OPERANDS)
    assert {c[0] for c in CASES} == names
    for name in names:
        fn = getattr(td.ops, f"{name}_backward")
        assert "grad_out" in str(fn.__doc__) and name in fn.__doc__
        assert f"{name}_backward" in dir(td.ops)


def test_a_gradient_is_compiled_once_per_shapes_and_options():
    a, b, g = f64(6, 4), f64(4, 3, seed=1), f64(6, 3, seed=2)
    td.ops.matmul_backward(a, b, g)
    before = len(ops._CACHE)
    ga, gb = td.ops.matmul_backward(a * 2, b, g)
    assert len(ops._CACHE) == before
    np.testing.assert_allclose(ga, g @ b.T, rtol=1e-12)
    np.testing.assert_allclose(gb, (a * 2).T @ g, rtol=1e-12)
    td.ops.matmul_backward(a[:5], b, g[:5])
    assert len(ops._CACHE) == before + 2   # new shapes: both gradients compiled anew


def test_out_receives_the_gradients_and_none_skips_nothing():
    from tests.helpers import poisoned
    x, w = f64(2, 3, 6, 6), f64(4, 3, 3, 3, seed=1)
    g = f64(2, 4, 6, 6, seed=2)
    gx_ref, gw_ref = td.ops.conv2d_nchw_backward(x, w, g, padding=1)
    gx = poisoned(x.shape, "float64")
    got = td.ops.conv2d_nchw_backward(x, w, g, padding=1, out=(gx, None))
    assert got[0] is gx
    np.testing.assert_array_equal(gx, gx_ref)
    np.testing.assert_array_equal(got[1], gw_ref)
    with pytest.raises(ValueError, match=r"out\[0\] \(x\) must be a float64 array of shape"):
        td.ops.conv2d_nchw_backward(x, w, g, padding=1, out=(gx[:1], None))


def test_operands_without_a_gradient_are_none():
    x = f64(4, 3).astype("float32")
    idx = np.array([2, 0, 3])
    gx, gi = td.ops.take_backward(x, idx, np.ones((3, 3), "float32"))
    assert gi is None
    expected = np.zeros_like(x)
    np.add.at(expected, idx, 1.0)
    np.testing.assert_array_equal(gx, expected)
    ga, gb = td.ops.add_backward(np.arange(6).reshape(2, 3), 2, np.ones((2, 3)))
    assert ga is None and gb is None          # an integer tensor and a number
    # numpy's promotion first: int + 1.5 is a float64 operation, with a gradient
    ga, gb = td.ops.add_backward(np.arange(6).reshape(2, 3), 1.5, np.ones((2, 3)))
    assert gb is None and ga.dtype == np.float64
    np.testing.assert_array_equal(ga, np.ones((2, 3)))
    gx, gw, gb = td.ops.dense_backward(x, f64(5, 3).astype("float32"), np.ones((4, 5)))
    assert gb is None and gx.dtype == np.float32


def test_bad_cotangent_is_refused_in_the_operators_words():
    a, b = f64(3, 4), f64(4, 5)
    with pytest.raises(ValueError, match=r"grad_out must have the result's shape \(3, 5\)"):
        td.ops.matmul_backward(a, b, np.ones((5, 3)))
    with pytest.raises(TypeError, match="grad_out"):
        td.ops.matmul_backward(a, b)
    with pytest.raises(ValueError, match="one array"):
        td.ops.matmul_backward(a, b, np.ones((3, 5)), out=(None,))


def test_gradients_are_workloads_with_their_own_records(tmp_path):
    from tensordsl import autotune
    from tensordsl.autotune.records import RecordDB, record_target
    a = f64(48, 40).astype("float32")
    b = f64(40, 72, seed=1).astype("float32")
    g = f64(48, 72, seed=2).astype("float32")
    w = autotune.Workload.from_arrays("matmul_backward", [a, b, g], {"wrt": "b"})
    assert w.template == "matmul" and '"wrt":"b"' in w.key
    assert w.flops((40, 72)) == 2.0 * 48 * 40 * 72
    db = RecordDB(tmp_path / "r.sqlite")
    db.add(w.key, record_target("llvm"), "matmul", {"mr": 4, "nr": 16, "ku": 1}, "ok",
           seconds=1e-6)
    with autotune.apply_history_best(db):
        _, gb = td.ops.matmul_backward(a, b, g)
        tuned = [v[0] for k, v in ops._CACHE.items()
                 if k[0] == "matmul_backward" and ("wrt", "b") in k[2] and k[-2]]
    np.testing.assert_allclose(gb, a.T @ g, rtol=1e-4, atol=1e-4)
    text = str(tuned[-1].func)
    assert "1, 16)]" in text and "1, 64)]" not in text   # nr = 16 from the record


def test_operator_table_picks_templates_by_structure():
    from tensordsl.autotune.workload import Workload

    def template(op, shapes, wrt, **attrs):
        return Workload(op, [("array", s, "float32") for s in shapes],
                        dict(attrs, wrt=wrt)).template
    assert template("matmul_backward", [(8, 6), (6, 5), (8, 5)], "a") == "matmul"
    assert template("dense_backward", [(8, 6), (5, 6), (8, 5)], "weight") == "matmul"
    conv = [(1, 8, 10, 10), (16, 8, 3, 3), (1, 16, 10, 10)]
    assert template("conv2d_nchw_backward", conv, "x", padding=1) == "conv2d_flat"
    assert template("conv2d_nchw_backward", conv, "weight", padding=1) == "panel"
    assert template("softmax_backward", [(4, 64), (4, 64)], "x") in ("rowwise", "auto")
    assert template("relu_backward", [(4, 64), (4, 64)], "x") == "auto"


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 1, 1), (1, 0, 2)])
def test_conv2d_backward_matches_pytorch(stride, padding, groups):
    torch = _torch()
    rng = _rng(3)
    x = rng.standard_normal((2, 4, 11, 10)).astype("float32")
    w = rng.standard_normal((6, 4 // groups, 3, 3)).astype("float32")
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    y = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, groups=groups)
    g = rng.standard_normal(tuple(y.shape)).astype("float32")
    rx, rw = torch.autograd.grad(y, (xt, wt), torch.from_numpy(g))
    gx, gw = td.ops.conv2d_nchw_backward(x, w, g, stride=stride, padding=padding,
                                         groups=groups)
    np.testing.assert_allclose(gx, rx.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, rw.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "layer_norm"])
def test_rowwise_backward_matches_pytorch(name):
    torch = _torch()
    rng = _rng(4)
    x = rng.standard_normal((37, 70)).astype("float32")
    g = rng.standard_normal((37, 70)).astype("float32")
    xt = torch.from_numpy(x).requires_grad_()
    if name == "layer_norm":
        gamma = rng.standard_normal(70).astype("float32")
        beta = rng.standard_normal(70).astype("float32")
        gt, bt = torch.from_numpy(gamma).requires_grad_(), torch.from_numpy(beta).requires_grad_()
        y = torch.nn.functional.layer_norm(xt, (70,), gt, bt)
        refs = torch.autograd.grad(y, (xt, gt, bt), torch.from_numpy(g))
        ours = td.ops.layer_norm_backward(x, gamma, beta, g)
    else:
        y = getattr(torch, name)(xt, -1)
        refs = torch.autograd.grad(y, (xt,), torch.from_numpy(g))
        ours = getattr(td.ops, f"{name}_backward")(x, g)
    for a, b in zip(ours, refs):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=2e-5)


def test_a_matmul_gradient_without_records_uses_the_matmul_records(tmp_path):
    """The operator table's records: grad_b = a.T @ g is a matmul of the same sizes, so
    a record of matmul (48x40 by 40x72... here a.T @ g: 40x48 by 48x72) applies."""
    from tensordsl import autotune
    from tensordsl.autotune.records import RecordDB, record_target
    a = f64(48, 40, seed=5).astype("float32")
    b = f64(40, 72, seed=6).astype("float32")
    g = f64(48, 72, seed=7).astype("float32")
    forward = autotune.Workload.from_arrays("matmul", [a.T.copy(), g], {})
    db = RecordDB(tmp_path / "r.sqlite")
    db.add(forward.key, record_target("llvm"), "matmul", {"mr": 4, "nr": 16, "ku": 1}, "ok",
           seconds=1e-6)
    w = autotune.Workload.from_arrays("matmul_backward", [a, b, g], {"wrt": "b"})
    with autotune.apply_history_best(db):
        assert w.tuned_config() == {"mr": 4, "nr": 16, "ku": 1}
        _, gb = td.ops.matmul_backward(a, b, g)
        tuned = [v[0] for k, v in ops._CACHE.items()
                 if k[0] == "matmul_backward" and ("wrt", "b") in k[2] and k[-2]
                 and k[1][0][1] == (48, 40)]
    np.testing.assert_allclose(gb, a.T @ g, rtol=1e-4, atol=1e-4)
    assert "1, 16)]" in str(tuned[-1].func)


def test_wrt_asks_for_some_gradients_only():
    x, w = f64(1, 3, 6, 6), f64(4, 3, 3, 3, seed=1)
    g = f64(1, 4, 6, 6, seed=2)
    gx, gw = td.ops.conv2d_nchw_backward(x, w, g, padding=1)
    only = td.ops.conv2d_nchw_backward(x, w, g, padding=1, wrt="weight")
    assert only[0] is None
    np.testing.assert_array_equal(only[1], gw)
    both = td.ops.conv2d_nchw_backward(x, w, g, padding=1, wrt=("x", "weight"))
    np.testing.assert_array_equal(both[0], gx)
    with pytest.raises(ValueError, match="wrt must name operands of conv2d_nchw "
                                         "\\(x, weight\\), got 'bias'"):
        td.ops.conv2d_nchw_backward(x, w, g, padding=1, wrt="bias")
