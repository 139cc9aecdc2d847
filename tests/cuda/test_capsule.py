"""Capsule routing (kernels/capsule.py) under the generic GPU schedules, run by the CUDA
emulator: the forward against numpy, its derived gradients against the same adjoints
compiled for the CPU (which tests/kernels/test_capsule.py checks against PyTorch and
finite differences). The fused routing templates will have their own tests; these are
the baseline they replace."""
import numpy as np

import tensordsl as td
from kernels import capsule as caps
from schedules.cuda import schedule_for
from tests.helpers import poisoned

from .helpers import emulate


def np_routing(u, W, iterations):
    u_hat = np.einsum("ijdk,bik->bijd", W, u)
    logits = np.zeros(u_hat.shape[:3])
    for t in range(iterations):
        c = np.exp(logits - logits.max(2, keepdims=True))
        c /= c.sum(2, keepdims=True)
        s = np.einsum("bij,bijd->bjd", c, u_hat)
        sq = (s * s).sum(-1, keepdims=True)
        v = sq / (1 + sq) * s / np.sqrt(sq + 1e-7)
        logits = logits + np.einsum("bijd,bjd->bij", u_hat, v)
    return v


def test_routing_forward_and_gradients_emulated(rng):
    u = td.placeholder((2, 8, 4), name="u")
    W = td.placeholder((8, 3, 5, 4), name="W")
    v = caps.capsule_routing(u, W, iterations=3)
    un = rng.standard_normal((2, 8, 4)).astype("float32")
    Wn = (rng.standard_normal((8, 3, 5, 4)) * 0.5).astype("float32")
    got = emulate(schedule_for("capsule_routing", v, {}), [u, W, v], [un, Wn])
    np.testing.assert_allclose(got, np_routing(un.astype("float64"), Wn.astype("float64"), 3),
                               rtol=1e-5, atol=1e-6)

    (gu, gW), head = td.vjp(v, [u, W])
    hn = rng.standard_normal((2, 3, 5)).astype("float32")
    for g in (gu, gW):
        got = emulate(schedule_for("capsule_routing_backward", g, {}), [u, W, head, g],
                      [un, Wn, hn])
        cpu = td.build(td.create_schedule(g.op), [u, W, head, g])
        want = poisoned([int(d.value) for d in g.shape], "float32")
        cpu(un, Wn, hn, want)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
