"""nn.Function.from_compute: a user's compute as a differentiable layer, against float64
numpy and central finite differences; its kernels are the ones ``tensordsl tune
file.py:fn`` (``--grad NAME --head``) tunes."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import tensordsl as td
import tensordsl.nn as nn
import tensordsl.nn.functional as F
from tensordsl import cli

MY_OPS = textwrap.dedent("""
    import tensordsl as td

    def gated(x, w):
        return td.compute(x.shape, lambda i, j: x[i, j] * td.sigmoid(w[j] * x[i, j]),
                          name="gated")

    def gated_unit(m, n):
        x = td.placeholder((m, n), name="x")
        w = td.placeholder((n,), name="w")
        return [x, w, gated(x, w)]
""")


def gated(x, w):
    return td.compute(x.shape, lambda i, j: x[i, j] * td.sigmoid(w[j] * x[i, j]),
                      name="gated")


def softplus(x):     # a custom activation: log(1 + e^x)
    return td.compute(x.shape, lambda i, j: td.log(1.0 + td.exp(x[i, j])), name="softplus")


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_gated_unit_forward_and_backward_match_numpy():
    rng = np.random.default_rng(0)
    x = nn.Tensor(rng.standard_normal((7, 5)), requires_grad=True)
    w = nn.Tensor(rng.standard_normal(5), requires_grad=True)
    gate = nn.Function.from_compute(gated)
    y = gate(x, w)
    s = _sigmoid(w.data * x.data)
    np.testing.assert_allclose(y.data, x.data * s, rtol=1e-12)
    assert y.record.op == "gated" and y.record.vjp is not None   # on the tape
    head = rng.standard_normal((7, 5))
    y.backward(head)
    ds = s * (1 - s)
    np.testing.assert_allclose(x.grad, head * (s + x.data * ds * w.data), rtol=1e-10)
    np.testing.assert_allclose(w.grad, (head * x.data * ds * x.data).sum(0), rtol=1e-10)


def test_chained_with_operators_against_finite_differences():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((6, 4)), rng.standard_normal((3, 4)),
              rng.standard_normal(3)]
    act = nn.Function.from_compute(softplus)
    gate = nn.Function.from_compute(gated)
    target = rng.standard_normal((6, 3))

    def loss_of(x, weight, w):
        h = gate(act(F.dense(x, weight)), w)
        return F.reduce_sum(F.multiply(h, target))

    x, weight, w = (nn.Tensor(a, requires_grad=True) for a in arrays)
    loss_of(x, weight, w).backward()
    directions = [rng.standard_normal(a.shape) for a in arrays]
    eps = 1e-6
    with nn.no_grad():
        plus = loss_of(*(nn.Tensor(a + eps * d) for a, d in zip(arrays, directions)))
        minus = loss_of(*(nn.Tensor(a - eps * d) for a, d in zip(arrays, directions)))
    fd = (plus.item() - minus.item()) / (2 * eps)
    got = sum((t.grad * d).sum() for t, d in zip((x, weight, w), directions))
    np.testing.assert_allclose(got, fd, rtol=1e-6)


def test_float32_in_a_sequential_and_compiled_once_per_shape():
    rng = np.random.default_rng(2)
    act = nn.Function.from_compute(softplus)
    model = nn.Sequential(nn.Linear(4, 8, rng=rng), act, nn.Linear(8, 2, rng=rng))
    x = rng.standard_normal((5, 4)).astype("float32")
    out = model(nn.Tensor(x))
    lin0, lin1 = model._modules["0"], model._modules["2"]
    h = np.log1p(np.exp(x @ lin0.weight.data.T + lin0.bias.data))
    np.testing.assert_allclose(out.data, h @ lin1.weight.data.T + lin1.bias.data,
                               rtol=1e-5, atol=1e-6)
    F.reduce_sum(out).backward()
    assert lin0.weight.grad.shape == (8, 4) and np.isfinite(lin0.weight.grad).all()
    model(nn.Tensor(x))
    model(nn.Tensor(x[:3]))
    assert len(act._kernels) == 2            # one per shape, not per call


def test_only_the_operands_that_ask_get_a_gradient():
    a = nn.Tensor(np.ones(4), requires_grad=True)
    b = nn.Tensor(np.full(4, 2.0))
    add = nn.Function.from_compute(lambda a, b: td.compute(a.shape, lambda i: a[i] + b[i]))
    add(a, b).backward(np.arange(4.0))
    np.testing.assert_array_equal(a.grad, np.arange(4.0))
    assert b.grad is None
    with nn.no_grad():
        assert add(a, b).record is None


def test_a_file_is_tuned_from_the_cli_and_its_records_are_the_layer_s(tmp_path, capsys):
    path = tmp_path / "my_ops.py"
    path.write_text(MY_OPS)
    db = tmp_path / "r.sqlite"
    assert cli.main(["tune", f"{path}:gated_unit", "--shape", "16,8", "--trials", "2",
                     "--db", str(db)]) == 0
    assert cli.main(["tune", f"{path}:gated_unit", "--shape", "16,8", "--grad", "w",
                     "--head", "--trials", "2", "--db", str(db)]) == 0
    capsys.readouterr()
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.records import RecordDB
    from tensordsl.autotune.records import canonical
    from tensordsl.autotune.structural import structural_key

    def key(tensors):
        return canonical({"op": structural_key(tensors[-1], tensors[:-1]),
                          "args": [["array", [int(d.value) for d in t.shape], t.dtype]
                                   for t in tensors[:-1]], "attrs": {}})

    tuned = {w for w, _, _, _ in RecordDB(db).workloads()}
    # the two kernels the layer builds are filed under the keys the CLI tuned
    for gate in (nn.Function.from_compute(f"{path}:gated"),
                 nn.Function.from_compute(f"{path}:gated_unit", sizes=lambda x, w: x)):
        inputs, out = gate.define(((16, 8), (8,)), ("float32", "float32"))
        (gw,), head = td.vjp(out, [inputs[1]])
        assert {key(inputs + [out]), key(inputs + [head, gw])} == tuned
        with apply_history_best(db):
            x = nn.Tensor(np.linspace(-1, 1, 128, dtype="float32").reshape(16, 8))
            w = nn.Tensor(np.linspace(0, 1, 8, dtype="float32"), requires_grad=True)
            y = gate(x, w)
            y.backward(np.ones((16, 8), "float32"))
        s = _sigmoid(w.data * x.data)
        np.testing.assert_allclose(y.data, x.data * s, rtol=1e-5)
        np.testing.assert_allclose(w.grad, (x.data ** 2 * s * (1 - s)).sum(0), rtol=1e-5)


def test_bad_computes_are_refused_clearly(tmp_path):
    with pytest.raises(TypeError, match="expected a callable or 'path/to/file.py:function'"):
        nn.Function.from_compute(3)
    not_a_tensor = nn.Function.from_compute(lambda x: [x])
    with pytest.raises(TypeError, match="must return one te tensor"):
        not_a_tensor(nn.Tensor(np.ones(3)))
    path = tmp_path / "my_ops.py"
    path.write_text(MY_OPS)
    wrong = nn.Function.from_compute(f"{path}:gated_unit", sizes=lambda x, w: (4, 4))
    with pytest.raises(ValueError, match=r"do not match the operands \(\(4, 3\):float64"):
        wrong(nn.Tensor(np.ones((4, 3))), nn.Tensor(np.ones(3)))
    with pytest.raises(ValueError, match="has no function 'nope'"):
        nn.Function.from_compute(f"{path}:nope")


def test_traced_into_a_train_step_it_computes_what_the_eager_step_does():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 6)).astype("float32")
    y = rng.integers(0, 4, 16)
    losses, weights = [], []
    for compiled in (False, True):
        model = nn.Sequential(nn.Linear(6, 8, rng=np.random.default_rng(0)),
                              nn.Function.from_compute(softplus),
                              nn.Linear(8, 4, rng=np.random.default_rng(1)))
        opt = nn.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if compiled:
            step = nn.TrainStep(model, F.cross_entropy, opt)
        else:
            def step(xb, yb):
                loss = F.cross_entropy(model(nn.Tensor(xb)), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                return loss.item()
        losses.append([step(x, y) for _ in range(3)])
        weights.append(model._modules["0"].weight.data.copy())
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    np.testing.assert_allclose(weights[1], weights[0], rtol=1e-5, atol=1e-6)
    assert losses[0][2] < losses[0][0]
