"""Every operator of kernels/dense.py differentiated: adjoints of each float input against
central differences in float64 on odd shapes, and against PyTorch's autograd where torch
is installed (the finite-difference tests never need it); tangents and Hessian-vector
products of softmax, layer_norm and a small MLP's loss.

Each case's adjoints are derived and evaluated once (``derived``) and shared by its two
comparisons, so a kernel is compiled once per session."""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import kernels.dense as K
import tensordsl as td

from .fd import (Kernel, assert_close, check_adjoint_values, check_grad, check_hvp, check_jvp,
                 evaluate, static_shape)
from .references import conv2d_nchw_adjoints, max_pool2d_adjoint


def _tf():
    return pytest.importorskip("torch").nn.functional


@dataclass(frozen=True)
class Case:
    """``build(**placeholders) -> y`` and the same operator in torch, ``torch(**tensors)``;
    ``inputs``: name -> shape of each float64 input, in the operator's order;
    ``indices``: name -> fixed integer array (read, not differentiated);
    ``away_from_zero``: the inputs drawn away from zero (divisors, inputs of a kink)."""
    build: Callable
    inputs: dict
    torch: Callable
    indices: dict = field(default_factory=dict)
    away_from_zero: tuple = ()


def _conv_nchw(stride=1, padding=0, dilation=1, groups=1):
    def torch_conv(x, w):
        pt, pl, pb, pr = K._padding4(padding, "test")
        x = _tf().pad(x, (pl, pr, pt, pb))
        return _tf().conv2d(x, w, stride=stride, dilation=dilation, groups=groups)
    return (lambda x, w: K.conv2d_nchw(x, w, stride=stride, padding=padding, dilation=dilation,
                                       groups=groups)), torch_conv


def _conv_nhwc(stride=1, padding=0, dilation=1, groups=1):
    def torch_conv(x, w):
        pt, pl, pb, pr = K._padding4(padding, "test")
        x = _tf().pad(x.permute(0, 3, 1, 2), (pl, pr, pt, pb))
        y = _tf().conv2d(x, w.permute(3, 2, 0, 1), stride=stride, dilation=dilation,
                         groups=groups)
        return y.permute(0, 2, 3, 1)
    return (lambda x, w: K.conv2d_nhwc(x, w, stride=stride, padding=padding, dilation=dilation,
                                       groups=groups)), torch_conv


def conv_case(x, w, layout="nchw", **options):
    build, torch_conv = (_conv_nchw if layout == "nchw" else _conv_nhwc)(**options)
    return Case(build, {"x": x, "w": w}, torch_conv)


def _reduce_torch(fn, axis, keepdims):
    def f(x):
        if axis is None:
            out = fn(x, dim=tuple(range(x.ndim)), keepdim=keepdims)
            return out if keepdims else out.reshape(1)
        return fn(x, dim=axis, keepdim=keepdims)
    return f


def _amax(x, dim, keepdim):
    return x.amax(dim=dim, keepdim=keepdim)


def _sum(x, dim, keepdim):
    return x.sum(dim=dim, keepdim=keepdim)


def _mean(x, dim, keepdim):
    return x.mean(dim=dim, keepdim=keepdim)


def _elementwise(what, a_shape, b_shape, torch_fn, away=()):
    return Case(lambda a, b: getattr(K, what)(a, b), {"a": a_shape, "b": b_shape},
                torch_fn, away_from_zero=away)


def _torch():
    return pytest.importorskip("torch")


CASES = {
    # matmul family
    **{f"matmul_{'T' if ta else 'N'}{'T' if tb else 'N'}": Case(
        lambda a, b, ta=ta, tb=tb: K.matmul(a, b, transpose_a=ta, transpose_b=tb),
        {"a": (7, 5) if ta else (5, 7), "b": (3, 7) if tb else (7, 3)},
        lambda a, b, ta=ta, tb=tb: (a.T if ta else a) @ (b.T if tb else b))
       for ta in (False, True) for tb in (False, True)},
    "batch_matmul": Case(K.batch_matmul, {"a": (2, 5, 7), "b": (2, 7, 3)}, lambda a, b: a @ b),
    "batch_matmul_TN": Case(lambda a, b: K.batch_matmul(a, b, transpose_a=True),
                            {"a": (2, 7, 5), "b": (2, 7, 3)},
                            lambda a, b: a.transpose(1, 2) @ b),
    "batch_matmul_NT": Case(lambda a, b: K.batch_matmul(a, b, transpose_b=True),
                            {"a": (3, 5, 7), "b": (3, 4, 7)},
                            lambda a, b: a @ b.transpose(1, 2)),
    "dense": Case(K.dense, {"x": (5, 7), "weight": (3, 7)},
                  lambda x, weight: _tf().linear(x, weight)),
    "dense_bias": Case(K.dense, {"x": (5, 7), "weight": (3, 7), "bias": (3,)},
                       lambda x, weight, bias: _tf().linear(x, weight, bias)),
    # convolutions: the direct form (stride, groups, 1x1) and the padded-width flat form
    # (dense stride-1 windows larger than 1x1)
    "conv_stride2": conv_case((2, 3, 9, 11), (4, 3, 3, 3), stride=2, padding=1),
    "conv_dilation2": conv_case((1, 3, 11, 10), (4, 3, 3, 3), dilation=2, padding=2),
    "conv_dilation2_stride2": conv_case((1, 2, 13, 11), (3, 2, 3, 3), stride=2, dilation=2),
    "conv_groups2": conv_case((1, 4, 9, 7), (6, 2, 3, 3), groups=2, padding=1),
    "conv_depthwise": conv_case((1, 3, 8, 9), (3, 1, 3, 3), groups=3, padding=1),
    "conv_asymmetric_pad": conv_case((1, 2, 7, 9), (3, 2, 3, 2), padding=(1, 0, 2, 1)),
    "conv_asymmetric_pad_left": conv_case((1, 2, 7, 6), (3, 2, 2, 3), padding=(0, 2, 1, 0)),
    "conv_asymmetric_pad_stride2": conv_case((1, 2, 9, 9), (3, 2, 3, 3), stride=2,
                                             padding=(0, 1, 2, 0)),
    "conv_3x3_flat": conv_case((2, 3, 7, 9), (5, 3, 3, 3), padding=1),
    "conv_3x3_flat_unpadded": conv_case((1, 3, 7, 9), (5, 3, 3, 3)),
    "conv_1x1": conv_case((1, 5, 7, 6), (3, 5, 1, 1)),
    "conv_rectangular_stride": conv_case((1, 2, 9, 11), (3, 2, 3, 2), stride=(1, 2), padding=1),
    "conv_nhwc": conv_case((1, 7, 9, 3), (3, 3, 3, 4), layout="nhwc", padding=1),
    "conv_nhwc_groups_stride2": conv_case((1, 8, 7, 4), (3, 3, 2, 6), layout="nhwc", stride=2,
                                          padding=1, groups=2),
    # pooling (random data: no ties)
    "max_pool_3s2p1": Case(lambda x: K.max_pool2d(x, 3, stride=2, padding=1),
                           {"x": (2, 3, 9, 11)},
                           lambda x: _tf().max_pool2d(x, 3, stride=2, padding=1)),
    "max_pool_2": Case(lambda x: K.max_pool2d(x, 2), {"x": (1, 2, 8, 7)},
                       lambda x: _tf().max_pool2d(x, 2)),
    "max_pool_overlapping": Case(lambda x: K.max_pool2d(x, (3, 2), stride=1), {"x": (1, 2, 7, 6)},
                                 lambda x: _tf().max_pool2d(x, (3, 2), stride=1)),
    **{f"avg_pool_3s2p1_{'incl' if incl else 'excl'}": Case(
        lambda x, incl=incl: K.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=incl),
        {"x": (2, 3, 9, 11)},
        lambda x, incl=incl: _tf().avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=incl))
       for incl in (True, False)},
    "avg_pool_2s1": Case(lambda x: K.avg_pool2d(x, 2, stride=1), {"x": (1, 2, 7, 5)},
                         lambda x: _tf().avg_pool2d(x, 2, stride=1)),
    # elementwise with broadcasting
    "add": _elementwise("add", (5, 3, 7), (3, 1), lambda a, b: a + b),
    "subtract": _elementwise("subtract", (7,), (5, 7), lambda a, b: a - b),
    "multiply": _elementwise("multiply", (5, 1, 7), (3, 1), lambda a, b: a * b),
    "divide": _elementwise("divide", (5, 7), (5, 1), lambda a, b: a / b, away=("b",)),
    "maximum": _elementwise("maximum", (5, 7), (7,), lambda a, b: _torch().maximum(a, b)),
    "minimum": _elementwise("minimum", (4, 1, 6), (5, 1), lambda a, b: _torch().minimum(a, b)),
    "multiply_number": Case(lambda a: K.multiply(a, 2.5), {"a": (5, 7)}, lambda a: a * 2.5),
    "divide_number_by": Case(lambda a: K.divide(3.0, a), {"a": (5, 7)}, lambda a: 3.0 / a,
                             away_from_zero=("a",)),
    "pad": Case(lambda x: K.pad(x, (1, 0, 2), (0, 3, 1), value=0.5), {"x": (3, 4, 5)},
                lambda x: _tf().pad(x, (2, 1, 0, 3, 1, 0), value=0.5)),
    # take: the gradient gathers repeats
    "take_axis0": Case(lambda x, indices: K.take(x, indices, axis=0), {"x": (7, 5)},
                       lambda x, indices: x[indices],
                       indices={"indices": np.array([3, 0, 3, 6, 6, 6, 1, 2, 0], "int32")}),
    "take_axis1_2d": Case(lambda x, indices: K.take(x, indices, axis=1), {"x": (4, 7)},
                          lambda x, indices: x[:, indices],
                          indices={"indices": np.array([[5, 0, 5], [1, 5, 0]], "int64")}),
    # activations
    "relu": Case(K.relu, {"x": (5, 7)}, lambda x: _tf().relu(x), away_from_zero=("x",)),
    "gelu": Case(K.gelu, {"x": (5, 7)}, lambda x: _tf().gelu(x)),
    "gelu_tanh": Case(lambda x: K.gelu(x, approximate="tanh"), {"x": (5, 7)},
                      lambda x: _tf().gelu(x, approximate="tanh")),
    # reductions
    **{f"reduce_{what}_{label}": Case(
        lambda x, what=what, axis=axis, keep=keep: getattr(K, f"reduce_{what}")(
            x, axis=axis, keepdims=keep),
        {"x": (5, 7, 3)}, _reduce_torch(fn, axis, keep))
       for what, fn in (("sum", _sum), ("mean", _mean), ("max", _amax))
       for label, axis, keep in (("axis1", 1, False), ("axes02_keep", (0, 2), True),
                                 ("all", None, False), ("last_keep", -1, True))},
    # normalizations
    "softmax": Case(K.softmax, {"x": (5, 7)}, lambda x: _torch().softmax(x, dim=-1)),
    "softmax_axis1": Case(lambda x: K.softmax(x, axis=1), {"x": (3, 5, 4)},
                          lambda x: _torch().softmax(x, dim=1)),
    "log_softmax": Case(K.log_softmax, {"x": (5, 7)}, lambda x: _torch().log_softmax(x, dim=-1)),
    "log_softmax_axis0": Case(lambda x: K.log_softmax(x, axis=0), {"x": (5, 7)},
                              lambda x: _torch().log_softmax(x, dim=0)),
    "layer_norm": Case(K.layer_norm, {"x": (5, 7), "gamma": (7,), "beta": (7,)},
                       lambda x, gamma, beta: _tf().layer_norm(x, (7,), gamma, beta, eps=1e-5)),
    "layer_norm_two_axes": Case(lambda x, gamma, beta: K.layer_norm(x, gamma, beta, axis=(-2, -1)),
                                {"x": (3, 5, 4), "gamma": (5, 4), "beta": (5, 4)},
                                lambda x, gamma, beta: _tf().layer_norm(x, (5, 4), gamma, beta,
                                                                        eps=1e-5)),
}


def _input_values(rng, case: Case) -> dict:
    values = {}
    for name, shape in case.inputs.items():
        v = rng.uniform(-1, 1, shape)
        if name in case.away_from_zero:
            v = np.sign(v) * (0.2 + np.abs(v))
        values[name] = v
    return values


@dataclass
class Forward:
    y: td.Tensor
    xs: list          # the float inputs' placeholders
    values: dict      # placeholder -> array: inputs and indices
    named: dict       # input name -> array, for torch


@functools.cache
def forward(name: str) -> Forward:
    case = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    tensors = {nm: td.placeholder(shape, dtype="float64", name=nm)
               for nm, shape in case.inputs.items()}
    tensors.update({nm: td.placeholder(a.shape, dtype=str(a.dtype), name=nm)
                    for nm, a in case.indices.items()})
    named = {**_input_values(rng, case), **case.indices}
    return Forward(case.build(**tensors), [tensors[nm] for nm in case.inputs],
                   {tensors[nm]: a for nm, a in named.items()}, named)


@functools.cache
def derived(name: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """A random head and the adjoint of every float input of the case's forward."""
    f = forward(name)
    adjoints, head_t = td.vjp(f.y, f.xs)
    head = np.random.default_rng(zlib.crc32(name.encode()) + 1).standard_normal(static_shape(f.y))
    # the default schedule: the auto-scheduler's generic form of some adjoints (a
    # convolution's) compiles for seconds; test_auto_scheduled_adjoints builds a few so
    return head, [Kernel(a, "default")({**f.values, head_t: head}) for a in adjoints]


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_against_finite_differences(name):
    f = forward(name)
    head, grads = derived(name)
    check_adjoint_values(f.y, f.xs, grads, f.values, head, np.random.default_rng(7))


def torch_gradients(fn, named: dict, wrt, head):
    torch = _torch()
    ts = {nm: torch.tensor(a, requires_grad=nm in wrt) if a.dtype.kind == "f"
          else torch.tensor(a.astype("int64")) for nm, a in named.items()}
    y = fn(**ts)
    assert tuple(y.shape) == head.shape, (tuple(y.shape), head.shape)
    (y * torch.tensor(head)).sum().backward()
    return [ts[nm].grad.numpy() for nm in wrt]


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_against_torch(name):
    f = forward(name)
    head, grads = derived(name)
    case = CASES[name]
    expected = torch_gradients(case.torch, f.named, list(case.inputs), head)
    for nm, got, want in zip(case.inputs, grads, expected):
        assert_close(got, want, f"{name}: adjoint of {nm} against torch", rtol=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jvp_against_finite_differences(name):
    f = forward(name)
    check_jvp(f.y, f.xs, f.values, np.random.default_rng(11), schedule="default")


# a few cases whose adjoints go through the auto-scheduler (td.build([...]), as a user
# builds them) too; the convolutions' are built so by test_no_scatter
AUTO_SCHEDULED = ["dense_bias", "max_pool_3s2p1", "avg_pool_2s1", "take_axis1_2d",
                  "reduce_max_axes02_keep", "softmax_axis1", "layer_norm_two_axes",
                  "log_softmax_axis0"]


@pytest.mark.parametrize("name", AUTO_SCHEDULED)
def test_auto_scheduled_adjoints_match(name):
    f = forward(name)
    head, grads = derived(name)
    adjoints, head_t = td.vjp(f.y, f.xs)
    for x, adj, want in zip(f.xs, adjoints, grads):
        got = Kernel(adj, "auto")({**f.values, head_t: head})
        assert_close(got, want, f"{name}: auto-scheduled adjoint of {x.name}", rtol=1e-12)


# ---------------------------------------------------------------- forward mode and HVPs


def _placeholders(**shapes):
    return [td.placeholder(s, dtype="float64", name=nm) for nm, s in shapes.items()]


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_jvp(rng, axis):
    (x,) = _placeholders(x=(5, 7))
    y = K.softmax(x, axis=axis)
    values = {x: rng.uniform(-2, 2, (5, 7))}
    ty, (t,) = check_jvp(y, [x], values, rng)
    # closed form: J t = p * (t - sum(p * t))
    p = np.exp(values[x]) / np.exp(values[x]).sum(axis=axis, keepdims=True)
    assert_close(ty, p * (t - (p * t).sum(axis=axis, keepdims=True)), "softmax tangent")


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_hvp(rng, axis):
    (x,) = _placeholders(x=(5, 7))
    y = K.softmax(x, axis=axis)
    check_hvp(y, x, {x: rng.uniform(-2, 2, (5, 7))}, rng, head="random")


def _layer_norm(rng):
    x, gamma, beta = _placeholders(x=(5, 7), gamma=(7,), beta=(7,))
    values = {x: rng.uniform(-1, 1, (5, 7)), gamma: rng.uniform(0.5, 1.5, 7),
              beta: rng.uniform(-1, 1, 7)}
    return K.layer_norm(x, gamma, beta), (x, gamma, beta), values


def test_layer_norm_jvp(rng):
    y, xs, values = _layer_norm(rng)
    check_jvp(y, xs, values, rng)


def test_layer_norm_hvp(rng):
    y, (x, gamma, _), values = _layer_norm(rng)
    check_hvp(y, x, values, rng, head="random")
    # sum(head * y) is linear in gamma: its Hessian there is zero
    hv = check_hvp(y, gamma, values, rng, head="random")
    np.testing.assert_allclose(hv, 0.0, atol=1e-10)


class MLP:
    """loss = mean over rows of cross-entropy(dense(tanh(dense(x, W1, b1)), W2, b2), labels)."""

    N, IN, HIDDEN, OUT = 5, 7, 13, 3

    def __init__(self, rng):
        shapes = dict(x=(self.N, self.IN), W1=(self.HIDDEN, self.IN), b1=(self.HIDDEN,),
                      W2=(self.OUT, self.HIDDEN), b2=(self.OUT,), onehot=(self.N, self.OUT))
        self.tensors = dict(zip(shapes, _placeholders(**shapes)))
        t = self.tensors
        l1 = K.dense(t["x"], t["W1"], t["b1"], name="l1")
        h = td.compute(l1.shape, lambda i, j: td.tanh(l1[i, j]), name="h")
        logp = K.log_softmax(K.dense(h, t["W2"], t["b2"], name="l2"))
        r, c = td.reduce_axis((0, self.N), "r"), td.reduce_axis((0, self.OUT), "c")
        nll = td.compute((1,), lambda _: td.sum(-t["onehot"][r, c] * logp[r, c], axis=[r, c]),
                         name="nll")
        self.loss = td.compute((1,), lambda i: nll[i] * (1.0 / self.N), name="loss")
        labels = rng.integers(0, self.OUT, self.N)
        self.named = {nm: rng.uniform(-1, 1, s) for nm, s in shapes.items()}
        self.named["onehot"] = np.eye(self.OUT)[labels]
        self.labels = labels
        self.values = {t[nm]: a for nm, a in self.named.items()}

    def params(self):
        return [self.tensors[nm] for nm in ("W1", "b1", "W2", "b2")]

    def torch_loss(self, **ts):
        tf = _tf()
        h = _torch().tanh(tf.linear(ts["x"], ts["W1"], ts["b1"]))
        return tf.cross_entropy(tf.linear(h, ts["W2"], ts["b2"]),
                                _torch().tensor(self.labels)).reshape(1)


def test_mlp_loss_gradients(rng):
    mlp = MLP(rng)
    check_grad(mlp.loss, mlp.params() + [mlp.tensors["x"]], mlp.values, rng, head="ones")


def test_mlp_loss_gradients_against_torch(rng):
    mlp = MLP(rng)
    grads = td.grad(mlp.loss, mlp.params())
    got = [Kernel(g)(mlp.values) for g in grads]
    wrt = ["W1", "b1", "W2", "b2"]
    expected = torch_gradients(mlp.torch_loss, {k: v for k, v in mlp.named.items()
                                                if k != "onehot"}, wrt, np.ones(1))
    for nm, g, e in zip(wrt, got, expected):
        assert_close(g, e, f"MLP: d loss / d {nm} against torch", rtol=1e-9)


def test_mlp_loss_jvp(rng):
    mlp = MLP(rng)
    check_jvp(mlp.loss, mlp.params(), mlp.values, rng)


@pytest.mark.parametrize("wrt", ["W1", "W2"])
def test_mlp_loss_hvp(rng, wrt):
    mlp = MLP(rng)
    check_hvp(mlp.loss, mlp.tensors[wrt], mlp.values, rng)


def test_mlp_loss_hvp_against_torch(rng):
    torch = _torch()
    mlp = MLP(rng)
    W1 = mlp.tensors["W1"]
    hv, v = td.hvp(mlp.loss, W1)
    v_value = rng.standard_normal(static_shape(W1))
    got = Kernel(hv)({**mlp.values, v: v_value})
    fixed = {k: torch.tensor(a) for k, a in mlp.named.items() if k not in ("W1", "onehot")}
    _, expected = torch.autograd.functional.hvp(
        lambda w: mlp.torch_loss(W1=w, **fixed).sum(), torch.tensor(mlp.named["W1"]),
        torch.tensor(v_value))
    assert_close(got, expected.numpy(), "MLP: H v w.r.t. W1 against torch", rtol=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_table_forward_matches_torch(name):
    """The table's torch twin computes what the operator computes (else the torch
    comparison of its gradient would mean nothing)."""
    torch = _torch()
    f = forward(name)
    want = CASES[name].torch(**{nm: torch.tensor(a if a.dtype.kind == "f" else a.astype("int64"))
                                for nm, a in f.named.items()})
    assert_close(evaluate(f.y, f.values), want.numpy(), f"{name}: forward against torch",
                 rtol=1e-12)


@pytest.mark.parametrize("schedule", ["auto", "default"])
def test_max_pool_with_ties_gives_the_first_maximum_all(rng, schedule):
    x = td.placeholder((2, 3, 9, 11), dtype="float64", name="x")
    y = K.max_pool2d(x, 3, stride=2, padding=1)
    xv = rng.integers(0, 3, (2, 3, 9, 11)).astype("float64")   # ties everywhere
    xv[1, 2] = -1.0                                            # a plane of ties
    head = rng.standard_normal(static_shape(y))
    (g,), head_t = td.vjp(y, [x])
    got = Kernel(g, schedule)({x: xv, head_t: head})
    assert_close(got, max_pool2d_adjoint(xv, head, 3, 2, 1),
                 "max_pool2d adjoint with ties", rtol=1e-12)


def test_max_pool_with_ties_against_torch(rng):
    torch = _torch()
    x = td.placeholder((2, 3, 9, 11), dtype="float64", name="x")
    y = K.max_pool2d(x, 3, stride=2, padding=1)
    xv = rng.integers(0, 3, (2, 3, 9, 11)).astype("float64")
    head = rng.standard_normal(static_shape(y))
    (g,), head_t = td.vjp(y, [x])
    expected = torch_gradients(lambda x: _tf().max_pool2d(x, 3, stride=2, padding=1),
                               {"x": xv}, ["x"], head)[0]
    assert_close(Kernel(g, "default")({x: xv, head_t: head}), expected,
                 "max_pool2d adjoint with ties against torch", rtol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_with_a_symbolic_batch(rng, stride):
    """The batch left symbolic (td.var): the weight's adjoint sums over it."""
    n = td.var("n")
    x = td.placeholder((n, 3, 7, 9), dtype="float64", name="x")
    w = td.placeholder((4, 3, 3, 3), dtype="float64", name="w")
    y = K.conv2d_nchw(x, w, stride=stride, padding=1)
    (gx, gw), head_t = td.vjp(y, [x, w])
    build = {g: td.build(td.create_schedule(g.op), [x, w, head_t, g]) for g in (gx, gw)}
    for rows in (1, 3):
        xv, wv = rng.standard_normal((rows, 3, 7, 9)), rng.standard_normal((4, 3, 3, 3))
        head = rng.standard_normal((rows, 4, (7 - 1) // stride + 1, (9 - 1) // stride + 1))
        want_x, want_w = conv2d_nchw_adjoints(xv, wv, head, stride, 1)
        got_x, got_w = np.full(xv.shape, np.nan), np.full(wv.shape, np.nan)
        build[gx](xv, wv, head, got_x)
        build[gw](xv, wv, head, got_w)
        assert_close(got_x, want_x, f"d/dx, batch {rows}", rtol=1e-12)
        assert_close(got_w, want_w, f"d/dw, batch {rows}", rtol=1e-12)
