"""The auto-scheduler: random points of its derived space compute what numpy does."""
import random
import zlib

import numpy as np
import pytest

import tensordsl as td
from tensordsl.autotune import Workload
from tests.helpers import poisoned

CASES = [
    ("matmul", [(37, 29), (29, 53)], {}),
    ("dense", [(17, 40), (24, 40)], {}),
    ("conv2d_nchw", [(1, 5, 9, 11), (7, 5, 3, 3)], {"padding": 1}),
    ("softmax", [(13, 70)], {}),
    ("reduce_sum", [(9, 31, 6)], {"axis": 1}),
]


def _reference(op, arrays, attrs):
    a = [x.astype("float64") for x in arrays]
    if op == "matmul":
        return a[0] @ a[1]
    if op == "dense":
        return a[0] @ a[1].T
    if op == "softmax":
        e = np.exp(a[0] - a[0].max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if op == "reduce_sum":
        return a[0].sum(axis=attrs["axis"])
    import itertools
    x, w = a
    n, c, h, wd = x.shape
    f = w.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, f, h, wd))
    for ry, rx in itertools.product(range(3), range(3)):
        out += np.einsum("nchw,fc->nfhw", xp[:, :, ry:ry + h, rx:rx + wd], w[:, :, ry, rx])
    return out


@pytest.mark.parametrize("op, shapes, attrs", CASES, ids=[c[0] for c in CASES])
def test_random_auto_schedules_match_numpy(op, shapes, attrs):
    w = Workload(op, [("array", s, "float32") for s in shapes], attrs, scheduler="auto")
    assert w.template == "auto"
    space = w.space()
    rng = random.Random(zlib.crc32(op.encode()))   # the same configurations every run
    arrays = w.arrays(seed=3)
    ref = _reference(op, arrays, attrs)
    configs = [w.default_config()] + [{k: rng.choice(v) for k, v in space.items()}
                                      for _ in range(5)]
    for config in configs:
        s, tensors = w.schedule(config)
        out = poisoned(ref.shape)
        td.build(s, tensors)(*arrays, out)
        np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-4, err_msg=str(config))


def test_a_user_compute_without_a_schedule_is_auto_scheduled(tmp_path):
    path = tmp_path / "op.py"
    path.write_text("import tensordsl as td\n"
                    "def rowdot(m, n):\n"
                    "    x = td.placeholder((m, n), name='x')\n"
                    "    y = td.placeholder((m, n), name='y')\n"
                    "    k = td.reduce_axis((0, n), 'k')\n"
                    "    return [x, y, td.compute((m,), lambda i: td.sum(x[i, k] * y[i, k],"
                    " axis=k), name='rowdot')]\n")
    w = Workload(f"{path}:rowdot", [("value", 50), ("value", 70)])
    assert w.template == "auto" and "r0" in w.space()
    x, y = w.arrays(seed=1)
    s, tensors = w.schedule({"t0": 2, "m0": 4, "r0": 16, "unroll": 1})
    out = poisoned(50)
    td.build(s, tensors)(x, y, out)
    np.testing.assert_allclose(out, (x * y).sum(1), rtol=1e-4, atol=1e-4)


def test_a_product_inside_the_graph_gets_the_matmul_micro_kernel():
    """A layer inside a larger compute (an MLP, its gradient) is scheduled as a matmul:
    its weight packed in panels, not read one gathered vector per output."""
    x = td.placeholder((37, 50), name="x")
    w1 = td.placeholder((40, 50), name="w1")
    w2 = td.placeholder((6, 40), name="w2")
    from kernels.dense import dense
    z = dense(x, w1, name="z")
    h = td.compute(z.shape, lambda i, j: td.tanh(z[i, j]), name="h")
    out = dense(h, w2, name="out")
    from schedules.cpu.auto import schedule_auto
    s = td.create_schedule(out.op)
    schedule_auto(s, out)
    assert "w1.packed" in str(td.lower(s, [x, w1, w2, out]))
    rng = np.random.default_rng(0)
    xa, w1a, w2a = (rng.standard_normal(tuple(int(d.value) for d in t.shape))
                    .astype("float32") for t in (x, w1, w2))
    got = poisoned((37, 6))
    td.build(s, [x, w1, w2, out])(xa, w1a, w2a, got)
    expected = np.tanh(xa.astype("float64") @ w1a.T) @ w2a.T
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_default_register_tile_stays_small_for_deep_gradients():
    """A 4-d derived gradient with a 65-node body (avg_pool2d's, count_include_pad off)
    used to unroll a 6x6x6x16 register tile: 627 KB of IR and two minutes of LLVM. The
    default tile spans the last two axes only, and so large a body is not unrolled."""
    import kernels.dense as D
    import tensordsl as td
    from schedules.cpu.auto import auto_default, schedule_auto
    x = td.placeholder((2, 8, 33, 35), "float64", "x")
    (g,), head = td.vjp(D.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [x])
    anchor = next(t.op for t in g.op.input_tensors if t.op.reduce_axis)
    cfg = auto_default(anchor.output(0))
    assert cfg["t0"] == cfg["t1"] == 1 and cfg["unroll"] == 0
    s = td.create_schedule(g.op)
    schedule_auto(s, g)
    assert len(str(td.lower(s, [head, g]))) < 60_000


def test_a_tiny_anchor_runs_serially():
    """Too little work to wake the thread team: no parallel loop."""
    import tensordsl as td
    from schedules.cpu.auto import schedule_auto
    a = td.placeholder((5, 7), "float32", "a")
    b = td.placeholder((7, 3), "float32", "b")
    k = td.reduce_axis((0, 7), "k")
    c = td.compute((5, 3), lambda i, j: td.sum(a[i, k] * b[k, j], axis=k), name="c")
    s = td.create_schedule(c.op)
    schedule_auto(s, c)
    assert "parallel" not in str(td.lower(s, [a, b, c]))


@pytest.mark.parametrize("shape", [(256, 16, 8, 8), (256, 16, 72), (256, 256)])
def test_a_streaming_kernel_gives_each_parallel_iteration_a_block_of_vectors(shape):
    """Regression: an elementwise kernel's default streamed one vector per iteration of
    one parallel loop over everything (every index divided out of it), and rows shorter
    than a vector went element by element: a CNN's activations, paddings and their
    gradients ran 2-10x slower than with the tiles before (its step 1.11x)."""
    import re
    from schedules.cpu.auto import STREAM_VECTORS, auto_default, schedule_auto
    from schedules.cpu.target import vector_lanes
    x = td.placeholder(shape, "float32", "x")
    y = td.compute(shape, lambda *i: td.max(x[i], td.const(0.0, "float32")), name="y")
    cfg = auto_default(y)
    last = len(shape) - 1
    assert cfg[f"t{last}"] >= min(shape[-1], 8)              # a vector, not an element
    s = td.create_schedule(y.op)
    schedule_auto(s, y, cfg)
    text = str(td.lower(s, [x, y]))
    (iterations,) = map(int, re.findall(r"parallel for \S+ in range\(0, (\d+)\)", text))
    block = int(np.prod(shape)) // iterations
    assert block >= min(STREAM_VECTORS * vector_lanes(32) // 2, int(np.prod(shape)))
    assert "ramp(" in text
    xa = np.random.default_rng(0).standard_normal(shape).astype("float32")
    got = poisoned(shape)
    td.build(s, [x, y])(xa, got)
    np.testing.assert_array_equal(got, np.maximum(xa, 0))
