"""Schedule-free builds of the computes a user writes first (issue 12, deliverable 1).

``td.build([inputs..., output])`` with no schedule, and every configuration the
auto-scheduler's space holds, compute what numpy does for: a matmul with a bias-and-ReLU
epilogue (2-D and batched), elementwise producers feeding a reduction, softmax's
reductions in a row, and valid convolutions whose shapes are ``H - 2`` of the input's;
tuning one of them fails no trial.
"""
import random
import textwrap
import zlib

import numpy as np
import pytest

import tensordsl as td
from tensordsl import autotune
from tensordsl.autotune.records import RecordDB
from tests.helpers import poisoned

USER_OPS = textwrap.dedent('''
    import tensordsl as td

    def _dense_bias_relu(A, W, b):
        M, K = A.shape
        N = W.shape[0]
        k = td.reduce_axis((0, K), "k")
        Y = td.compute((M, N), lambda i, j: td.sum(A[i, k] * W[j, k], axis=k), name="Y")
        Z = td.compute((M, N), lambda i, j: Y[i, j] + b[j], name="Z")
        return td.compute((M, N), lambda i, j: td.maximum(Z[i, j], 0.0), name="R")

    def _batched_bias_relu(A, W, b):
        B, M, K = A.shape
        N = W.shape[1]
        k = td.reduce_axis((0, K), "k")
        Y = td.compute((B, M, N), lambda n, i, j: td.sum(A[n, i, k] * W[n, j, k], axis=k),
                       name="Y")
        Z = td.compute((B, M, N), lambda n, i, j: Y[n, i, j] + b[j], name="Z")
        return td.compute((B, M, N), lambda n, i, j: td.maximum(Z[n, i, j], 0.0), name="R")

    def _producers_matmul(A, B):
        M, K = A.shape
        N = B.shape[1]
        A2 = td.compute((M, K), lambda i, k: A[i, k] * 0.5 + 1.0, name="A2")
        B2 = td.compute((K, N), lambda k, j: td.maximum(B[k, j], 0.0), name="B2")
        k = td.reduce_axis((0, K), "k")
        C = td.compute((M, N), lambda i, j: td.sum(A2[i, k] * B2[k, j], axis=k), name="C")
        return td.compute((M, N), lambda i, j: C[i, j] * 2.0, name="D")

    def _softmax(X):
        M, N = X.shape
        j = td.reduce_axis((0, N), "j")
        mx = td.compute((M,), lambda i: td.max(X[i, j], axis=j), name="mx")
        E = td.compute((M, N), lambda i, c: td.exp(X[i, c] - mx[i]), name="E")
        j2 = td.reduce_axis((0, N), "j2")
        S = td.compute((M,), lambda i: td.sum(E[i, j2], axis=j2), name="S")
        return td.compute((M, N), lambda i, c: E[i, c] / S[i], name="P")

    def _stencil3x3(A, Wt):
        H, W = A.shape
        ry = td.reduce_axis((0, 3), "ry")
        rx = td.reduce_axis((0, 3), "rx")
        return td.compute((H - 2, W - 2), lambda i, j: td.sum(A[i + ry, j + rx] * Wt[ry, rx],
                                                              axis=[ry, rx]), name="S")

    def _conv_bias_relu(x, w, b):
        C, H, W = x.shape
        F = w.shape[0]
        c = td.reduce_axis((0, C), "c")
        ry = td.reduce_axis((0, 3), "ry")
        rx = td.reduce_axis((0, 3), "rx")
        y = td.compute((F, H - 2, W - 2), lambda f, i, j: td.sum(
            x[c, i + ry, j + rx] * w[f, c, ry, rx], axis=[c, ry, rx]), name="y")
        return td.compute((F, H - 2, W - 2),
                          lambda f, i, j: td.maximum(y[f, i, j] + b[f], 0.0), name="out")

    # the contract: sizes in, tensors (inputs, then the output) out
    def _call(op, *shapes):
        inputs = [td.placeholder(s, name=f"x{k}") for k, s in enumerate(shapes)]
        return inputs + [op(*inputs)]

    def dense_bias_relu(M, K, N):
        return _call(_dense_bias_relu, (M, K), (N, K), (N,))

    def batched_bias_relu(B, M, K, N):
        return _call(_batched_bias_relu, (B, M, K), (B, N, K), (N,))

    def producers_matmul(M, K, N):
        return _call(_producers_matmul, (M, K), (K, N))

    def softmax(M, N):
        return _call(_softmax, (M, N))

    def stencil3x3(H, W):
        return _call(_stencil3x3, (H, W), (3, 3))

    def conv_bias_relu(C, H, W, F):
        return _call(_conv_bias_relu, (C, H, W), (F, C, 3, 3), (F,))
''')


def _valid_conv(x, w):
    """sum_c,ry,rx x[c, i + ry, j + rx] * w[f, c, ry, rx] over the valid window."""
    f, _, kh, kw = w.shape
    h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((f, h, wd))
    for ry in range(kh):
        for rx in range(kw):
            out += np.einsum("chw,fc->fhw", x[:, ry:ry + h, rx:rx + wd], w[:, :, ry, rx])
    return out


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# (function, its sizes, numpy reference on float64 inputs)
CASES = [
    ("dense_bias_relu", (37, 29, 53),
     lambda a, w, b: np.maximum(a @ w.T + b, 0)),
    ("batched_bias_relu", (3, 13, 17, 21),
     lambda a, w, b: np.maximum(np.einsum("nik,njk->nij", a, w) + b, 0)),
    ("producers_matmul", (19, 23, 41),
     lambda a, b: ((a * 0.5 + 1.0) @ np.maximum(b, 0)) * 2.0),
    ("softmax", (13, 70), _softmax),
    ("stencil3x3", (20, 30), lambda a, w: _valid_conv(a[None], w[None, None])[0]),
    ("conv_bias_relu", (4, 11, 13, 5),
     lambda x, w, b: np.maximum(_valid_conv(x, w) + b[:, None, None], 0)),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "my_ops.py"
    path.write_text(USER_OPS)
    return path


def _workload(user_file, name, sizes):
    return autotune.Workload(f"{user_file}:{name}", [("value", v) for v in sizes],
                             scheduler="auto")


def _check(f, arrays, reference, what):
    expected = reference(*[a.astype("float64") for a in arrays])
    out = poisoned(expected.shape)
    f(*arrays, out)
    np.testing.assert_allclose(out, expected, rtol=2e-4, atol=2e-4, err_msg=what)


@pytest.mark.parametrize("name, sizes, reference", CASES, ids=IDS)
def test_build_without_a_schedule(user_file, name, sizes, reference, monkeypatch, tmp_path):
    # no tuning records: the auto-scheduler's defaults
    monkeypatch.setenv("TENSORDSL_CACHE_DIR", str(tmp_path))
    w = _workload(user_file, name, sizes)
    placeholders, out = w.define()
    f = td.build(placeholders + [out])
    _check(f, w.arrays(seed=5), reference, "td.build(tensors)")


@pytest.mark.parametrize("name, sizes, reference", CASES, ids=IDS)
def test_every_auto_configuration_computes_the_same(user_file, name, sizes, reference):
    w = _workload(user_file, name, sizes)
    space = w.space()
    assert space and all(values for values in space.values())
    rng = random.Random(zlib.crc32(name.encode()))    # the same configurations every run
    configs = [w.default_config()] + [{k: rng.choice(v) for k, v in space.items()}
                                      for _ in range(6)]
    arrays = w.arrays(seed=3)
    for config in configs:
        s, tensors = w.schedule(config)
        _check(td.build(s, tensors), arrays, reference, str(config))


def test_the_epilogue_is_computed_inside_the_reductions_tiles(user_file):
    # Ansor's fusion: one parallel loop nest; the matmul's block is computed inside it
    w = _workload(user_file, "dense_bias_relu", CASES[0][1])
    assert w.space()["attach"] == [0, 1]
    for attach in (0, 1):
        config = dict(w.default_config(), t0=2, m0=2, t1=16, m1=1, attach=attach, pack=0)
        s, tensors = w.schedule(config)
        text = str(td.lower(s, tensors))
        assert text.count("parallel for") == 1, text
        assert "Z" not in text.replace("Z[", "")  # the bias add is inlined
        nest = text[text.index("parallel for"):]
        assert nest.index("Y = allocate") < nest.index("R[")


def test_shapes_computed_from_other_shapes_are_constants_to_the_auto_scheduler(user_file):
    # (H - 2, W - 2) of a 20 x 30 input: an 18 x 28 output, its rows vectorized
    w = _workload(user_file, "stencil3x3", (20, 30))
    placeholders, out = w.define()
    f = td.build(placeholders + [out])
    assert "ramp(" in str(f.func)


def test_a_size_left_symbolic(user_file):
    # td.var rows: no records to look up; the defaults and the space still apply
    from schedules.cpu.auto import auto_space, schedule_auto
    w = _workload(user_file, "dense_bias_relu", CASES[0][1])
    m = td.var("m")
    A, W, b = td.placeholder((m, 29), name="A"), td.placeholder((53, 29)), td.placeholder((53,))
    R = w.call.module._dense_bias_relu(A, W, b)
    arrays = [a[:11] if k == 0 else a for k, a in enumerate(w.arrays(seed=2))]
    _check(td.build([A, W, b, R]), arrays, CASES[0][2], "td.build(tensors)")
    space = auto_space(R)
    assert "attach" in space     # the epilogue is fused over m rows too
    rng = random.Random(7)
    for _ in range(5):
        config = {k: rng.choice(v) for k, v in space.items()}
        s = td.create_schedule(R.op)
        schedule_auto(s, R, config)
        _check(td.build(s, [A, W, b, R]), arrays, CASES[0][2], str(config))


@pytest.mark.parametrize("name", ["dense_bias_relu", "conv_bias_relu"])
def test_tuning_fails_no_trial(user_file, name, tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORDSL_CACHE_DIR", str(tmp_path / "cache"))
    sizes = dict((c[0], c[1]) for c in CASES)[name]
    db = RecordDB(tmp_path / "records.sqlite")
    best = autotune.tune(_workload(user_file, name, sizes), trials=6, db=db, timeout=60)
    rows = db.trials()
    assert len(rows) == 6
    assert [r["status"] for r in rows] == ["ok"] * 6, [r["error"] for r in rows]
    assert best is not None and best["status"] == "ok"
