"""Capsule-network operators as tensor expressions (compute definitions only; no schedules).

Two routing algorithms and the pieces around them, with the conventions of
``dense.py`` (shape errors name the argument, what was expected and what was given):

* ``squash`` — the capsule nonlinearity (Sabour, Frosst and Hinton, 2017, eq. 1);
* ``capsule_predictions`` — ``u_hat[b, i, j, :] = weight[i, j] @ u[b, i, :]`` (eq. 2);
* ``dynamic_routing`` — routing by agreement (Procedure 1), unrolled over its iterations;
* ``capsule_routing`` — predictions and routing in one call (``td.ops.capsule_routing``);
* ``margin_loss`` — the per-sample margin loss (eq. 4);
* ``primary_capsules`` — a convolution regrouped into capsules and squashed;
* ``em_m_step``, ``em_e_step``, ``em_routing`` — EM routing of matrix capsules (Hinton,
  Sabour and Frosst, 2018), a Gaussian per output capsule with diagonal variance.

The number of routing iterations is a Python int: each iteration is its own stages, so
``td.grad`` differentiates the whole unrolled graph, routing coefficients included — as
PyTorch's autograd does for the usual implementations of both papers.

Shapes (b: batch, i: input capsules, j: output capsules, d / h: capsule dimensions):

    u (b, i, in_dim), weight (i, j, out_dim, in_dim)  --predictions-->  u_hat (b, i, j, d)
    u_hat (b, i, j, d)                                --routing-->      v (b, j, d)
"""
from __future__ import annotations

import math

import tensordsl as td

from .dense import _check, _dim, _is_int, _pin, _same_extent, _shape, conv2d_nchw, softmax


def _axis(axis, ndim: int, what: str) -> int:
    if not _is_int(axis):
        raise TypeError(f"{what}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what}: axis {axis!r} is out of range for {ndim} dimensions")
    return axis % ndim


def _iterations(iterations, what: str) -> int:
    if not _is_int(iterations):
        raise TypeError(f"{what}: iterations must be an int, got {iterations!r}")
    _check(iterations >= 1, f"{what}: iterations must be at least 1, got {iterations}")
    return iterations


def _expect_shape(t, expected: tuple, what: str, arg: str, meaning: str):
    """``t`` has ``expected`` (None: any size) — else a ``ValueError`` naming ``arg``."""
    shape = _shape(t)
    ok = len(shape) == len(expected) and all(
        e is None or _same_extent(s, e) for s, e in zip(shape, expected))
    shown = ", ".join("?" if e is None else str(e) for e in expected)
    shown = f"({shown},)" if len(expected) == 1 else f"({shown})"
    _check(ok, f"{what}: {arg} must have shape {meaning} = {shown}, got {shape}")


# ---------------------------------------------------------------- squash and predictions


def squash(s, axis: int = -1, eps: float = 1e-7, name: str = "squash"):
    """The capsule nonlinearity: short vectors shrink to almost zero length, long ones to
    just below 1, directions kept (Sabour et al., eq. 1):

        v = |s|^2 / (1 + |s|^2) * s / sqrt(|s|^2 + eps)      |s|^2 summed over ``axis``

    ``eps`` keeps the division (and its gradient) finite at ``s = 0``.

    >>> v = squash(s, axis=-1)    # (b, j, d) -> (b, j, d)
    """
    a = _axis(axis, s.ndim, "squash")
    r = td.reduce_axis((0, s.shape[a]), "r")
    keep = tuple(1 if d == a else s.shape[d] for d in range(s.ndim))

    def at_r(idx):
        return tuple(r if d == a else i for d, i in enumerate(idx))

    sq = td.compute(keep, lambda *i: td.sum(s[at_r(i)] * s[at_r(i)], axis=r),
                    name=f"{name}.sq")
    # one scale per capsule, then a multiply per element
    scale = td.compute(keep, lambda *i: sq[i] / ((1.0 + sq[i]) * td.sqrt(sq[i] + eps)),
                       name=f"{name}.scale")
    return td.compute(s.shape, lambda *i: s[i] * scale[_pin(i, a)], name=name)


def capsule_predictions(u, weight, name: str = "capsule_predictions"):
    """Each input capsule's prediction of each output capsule (Sabour et al., eq. 2):

        u_hat[b, i, j, d] = sum_k weight[i, j, d, k] * u[b, i, k]

    ``u`` (batch, in_caps, in_dim), ``weight`` (in_caps, out_caps, out_dim, in_dim) →
    ``u_hat`` (batch, in_caps, out_caps, out_dim).

    >>> u_hat = capsule_predictions(u, weight)    # (2, 32, 8), (32, 10, 16, 8) -> (2, 32, 10, 16)
    """
    _check(u.ndim == 3, f"capsule_predictions: u must have shape (batch, in_caps, in_dim), "
                        f"got {_shape(u)}")
    W = weight
    _expect_shape(W, (_dim(u.shape[1]), None, None, _dim(u.shape[2])), "capsule_predictions",
                  "weight", "(in_caps, out_caps, out_dim, in_dim)")
    k = td.reduce_axis((0, u.shape[2]), "k")
    return td.compute((u.shape[0], u.shape[1], W.shape[1], W.shape[2]),
                      lambda b, i, j, d: td.sum(W[i, j, d, k] * u[b, i, k], axis=k),
                      name=name)


# ---------------------------------------------------------------- dynamic routing


def dynamic_routing(u_hat, iterations: int = 3, eps: float = 1e-7,
                    name: str = "dynamic_routing"):
    """Routing by agreement (Sabour et al., Procedure 1), per sample:

        logits[b, i, j] = 0
        repeat ``iterations`` times:
            c[b, i, :] = softmax(logits[b, i, :])                 over the output capsules
            s[b, j, d] = sum_i c[b, i, j] * u_hat[b, i, j, d]
            v[b, j, :] = squash(s[b, j, :], eps)
            logits[b, i, j] += sum_d u_hat[b, i, j, d] * v[b, j, d]   (not after the last)

    ``u_hat`` (batch, in_caps, out_caps, out_dim) → ``v`` (batch, out_caps, out_dim). The
    first iteration's coefficients are the constant ``1 / out_caps`` (the softmax of
    zeros). The loop is unrolled: ``td.grad`` differentiates through every iteration,
    the coefficients included, as PyTorch's autograd does for the paper's routing.

    >>> v = dynamic_routing(u_hat, iterations=3)    # (2, 32, 10, 16) -> (2, 10, 16)
    """
    _check(u_hat.ndim == 4, f"dynamic_routing: u_hat must have shape (batch, in_caps, "
                            f"out_caps, out_dim), got {_shape(u_hat)}")
    iterations = _iterations(iterations, "dynamic_routing")
    B, I, J, D = u_hat.shape
    logits = None    # zero until the first agreement
    for t in range(iterations):
        step = f"{name}.{t}"
        s = _routed_sum(u_hat, logits, step)
        last = t == iterations - 1
        v = squash(s, axis=2, eps=eps, name=name if last else f"{step}.v")
        if last:
            break
        d = td.reduce_axis((0, D), "d")
        agreement = td.compute((B, I, J), lambda b, i, j: td.sum(
            u_hat[b, i, j, d] * v[b, j, d], axis=d), name=f"{step}.agreement")
        if logits is None:
            logits = agreement
        else:
            previous = logits
            logits = td.compute((B, I, J), lambda b, i, j: previous[b, i, j]
                                + agreement[b, i, j], name=f"{step}.logits")
    return v


def _routed_sum(u_hat, logits, step: str):
    """``s[b, j, :] = sum_i c[b, i, j] * u_hat[b, i, j, :]`` with ``c`` the softmax of
    ``logits`` over the output capsules; ``logits`` None (all zero): ``c = 1 / out_caps``,
    a constant, so the first iteration is a plain mean with no softmax stages."""
    B, I, J, D = u_hat.shape
    i = td.reduce_axis((0, I), "i")
    if logits is None:
        uniform = 1.0 / _dim(J)
        return td.compute((B, J, D), lambda b, j, d: td.sum(u_hat[b, i, j, d] * uniform,
                                                            axis=i), name=f"{step}.s")
    c = softmax(logits, axis=2, name=f"{step}.c")
    return td.compute((B, J, D), lambda b, j, d: td.sum(c[b, i, j] * u_hat[b, i, j, d], axis=i),
                      name=f"{step}.s")


def capsule_routing(u, weight, iterations: int = 3, name: str = "capsule_routing"):
    """A capsule layer in one call: ``dynamic_routing(capsule_predictions(u, weight),
    iterations)``. ``u`` (batch, in_caps, in_dim), ``weight`` (in_caps, out_caps, out_dim,
    in_dim; the paper's W_ij, named as PyTorch names weights) → ``v`` (batch, out_caps,
    out_dim).

    >>> v = td.ops.capsule_routing(u, W, iterations=3)    # (2, 32, 8), (32, 10, 16, 8)
    """
    u_hat = capsule_predictions(u, weight, name=f"{name}.u_hat")
    return dynamic_routing(u_hat, iterations, name=name)


# ---------------------------------------------------------------- margin loss


def margin_loss(v, labels_onehot, m_plus: float = 0.9, m_minus: float = 0.1,
                lam: float = 0.5, eps: float = 1e-12, name: str = "margin_loss"):
    """The margin loss of Sabour et al. (eq. 4), per sample, on the output capsules ``v``
    (batch, classes, dim) and one-hot (or any 0/1) ``labels_onehot`` (batch, classes):

        |v_k| = sqrt(sum_d v[b, k, d]^2 + eps)
        loss[b] = sum_k T[b, k] * max(0, m_plus - |v_k|)^2
                        + lam * (1 - T[b, k]) * max(0, |v_k| - m_minus)^2

    It takes the capsules, not their lengths, so a CapsNet's loss is one definition;
    ``eps`` keeps the gradient of the length finite at ``v = 0``. → (batch,).

    >>> loss = margin_loss(v, onehot)    # (2, 10, 16), (2, 10) -> (2,)
    """
    _check(v.ndim == 3, f"margin_loss: v must have shape (batch, classes, dim), "
                        f"got {_shape(v)}")
    _expect_shape(labels_onehot, (_dim(v.shape[0]), _dim(v.shape[1])), "margin_loss",
                  "labels_onehot", "(batch, classes)")
    d = td.reduce_axis((0, v.shape[2]), "d")
    sq = td.compute((v.shape[0], v.shape[1]), lambda b, k: td.sum(v[b, k, d] * v[b, k, d],
                                                                  axis=d), name=f"{name}.sq")
    length = td.compute(sq.shape, lambda b, k: td.sqrt(sq[b, k] + eps), name=f"{name}.length")
    zero = td.const(0, v.dtype)

    def per_class(b, k):
        present = td.maximum(m_plus - length[b, k], zero)
        absent = td.maximum(length[b, k] - m_minus, zero)
        t = labels_onehot[b, k]
        return t * present * present + lam * (1.0 - t) * absent * absent

    terms = td.compute((v.shape[0], v.shape[1]), per_class, name=f"{name}.terms")
    k = td.reduce_axis((0, v.shape[1]), "k")
    return td.compute((v.shape[0],), lambda b: td.sum(terms[b, k], axis=k), name=name)


# ---------------------------------------------------------------- primary capsules


def primary_capsules(x, weight, bias, caps_dim: int, stride=1, padding=0,
                     name: str = "primary_capsules"):
    """The primary capsule layer: a convolution (``conv2d_nchw``) with ``bias``, its
    ``F = types * caps_dim`` channels regrouped into capsules, squashed:

        y[b, f, oy, ox] = conv2d_nchw(x, weight, stride, padding) + bias[f]
        caps[b, (t * OH + oy) * OW + ox, d] = y[b, t * caps_dim + d, oy, ox]
        → squash(caps, axis=-1)          (batch, types * OH * OW, caps_dim)

    (the order of PyTorch's ``y.view(b, types, caps_dim, OH * OW).transpose(2, 3)
    .reshape(b, -1, caps_dim)``). ``x`` (N, C, H, W), ``weight`` (F, C, KH, KW),
    ``bias`` (F,).

    >>> caps = primary_capsules(x, weight, bias, caps_dim=8, stride=2)
    """
    if not _is_int(caps_dim) or caps_dim < 1:
        raise ValueError(f"primary_capsules: caps_dim must be a positive int, "
                         f"got {caps_dim!r}")
    _check(weight.ndim == 4, f"primary_capsules: weight must have shape (F, C, KH, KW), "
                             f"got {_shape(weight)}")
    F = _dim(weight.shape[0])
    _check(F % caps_dim == 0, f"primary_capsules: weight's {F} output channels must be a "
                              f"multiple of caps_dim={caps_dim}")
    _expect_shape(bias, (F,), "primary_capsules", "bias", "(F,)")
    y = conv2d_nchw(x, weight, stride=stride, padding=padding, name=f"{name}.conv")
    OH, OW = _dim(y.shape[2]), _dim(y.shape[3])
    types = F // caps_dim
    caps = td.compute(
        (y.shape[0], types * OH * OW, caps_dim),
        lambda b, p, d: y[b, (p // (OH * OW)) * caps_dim + d, (p // OW) % OH, p % OW]
        + bias[(p // (OH * OW)) * caps_dim + d], name=f"{name}.caps")
    return squash(caps, axis=2, name=name)


# ---------------------------------------------------------------- EM routing


def _em_shapes(votes, what: str):
    _check(votes.ndim == 4, f"{what}: votes must have shape (batch, in_caps, out_caps, dim), "
                            f"got {_shape(votes)}")
    return tuple(_dim(d) for d in votes.shape)


def em_m_step(votes, a_in, R, beta_u, beta_a, inverse_temperature: float = 1.0,
              eps: float = 1e-6, name: str = "em_m_step"):
    """The M-step of EM routing (Hinton et al. 2018, Procedure 1): each output capsule
    fits a Gaussian with diagonal variance to the votes, weighted by the assignment
    probabilities ``R`` scaled by the input activations, and is activated by how little
    description length that Gaussian costs:

        R'[b, i, j]    = R[b, i, j] * a_in[b, i]
        mu[b, j, h]    = sum_i R' V[b, i, j, h] / sum_i R'
        sigma2[b, j, h] = sum_i R' (V[b, i, j, h] - mu[b, j, h])^2 / sum_i R' + eps
        cost[b, j]     = sum_h (beta_u[j] + log sigma[b, j, h]) * sum_i R'
        a_out[b, j]    = logistic(inverse_temperature * (beta_a[j] - cost[b, j]))

    ``votes`` V (batch, in_caps, out_caps, dim), ``a_in`` (batch, in_caps), ``R`` (batch,
    in_caps, out_caps), ``beta_u`` and ``beta_a`` (out_caps,) (learned),
    ``inverse_temperature`` λ. ``eps`` floors the variance, so ``log sigma`` stays finite
    when the votes agree exactly. ``sum_i R'`` must be positive (some active input
    capsule), as the paper's procedure divides by it. Returns ``(mu, sigma2, a_out)``:
    (batch, out_caps, dim), (batch, out_caps, dim), (batch, out_caps).

    >>> mu, sigma2, a_out = em_m_step(votes, a_in, R, beta_u, beta_a, 1.0)
    """
    what = "em_m_step"
    B, I, J, H = _em_shapes(votes, what)
    _expect_shape(a_in, (B, I), what, "a_in", "(batch, in_caps)")
    _expect_shape(R, (B, I, J), what, "R", "(batch, in_caps, out_caps)")
    _expect_shape(beta_u, (J,), what, "beta_u", "(out_caps,)")
    _expect_shape(beta_a, (J,), what, "beta_a", "(out_caps,)")
    lam = float(inverse_temperature)
    weighted = td.compute((B, I, J), lambda b, i, j: R[b, i, j] * a_in[b, i],
                          name=f"{name}.weighted")
    i = td.reduce_axis((0, I), "i")
    total = td.compute((B, J), lambda b, j: td.sum(weighted[b, i, j], axis=i),
                       name=f"{name}.total")
    # one reciprocal per output capsule, then multiplies
    inv = td.compute((B, J), lambda b, j: 1.0 / total[b, j], name=f"{name}.inv")
    i2 = td.reduce_axis((0, I), "i")
    moment = td.compute((B, J, H), lambda b, j, h: td.sum(
        weighted[b, i2, j] * votes[b, i2, j, h], axis=i2), name=f"{name}.moment")
    mu = td.compute((B, J, H), lambda b, j, h: moment[b, j, h] * inv[b, j], name=f"{name}.mu")
    i3 = td.reduce_axis((0, I), "i")

    def spread(b, j, h):
        dev = votes[b, i3, j, h] - mu[b, j, h]
        return td.sum(weighted[b, i3, j] * dev * dev, axis=i3)

    scatter = td.compute((B, J, H), spread, name=f"{name}.scatter")
    sigma2 = td.compute((B, J, H), lambda b, j, h: scatter[b, j, h] * inv[b, j] + eps,
                        name=f"{name}.sigma2")
    h = td.reduce_axis((0, H), "h")
    # log sigma = log(sigma^2) / 2
    cost = td.compute((B, J), lambda b, j: td.sum(
        (beta_u[j] + 0.5 * td.log(sigma2[b, j, h])) * total[b, j], axis=h), name=f"{name}.cost")
    a_out = td.compute((B, J), lambda b, j: td.sigmoid(lam * (beta_a[j] - cost[b, j])),
                       name=f"{name}.a_out")
    return mu, sigma2, a_out


# far below any activation that matters, and a normal number of the dtype (not flushed
# to zero): log a_out is finite where a_out underflowed
_FLOOR = {"float64": 1e-300, "float32": 1e-30, "bfloat16": 1e-30, "float16": 1e-4}


def em_e_step(votes, mu, sigma2, a_out, name: str = "em_e_step"):
    """The E-step of EM routing (Hinton et al. 2018, Procedure 1): each input capsule's
    votes are assigned to the output capsules in proportion to how active each is and
    how probable the vote is under its Gaussian:

        log p[b, i, j] = -sum_h ((V[b, i, j, h] - mu[b, j, h])^2 / (2 sigma2[b, j, h])
                                 + log(2 pi sigma2[b, j, h]) / 2)
        R[b, i, :]     = softmax_j(log a_out[b, j] + log p[b, i, j])
                       = a_out p / sum_j a_out p

    computed in the log domain (the densities of 16-dimensional Gaussians under- and
    overflow). An activation that underflowed to 0 (the M-step's logistic of a large
    cost, in float32) is read as the tiny ``_FLOOR`` of its dtype, so ``log a_out`` stays
    finite and a sample whose output capsules all underflowed is assigned by ``p`` alone
    instead of NaN. ``votes`` (batch, in_caps, out_caps, dim), ``mu`` and ``sigma2``
    (batch, out_caps, dim), ``a_out`` (batch, out_caps) → ``R`` (batch, in_caps,
    out_caps).

    >>> R = em_e_step(votes, mu, sigma2, a_out)
    """
    what = "em_e_step"
    B, I, J, H = _em_shapes(votes, what)
    _expect_shape(mu, (B, J, H), what, "mu", "(batch, out_caps, dim)")
    _expect_shape(sigma2, (B, J, H), what, "sigma2", "(batch, out_caps, dim)")
    _expect_shape(a_out, (B, J), what, "a_out", "(batch, out_caps)")
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    floor = _FLOOR.get(a_out.dtype, _FLOOR["float32"])
    # one reciprocal and one log per output capsule and dimension, not per vote
    inv2 = td.compute((B, J, H), lambda b, j, h: 0.5 / sigma2[b, j, h], name=f"{name}.inv2")
    h = td.reduce_axis((0, H), "h")
    log_norm = td.compute((B, J), lambda b, j: td.sum(
        0.5 * td.log(sigma2[b, j, h]) + half_log_2pi, axis=h), name=f"{name}.log_norm")
    # log a_out - log of the Gaussian's normalizer: what does not depend on the vote
    log_weight = td.compute((B, J), lambda b, j: td.log(a_out[b, j] + floor) - log_norm[b, j],
                            name=f"{name}.log_weight")
    hv = td.reduce_axis((0, H), "h")

    def scaled_distance(b, i, j):
        dev = votes[b, i, j, hv] - mu[b, j, hv]
        return td.sum(dev * dev * inv2[b, j, hv], axis=hv)

    distance = td.compute((B, I, J), scaled_distance, name=f"{name}.distance")
    logits = td.compute((B, I, J), lambda b, i, j: log_weight[b, j] - distance[b, i, j],
                        name=f"{name}.logits")
    return softmax(logits, axis=2, name=name)


def _temperatures(inverse_temperature, iterations: int, what: str) -> list[float]:
    if isinstance(inverse_temperature, (int, float)) and not isinstance(inverse_temperature,
                                                                         bool):
        return [float(inverse_temperature)] * iterations
    if isinstance(inverse_temperature, (tuple, list)) and \
            len(inverse_temperature) == iterations:
        return [float(x) for x in inverse_temperature]
    raise ValueError(f"{what}: inverse_temperature must be a number or one per iteration "
                     f"({iterations}), got {inverse_temperature!r}")


def em_routing(votes, a_in, beta_u, beta_a, iterations: int = 3, inverse_temperature=1.0,
               eps: float = 1e-6, name: str = "em_routing"):
    """EM routing between matrix capsules (Hinton et al. 2018, Procedure 1): starting
    from uniform assignments ``R = 1 / out_caps``, ``iterations`` M-steps with an E-step
    between each two (``em_m_step``, ``em_e_step``). ``inverse_temperature`` λ is a number
    or one per iteration (the paper's fixed schedule, a hyper-parameter). Unrolled, so
    ``td.grad`` differentiates through every step.

    ``votes`` (batch, in_caps, out_caps, dim), ``a_in`` (batch, in_caps), ``beta_u`` and
    ``beta_a`` (out_caps,) → ``(pose, a_out)``: the last M-step's means (batch, out_caps,
    dim) and activations (batch, out_caps).

    >>> pose, a_out = em_routing(votes, a_in, beta_u, beta_a, iterations=3)
    """
    what = "em_routing"
    iterations = _iterations(iterations, what)
    B, I, J, H = _em_shapes(votes, what)
    lams = _temperatures(inverse_temperature, iterations, what)
    R = td.compute((B, I, J), lambda b, i, j: td.const(1.0 / J, votes.dtype),
                   name=f"{name}.R0")
    for t in range(iterations):
        mu, sigma2, a_out = em_m_step(votes, a_in, R, beta_u, beta_a, lams[t], eps,
                                      name=f"{name}.{t}.m")
        if t < iterations - 1:
            R = em_e_step(votes, mu, sigma2, a_out, name=f"{name}.{t}.e")
    return mu, a_out
