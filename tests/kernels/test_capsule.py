"""The capsule operators of kernels/capsule.py: every definition against a numpy reference
written here (outputs poisoned with NaN), on the paper's small sizes and on random small
shapes; dynamic routing and its gradients against PyTorch's autograd; the gradients of
every operator against central finite differences in float64; bad shapes refused."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensordsl as td
from kernels import capsule as caps
from tensordsl.te.tensor import ACCUMULATE_TAG
from tests.autodiff import fd
from tests.helpers import poison_allocations, poisoned


# ---------------------------------------------------------------- numpy references


def np_squash(s, axis=-1, eps=1e-7):
    sq = (s * s).sum(axis, keepdims=True)
    return sq / (1 + sq) * s / np.sqrt(sq + eps)


def np_predictions(u, W):
    return np.einsum("ijdk,bik->bijd", W, u)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def np_routing(u_hat, iterations):
    logits = np.zeros(u_hat.shape[:3])
    for t in range(iterations):
        c = np_softmax(logits, axis=2)
        v = np_squash(np.einsum("bij,bijd->bjd", c, u_hat))
        if t < iterations - 1:
            logits = logits + np.einsum("bijd,bjd->bij", u_hat, v)
    return v


def np_margin(v, T, m_plus=0.9, m_minus=0.1, lam=0.5, eps=1e-12):
    length = np.sqrt((v * v).sum(-1) + eps)
    return (T * np.maximum(0, m_plus - length) ** 2
            + lam * (1 - T) * np.maximum(0, length - m_minus) ** 2).sum(-1)


def np_conv(x, w, stride):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH, OW = (H - KH) // stride + 1, (W - KW) // stride + 1
    out = np.zeros((N, F, OH, OW))
    for y in range(OH):
        for z in range(OW):
            patch = x[:, :, y * stride:y * stride + KH, z * stride:z * stride + KW]
            out[:, :, y, z] = np.einsum("nchw,fchw->nf", patch, w)
    return out


def np_primary(x, w, bias, caps_dim, stride):
    y = np_conv(x, w, stride) + bias[None, :, None, None]
    N, F, OH, OW = y.shape
    grouped = y.reshape(N, F // caps_dim, caps_dim, OH * OW).transpose(0, 1, 3, 2)
    return np_squash(grouped.reshape(N, -1, caps_dim))


def np_m_step(V, a, R, beta_u, beta_a, lam, eps=1e-6):
    Rw = R * a[:, :, None]
    total = Rw.sum(1)                                               # (b, j)
    mu = np.einsum("bij,bijh->bjh", Rw, V) / total[..., None]
    sigma2 = np.einsum("bij,bijh->bjh", Rw, (V - mu[:, None]) ** 2) / total[..., None] + eps
    cost = ((beta_u[None, :, None] + np.log(np.sqrt(sigma2))) * total[..., None]).sum(-1)
    a_out = 1 / (1 + np.exp(-lam * (beta_a[None] - cost)))
    return mu, sigma2, a_out


def np_e_step(V, mu, sigma2, a_out):
    # the density itself, then normalized (the definition works in the log domain)
    p = np.prod(np.exp(-(V - mu[:, None]) ** 2 / (2 * sigma2[:, None]))
                / np.sqrt(2 * math.pi * sigma2[:, None]), axis=-1)
    ap = a_out[:, None, :] * p
    return ap / ap.sum(2, keepdims=True)


def np_em_routing(V, a, beta_u, beta_a, iterations, lams, eps=1e-6):
    R = np.full(V.shape[:3], 1 / V.shape[2])
    for t in range(iterations):
        mu, sigma2, a_out = np_m_step(V, a, R, beta_u, beta_a, lams[t], eps)
        if t < iterations - 1:
            R = np_e_step(V, mu, sigma2, a_out)
    return mu, a_out


# ---------------------------------------------------------------- running definitions


def run(outs, feeds: dict):
    """The tensors ``outs`` computed from ``feeds`` ({placeholder: array}); one output is
    auto-scheduled as a user would build it, several share the default schedule."""
    outs = list(outs)
    inputs = list(feeds)
    if len(outs) == 1:
        f = td.build([*inputs, *outs])
    else:
        f = td.build(td.create_schedule([o.op for o in outs]), [*inputs, *outs])
    results = [poisoned(fd.static_shape(o), o.dtype) for o in outs]
    f(*[np.ascontiguousarray(feeds[p]) for p in inputs], *results)
    return results


def placeholders(dtype="float64", **shapes):
    return {name: td.placeholder(shape, dtype=dtype, name=name) for name, shape in shapes.items()}


def routing_inputs(rng, B, I, Din, J, D, dtype="float64", scale=0.5):
    u = rng.standard_normal((B, I, Din)).astype(dtype)
    W = (rng.standard_normal((I, J, D, Din)) * scale).astype(dtype)
    return u, W


# ---------------------------------------------------------------- forward vs numpy


@pytest.mark.parametrize("shape, axis", [((2, 10, 16), -1), ((3, 4, 5), 1), ((7,), 0)])
def test_squash(rng, shape, axis):
    s = rng.standard_normal(shape) * 2
    s[(0,) * (len(shape) - 1)] = 0.0    # a zero capsule squashes to zero, not NaN
    p = placeholders(s=shape)
    (got,) = run([caps.squash(p["s"], axis=axis)], {p["s"]: s})
    np.testing.assert_allclose(got, np_squash(s, axis), rtol=1e-12, atol=1e-14)
    assert np.all(np.linalg.norm(got, axis=axis) < 1)


@pytest.mark.parametrize("iterations", [1, 3])
def test_routing_paper_small_variant(rng, iterations):
    # the paper's layer on 32 input capsules: 8-d capsules routed to 10 of 16 dims, float32
    B, I, Din, J, D = 2, 32, 8, 10, 16
    u, W = routing_inputs(rng, B, I, Din, J, D, "float32", scale=0.2)
    p = placeholders("float32", u=u.shape, W=W.shape)
    u_hat = caps.capsule_predictions(p["u"], p["W"])
    got_hat, = run([u_hat], {p["u"]: u, p["W"]: W})
    expected_hat = np_predictions(u.astype("float64"), W.astype("float64"))
    np.testing.assert_allclose(got_hat, expected_hat, rtol=1e-5, atol=1e-5)
    v = caps.capsule_routing(p["u"], p["W"], iterations=iterations)
    got, = run([v], {p["u"]: u, p["W"]: W})
    np.testing.assert_allclose(got, np_routing(expected_hat, iterations), rtol=1e-4, atol=1e-6)


def test_td_ops_capsule_routing(rng, monkeypatch):
    poison_allocations(monkeypatch)
    u, W = routing_inputs(rng, 3, 12, 8, 10, 16, "float32", scale=0.3)
    v = td.ops.capsule_routing(u, W, iterations=3)
    expected = np_routing(np_predictions(u.astype("float64"), W.astype("float64")), 3)
    assert v.shape == (3, 10, 16) and v.dtype == np.float32
    np.testing.assert_allclose(v, expected, rtol=1e-4, atol=1e-6)
    v2 = td.ops.capsule_routing(u, W, iterations=2)
    expected2 = np_routing(np_predictions(u.astype("float64"), W.astype("float64")), 2)
    np.testing.assert_allclose(v2, expected2, rtol=1e-4, atol=1e-6)


@settings(max_examples=6, deadline=None)
@given(B=st.integers(1, 3), I=st.integers(1, 6), Din=st.integers(1, 4), J=st.integers(1, 4),
       D=st.integers(1, 5), iterations=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_routing_random_shapes(B, I, Din, J, D, iterations, seed):
    rng = np.random.default_rng(seed)
    u, W = routing_inputs(rng, B, I, Din, J, D)
    p = placeholders(u=u.shape, W=W.shape)
    got, = run([caps.capsule_routing(p["u"], p["W"], iterations)], {p["u"]: u, p["W"]: W})
    np.testing.assert_allclose(got, np_routing(np_predictions(u, W), iterations),
                               rtol=1e-10, atol=1e-12)


def test_margin_loss(rng):
    B, K, D = 4, 10, 16
    v = rng.standard_normal((B, K, D)) * rng.uniform(0, 0.4, (B, K, 1))   # lengths 0 .. ~1.6
    v[0, 0] = 0.0
    T = np.eye(K)[rng.integers(0, K, B)]
    p = placeholders(v=v.shape, T=T.shape)
    got, = run([caps.margin_loss(p["v"], p["T"])], {p["v"]: v, p["T"]: T})
    np.testing.assert_allclose(got, np_margin(v, T), rtol=1e-12)
    got, = run([caps.margin_loss(p["v"], p["T"], m_plus=0.8, m_minus=0.2, lam=0.25)],
               {p["v"]: v, p["T"]: T})
    np.testing.assert_allclose(got, np_margin(v, T, 0.8, 0.2, 0.25), rtol=1e-12)


@pytest.mark.parametrize("stride, H, caps_dim, types", [(2, 9, 8, 2), (1, 6, 4, 3)])
def test_primary_capsules(rng, stride, H, caps_dim, types):
    x = rng.standard_normal((2, 3, H, H))
    w = rng.standard_normal((types * caps_dim, 3, 3, 3)) * 0.3
    bias = rng.standard_normal(types * caps_dim)
    p = placeholders(x=x.shape, w=w.shape, bias=bias.shape)
    out = caps.primary_capsules(p["x"], p["w"], p["bias"], caps_dim=caps_dim, stride=stride)
    got, = run([out], {p["x"]: x, p["w"]: w, p["bias"]: bias})
    np.testing.assert_allclose(got, np_primary(x, w, bias, caps_dim, stride), rtol=1e-10,
                               atol=1e-12)


def em_inputs(rng, B=2, I=6, J=3, H=4):
    V = rng.standard_normal((B, I, J, H))
    a = rng.uniform(0.2, 1.0, (B, I))
    R = np_softmax(rng.standard_normal((B, I, J)), axis=2)
    beta_u, beta_a = rng.standard_normal(J) * 0.5, rng.standard_normal(J) * 0.5
    return V, a, R, beta_u, beta_a


def test_em_steps(rng):
    V, a, R, beta_u, beta_a = em_inputs(rng, B=2, I=32, J=5, H=16)
    p = placeholders(V=V.shape, a=a.shape, R=R.shape, beta_u=beta_u.shape, beta_a=beta_a.shape)
    feeds = dict(zip(p.values(), (V, a, R, beta_u, beta_a)))
    m = caps.em_m_step(p["V"], p["a"], p["R"], p["beta_u"], p["beta_a"], 0.01)
    mu, sigma2, a_out = run(m, feeds)
    expected = np_m_step(V, a, R, beta_u, beta_a, 0.01)
    for got, want in zip((mu, sigma2, a_out), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    q = placeholders(mu=mu.shape, sigma2=sigma2.shape, a_out=a_out.shape)
    e = caps.em_e_step(p["V"], q["mu"], q["sigma2"], q["a_out"])
    got, = run([e], {p["V"]: V, q["mu"]: mu, q["sigma2"]: sigma2, q["a_out"]: a_out})
    np.testing.assert_allclose(got, np_e_step(V, mu, sigma2, a_out), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.sum(2), 1.0, rtol=1e-12)


def test_em_e_step_with_underflowed_activations(rng):
    # every output capsule's activation is 0 (a logistic of a large cost, in float32):
    # the assignments follow the densities alone, finite
    V, a, R, beta_u, beta_a = em_inputs(rng, B=2, I=8, J=3, H=16)
    mu, sigma2, _ = np_m_step(V, a, R, beta_u, beta_a, 1.0)
    a_out = np.zeros((2, 3), "float32")
    a_out[1, 0] = 1e-3     # one alive: it takes everything
    p = placeholders("float32", V=V.shape, mu=mu.shape, sigma2=sigma2.shape, a_out=(2, 3))
    e = caps.em_e_step(p["V"], p["mu"], p["sigma2"], p["a_out"])
    got, = run([e], {p["V"]: V.astype("float32"), p["mu"]: mu.astype("float32"),
                     p["sigma2"]: sigma2.astype("float32"), p["a_out"]: a_out})
    np.testing.assert_allclose(got[0], np_e_step(V, mu, sigma2, np.ones((2, 3)))[0],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[1], np.eye(3)[[0] * 8], atol=1e-6)


@pytest.mark.parametrize("iterations, lam", [(1, 0.1), (3, (0.01, 0.02, 0.05))])
def test_em_routing(rng, iterations, lam):
    V, a, _, beta_u, beta_a = em_inputs(rng, B=2, I=16, J=4, H=16)
    p = placeholders(V=V.shape, a=a.shape, beta_u=beta_u.shape, beta_a=beta_a.shape)
    pose, a_out = caps.em_routing(p["V"], p["a"], p["beta_u"], p["beta_a"], iterations, lam)
    got = run([pose, a_out], dict(zip(p.values(), (V, a, beta_u, beta_a))))
    lams = [lam] * iterations if isinstance(lam, float) else lam
    for g, want in zip(got, np_em_routing(V, a, beta_u, beta_a, iterations, lams)):
        np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-12)


@settings(max_examples=4, deadline=None)
@given(B=st.integers(1, 2), I=st.integers(2, 6), J=st.integers(1, 4), H=st.integers(1, 5),
       iterations=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_em_routing_random_shapes(B, I, J, H, iterations, seed):
    rng = np.random.default_rng(seed)
    V, a, _, beta_u, beta_a = em_inputs(rng, B, I, J, H)
    p = placeholders(V=V.shape, a=a.shape, beta_u=beta_u.shape, beta_a=beta_a.shape)
    outs = caps.em_routing(p["V"], p["a"], p["beta_u"], p["beta_a"], iterations, 0.1)
    got = run(outs, dict(zip(p.values(), (V, a, beta_u, beta_a))))
    for g, want in zip(got, np_em_routing(V, a, beta_u, beta_a, iterations, [0.1] * iterations)):
        np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- against PyTorch


def torch_routing(torch, u, W, iterations):
    u_hat = torch.einsum("ijdk,bik->bijd", W, u)
    logits = torch.zeros(u_hat.shape[:3], dtype=u.dtype)
    for t in range(iterations):
        c = torch.softmax(logits, dim=2)
        s = torch.einsum("bij,bijd->bjd", c, u_hat)
        sq = (s * s).sum(-1, keepdim=True)
        v = sq / (1 + sq) * s / torch.sqrt(sq + 1e-7)
        if t < iterations - 1:
            logits = logits + torch.einsum("bijd,bjd->bij", u_hat, v)
    return v


def test_routing_and_its_gradients_match_torch(rng):
    torch = pytest.importorskip("torch")
    B, I, Din, J, D = 2, 32, 8, 10, 16
    u, W = routing_inputs(rng, B, I, Din, J, D, scale=0.2)
    head = rng.standard_normal((B, J, D))
    tu = torch.tensor(u, requires_grad=True)
    tW = torch.tensor(W, requires_grad=True)
    tv = torch_routing(torch, tu, tW, 3)
    (tv * torch.tensor(head)).sum().backward()

    p = placeholders(u=u.shape, W=W.shape)
    v = caps.capsule_routing(p["u"], p["W"], iterations=3)
    (gu, gW), head_t = td.vjp(v, [p["u"], p["W"]])
    feeds = {p["u"]: u, p["W"]: W, head_t: head}
    np.testing.assert_allclose(fd.Kernel(v, "default")(feeds), tv.detach().numpy(),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fd.Kernel(gu, "default")(feeds), tu.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(fd.Kernel(gW, "default")(feeds), tW.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    # the one-call path's backward, derived from the same definition
    bu, bW = td.ops.capsule_routing_backward(u, W, head, iterations=3)
    np.testing.assert_allclose(bu, tu.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bW, tW.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_the_input_gradient_at_larger_sizes_runs_a_sample_at_a_time(rng):
    """Past PER_SAMPLE_MIN_ELEMENTS per sample the operator table schedules the gradient
    with respect to u with the per-sample template (every stage at the sample loop):
    still the gradient autograd gives."""
    torch = pytest.importorskip("torch")
    from tensordsl.autodiff.operators import prepare, template_of
    B, I, Din, J, D = 2, 256, 4, 8, 16
    u, W = routing_inputs(rng, B, I, Din, J, D, scale=0.2)
    head = rng.standard_normal((B, J, D))
    p = placeholders(u=u.shape, W=W.shape)
    (gu,), _ = td.vjp(caps.capsule_routing(p["u"], p["W"], iterations=3), [p["u"]])
    assert template_of(prepare(gu)) == "per_sample"
    tu = torch.tensor(u, requires_grad=True)
    (torch_routing(torch, tu, torch.tensor(W), 3) * torch.tensor(head)).sum().backward()
    (bu,) = [g for g in td.ops.capsule_routing_backward(u, W, head, iterations=3, wrt="u")
             if g is not None]
    np.testing.assert_allclose(bu, tu.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_the_weight_gradient_sums_a_per_sample_chain(rng):
    """The gradient with respect to W sums over the batch what a per-sample chain makes:
    the chain a sample at a time, then the sum (``per_sample_reduce``)."""
    torch = pytest.importorskip("torch")
    from tensordsl.autodiff.operators import prepare, template_of
    B, I, Din, J, D = 3, 256, 4, 8, 16
    u, W = routing_inputs(rng, B, I, Din, J, D, scale=0.2)
    head = rng.standard_normal((B, J, D))
    p = placeholders(u=u.shape, W=W.shape)
    (gW,), _ = td.vjp(caps.capsule_routing(p["u"], p["W"], iterations=3), [p["W"]])
    assert template_of(prepare(gW)) == "per_sample_reduce"
    tW = torch.tensor(W, requires_grad=True)
    (torch_routing(torch, torch.tensor(u), tW, 3) * torch.tensor(head)).sum().backward()
    (bW,) = [g for g in td.ops.capsule_routing_backward(u, W, head, iterations=3,
                                                        wrt="weight") if g is not None]
    np.testing.assert_allclose(bW, tW.grad.numpy(), rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------- gradients vs differences


def test_squash_gradient_near_zero(rng):
    # |s|^2 ~ eps: the eps term shapes the function there, and the gradient stays finite
    p = placeholders(s=(3, 4, 5))
    s = rng.standard_normal((3, 4, 5)) * 1e-4
    s[0, 0] = 0.0
    fd.check_grad(caps.squash(p["s"], axis=-1), [p["s"]], {p["s"]: s}, rng,
                  schedule="default", elementwise=True)
    s = rng.standard_normal((3, 4, 5))
    fd.check_grad(caps.squash(p["s"], axis=1), [p["s"]], {p["s"]: s}, rng, schedule="default")


@pytest.mark.parametrize("iterations", [1, 3])
def test_routing_gradient(rng, iterations):
    # through the unrolled graph: predictions, the softmax of the logits, squash, agreement
    B, I, Din, J, D = 2, 5, 3, 3, 4
    u, W = routing_inputs(rng, B, I, Din, J, D, scale=0.8)
    p = placeholders(u=u.shape, W=W.shape)
    v = caps.capsule_routing(p["u"], p["W"], iterations=iterations)
    fd.check_grad(v, [p["u"], p["W"]], {p["u"]: u, p["W"]: W}, rng, schedule="default")


def test_margin_loss_gradient(rng):
    B, K, D = 3, 4, 5
    # lengths kept off the kinks at m_minus = 0.1 and m_plus = 0.9
    direction = rng.standard_normal((B, K, D))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    lengths = rng.choice([0.03, 0.5, 0.7, 1.2], size=(B, K, 1))
    v = direction * lengths
    T = np.eye(K)[rng.integers(0, K, B)]
    p = placeholders(v=v.shape, T=T.shape)
    loss = caps.margin_loss(p["v"], p["T"])
    fd.check_grad(loss, [p["v"], p["T"]], {p["v"]: v, p["T"]: T}, rng, schedule="default")
    # td.grad with its default head: the gradient of the batch's summed loss
    fd.check_grad(loss, [p["v"]], {p["v"]: v, p["T"]: T}, rng, head="ones", schedule="default")


def test_primary_capsules_gradient(rng):
    x = rng.standard_normal((1, 2, 7, 7))
    w = rng.standard_normal((6, 2, 3, 3)) * 0.3
    bias = rng.standard_normal(6) * 0.1
    p = placeholders(x=x.shape, w=w.shape, bias=bias.shape)
    out = caps.primary_capsules(p["x"], p["w"], p["bias"], caps_dim=3, stride=2)
    fd.check_grad(out, [p["x"], p["w"], p["bias"]], {p["x"]: x, p["w"]: w, p["bias"]: bias},
                  rng, schedule="default")


def test_em_step_gradients(rng):
    V, a, R, beta_u, beta_a = em_inputs(rng, B=2, I=5, J=3, H=4)
    p = placeholders(V=V.shape, a=a.shape, R=R.shape, beta_u=beta_u.shape, beta_a=beta_a.shape)
    feeds = dict(zip(p.values(), (V, a, R, beta_u, beta_a)))
    mu, sigma2, a_out = caps.em_m_step(p["V"], p["a"], p["R"], p["beta_u"], p["beta_a"], 0.05)
    for y in (mu, sigma2):
        fd.check_grad(y, [p["V"], p["a"], p["R"]], feeds, rng, schedule="default")
    fd.check_grad(a_out, list(p.values()), feeds, rng, schedule="default")
    q = placeholders(mu=(2, 3, 4), sigma2=(2, 3, 4), a_out=(2, 3))
    mu_v, sigma2_v, a_out_v = np_m_step(V, a, R, beta_u, beta_a, 0.05)
    e = caps.em_e_step(p["V"], q["mu"], q["sigma2"], q["a_out"])
    fd.check_grad(e, [p["V"], *q.values()],
                  {p["V"]: V, q["mu"]: mu_v, q["sigma2"]: sigma2_v, q["a_out"]: a_out_v}, rng,
                  schedule="default")


def test_routing_gradients_are_gathers():
    # every adjoint stage sums over one operand's own axes (at most out_caps * out_dim
    # terms), never over the whole output domain, and none is an accumulation
    p = placeholders(u=(2, 32, 8), W=(32, 10, 16, 8))
    v = caps.capsule_routing(p["u"], p["W"], iterations=3)
    (gu, gW), _ = td.vjp(v, [p["u"], p["W"]])
    forward = {id(op) for op in fd.operations(v)}
    derived = [op for op in fd.compute_ops(gu, gW) if id(op) not in forward]
    assert derived
    for op in derived:
        assert op.tag != ACCUMULATE_TAG, f"{op.name} is an accumulation"
        extent = math.prod(r.dom.extent.value for r in op.reduce_axis)
        assert extent <= 10 * 16, f"{op.name} sums {extent} terms per element"


def test_em_routing_gradient(rng):
    V, a, _, beta_u, beta_a = em_inputs(rng, B=2, I=5, J=3, H=4)
    p = placeholders(V=V.shape, a=a.shape, beta_u=beta_u.shape, beta_a=beta_a.shape)
    feeds = dict(zip(p.values(), (V, a, beta_u, beta_a)))
    pose, a_out = caps.em_routing(p["V"], p["a"], p["beta_u"], p["beta_a"], iterations=2,
                                  inverse_temperature=(0.05, 0.1))
    fd.check_grad(pose, [p["V"], p["a"], p["beta_u"], p["beta_a"]], feeds, rng,
                  schedule="default")
    fd.check_grad(a_out, list(p.values()), feeds, rng, schedule="default")


# ---------------------------------------------------------------- bad input


def test_bad_shapes_are_refused():
    p = placeholders(u=(2, 32, 8), W=(32, 10, 16, 7), W2=(31, 10, 16, 8), u2=(2, 32))
    with pytest.raises(ValueError, match=r"weight must have shape \(in_caps, out_caps, out_dim, "
                                         r"in_dim\) = \(32, \?, \?, 8\), got \(32, 10, 16, 7\)"):
        caps.capsule_predictions(p["u"], p["W"])
    with pytest.raises(ValueError, match=r"= \(32, \?, \?, 8\), got \(31, 10, 16, 8\)"):
        caps.capsule_routing(p["u"], p["W2"])
    with pytest.raises(ValueError, match=r"u must have shape \(batch, in_caps, in_dim\), "
                                         r"got \(2, 32\)"):
        caps.capsule_predictions(p["u2"], p["W"])
    with pytest.raises(ValueError, match=r"dynamic_routing: u_hat must have shape .* got "
                                         r"\(2, 32, 8\)"):
        caps.dynamic_routing(p["u"])
    u_hat = td.placeholder((2, 32, 10, 16), dtype="float64", name="u_hat")
    with pytest.raises(ValueError, match="iterations must be at least 1, got 0"):
        caps.dynamic_routing(u_hat, iterations=0)
    with pytest.raises(TypeError, match="iterations must be an int, got 2.0"):
        caps.dynamic_routing(u_hat, iterations=2.0)
    with pytest.raises(ValueError, match=r"squash: axis 3 is out of range for 3 dimensions"):
        caps.squash(p["u"], axis=3)
    v = td.placeholder((2, 10, 16), dtype="float64", name="v")
    with pytest.raises(ValueError, match=r"labels_onehot must have shape \(batch, classes\) = "
                                         r"\(2, 10\), got \(2, 9\)"):
        caps.margin_loss(v, td.placeholder((2, 9), dtype="float64", name="T"))


def test_bad_primary_and_em_arguments_are_refused():
    x = td.placeholder((1, 3, 9, 9), dtype="float64", name="x")
    w = td.placeholder((12, 3, 3, 3), dtype="float64", name="w")
    with pytest.raises(ValueError, match="12 output channels must be a multiple of caps_dim=8"):
        caps.primary_capsules(x, w, td.placeholder((12,), dtype="float64", name="b"), 8)
    with pytest.raises(ValueError, match=r"bias must have shape \(F,\) = \(12,\), got \(8,\)"):
        caps.primary_capsules(x, w, td.placeholder((8,), dtype="float64", name="b"), 4)
    V = td.placeholder((2, 6, 3, 4), dtype="float64", name="V")
    a = td.placeholder((2, 6), dtype="float64", name="a")
    R = td.placeholder((2, 6, 4), dtype="float64", name="R")
    beta = td.placeholder((3,), dtype="float64", name="beta")
    with pytest.raises(ValueError, match=r"em_m_step: R must have shape \(batch, in_caps, "
                                         r"out_caps\) = \(2, 6, 3\), got \(2, 6, 4\)"):
        caps.em_m_step(V, a, R, beta, beta)
    with pytest.raises(ValueError, match=r"em_e_step: a_out must have shape \(batch, "
                                         r"out_caps\) = \(2, 3\), got \(2, 6\)"):
        mu = td.placeholder((2, 3, 4), dtype="float64", name="mu")
        caps.em_e_step(V, mu, mu, a)
    with pytest.raises(ValueError, match=r"inverse_temperature must be a number or one per "
                                         r"iteration \(3\), got \(1.0, 2.0\)"):
        caps.em_routing(V, a, beta, beta, iterations=3, inverse_temperature=(1.0, 2.0))
    u = np.zeros((2, 4, 8), "float32")
    with pytest.raises(ValueError, match=r"weight must have shape"):
        td.ops.capsule_routing(u, np.zeros((4, 3, 5, 7), "float32"))


@pytest.mark.parametrize("B, I, Din, J, D, iterations", [(3, 40, 8, 10, 16, 3),
                                                         (5, 17, 4, 5, 12, 2),
                                                         (4, 9, 8, 3, 8, 1)])
def test_the_fused_cpu_template_matches_numpy(rng, B, I, Din, J, D, iterations):
    """schedules/cpu/capsule.py: every stage at the sample loop, samples in parallel in
    groups (a ragged last group included), the weights packed once."""
    from schedules.cpu.capsule import schedule_capsule_routing
    u, W = routing_inputs(rng, B, I, Din, J, D, dtype="float32")
    uu = td.placeholder(u.shape, "float32", "u")
    WW = td.placeholder(W.shape, "float32", "W")
    v = caps.capsule_routing(uu, WW, iterations)
    s = td.create_schedule(v.op)
    schedule_capsule_routing(s, v)
    text = str(td.lower(s, [uu, WW, v]))
    # one pass over the samples (fused), after W packed once with d innermost
    assert text.count("parallel for") == 2 and "W.packed" in text
    f = td.build(s, [uu, WW, v])
    out = poisoned((B, J, D))
    f(u, W, out)
    ref = np_routing(np_predictions(u.astype("float64"), W.astype("float64")), iterations)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
