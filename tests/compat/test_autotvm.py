"""TVM's "Writing Tunable Templates and Using the Auto-tuner" (tune_simple_template.py),
ported by renaming ``tvm.``/``te.`` to ``td.`` (``from tensordsl import autotvm``; the
results checked with numpy arrays, not ``tvm.nd``/``tvm.testing``): a
matmul template with knobs (v0) and splits (v1), a task, tuners, a log, and
``apply_history_best`` — each result compared with numpy."""
import json
import math

import numpy as np
import pytest

import tensordsl as td
from tensordsl import autotvm


def _matmul(N, L, M, dtype):
    """The tutorial's compute and schedule, before its knobs: (s, args, C, y, x, k)."""
    A = td.placeholder((N, L), name="A", dtype=dtype)
    B = td.placeholder((L, M), name="B", dtype=dtype)
    k = td.reduce_axis((0, L), name="k")
    C = td.compute((N, M), lambda i, j: td.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = td.create_schedule(C.op)
    y, x = s[C].op.axis
    return s, [A, B, C], C, y, x, s[C].op.reduce_axis[0]


@autotvm.template("tutorial/matmul_v0")
def matmul_v0(N, L, M, dtype):
    s, args, C, y, x, k = _matmul(N, L, M, dtype)
    cfg = autotvm.get_config()
    cfg.define_knob("tile_y", [1, 2, 4, 8, 16])
    cfg.define_knob("tile_x", [1, 2, 4, 8, 16])
    yo, yi = s[C].split(y, cfg["tile_y"].val)
    xo, xi = s[C].split(x, cfg["tile_x"].val)
    s[C].reorder(yo, xo, k, yi, xi)
    return s, args


@autotvm.template("tutorial/matmul")
def matmul(N, L, M, dtype):
    s, args, C, y, x, k = _matmul(N, L, M, dtype)
    cfg = autotvm.get_config()
    cfg.define_split("tile_y", y, num_outputs=2)
    cfg.define_split("tile_x", x, num_outputs=2)
    yo, yi = cfg["tile_y"].apply(s, C, y)
    xo, xi = cfg["tile_x"].apply(s, C, x)
    s[C].reorder(yo, xo, k, yi, xi)
    cfg.add_flop(2 * N * L * M)
    return s, args


N, L, M = 64, 48, 32


def _check(s, arg_bufs):
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(N, L)).astype(np.float32)
    b = rng.uniform(size=(L, M)).astype(np.float32)
    c = np.full((N, M), np.nan, dtype=np.float32)
    td.build(s, arg_bufs)(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4)


def test_the_tutorial_tunes_logs_and_applies_the_best(tmp_path):
    task = autotvm.task.create("tutorial/matmul", args=(N, L, M, "float32"), target="llvm")
    space = task.config_space
    # every split of 64 and of 32 into two factors: 7 x 6
    assert len(space) == 7 * 6
    assert "tile_y: Split(policy=factors, product=64, num_outputs=2) len=7" in str(space)
    measure_option = autotvm.measure_option(builder="local",
                                            runner=autotvm.LocalRunner(number=5))
    tuner = autotvm.tuner.RandomTuner(task)
    log = tmp_path / "matmul.log"
    tuner.tune(n_trial=10, measure_option=measure_option,
               callbacks=[autotvm.callback.log_to_file(str(log))])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 10 and len({r["config"]["index"] for r in rows}) == 10
    assert all(r["result"][1] == 0 and r["input"][1] == "tutorial/matmul" for r in rows)
    best = min(rows, key=lambda r: sum(r["result"][0]) / len(r["result"][0]))
    with autotvm.apply_history_best(str(log)):
        with td.target.Target("llvm"):
            s, arg_bufs = matmul(N, L, M, "float32")
            cfg_text = str(td.lower(s, arg_bufs))
            _check(s, arg_bufs)
    # the applied configuration is the log's fastest: its factors are the IR's loops
    (_, _, (_, y_inner)), (_, _, (_, x_inner)) = best["config"]["entity"]
    assert f"for i.inner in range(0, {y_inner})" in cfg_text or y_inner == 1
    assert f"for j.inner in range(0, {x_inner})" in cfg_text or x_inner == 1
    assert tuner.best_flops > 0 and tuner.best_config is not None


def test_outside_any_context_a_template_uses_its_fallback():
    """No split (inner factors 1): the configuration of index 0."""
    s, arg_bufs = matmul(N, L, M, "float32")
    task = autotvm.task.create("tutorial/matmul", args=(N, L, M, "float32"))
    assert str(td.lower(s, arg_bufs)) == str(td.lower(*task.instantiate(
        task.config_space.get(0))))
    _check(s, arg_bufs)
    s, arg_bufs = matmul_v0(N, L, M, "float32")
    _check(s, arg_bufs)


@pytest.mark.parametrize("tuner_class", [autotvm.tuner.GridSearchTuner,
                                         autotvm.tuner.XGBTuner])
def test_every_tuner_measures_distinct_configurations_that_compute_the_product(tuner_class):
    task = autotvm.task.create("tutorial/matmul_v0", args=(N, L, M, "float32"))
    assert len(task.config_space) == 25
    tuner = tuner_class(task, **({"plan_size": 4} if tuner_class is
                                 autotvm.tuner.XGBTuner else {}))
    seen = []
    tuner.tune(n_trial=12, measure_option=autotvm.measure_option(
        runner=autotvm.LocalRunner(number=2, repeat=1)),
        callbacks=[lambda t, inputs, results: seen.extend(zip(inputs, results))])
    assert len(seen) == 12 and len({i.config.index for i, _ in seen}) == 12
    assert all(r.error_no == autotvm.MeasureErrorNo.NO_ERROR for _, r in seen)
    if tuner_class is autotvm.tuner.GridSearchTuner:
        assert [i.config.index for i, _ in seen] == list(range(12))
    for inp, _ in seen[:3]:     # each configuration, instantiated again, is right
        _check(*task.instantiate(inp.config))


@autotvm.template("test/wrong_when_shifted")
def wrong_when_shifted(n):
    A = td.placeholder((n,), name="A")
    cfg = autotvm.get_config()
    cfg.define_knob("shift", [0, 1])
    # a knob that breaks the template: B reads A reversed
    B = td.compute((n,), lambda i: A[n - 1 - i if cfg["shift"].val else i] * 2.0, name="B")
    return td.create_schedule(B.op), [A, B]


@autotvm.template("test/refused")
def refused(n):
    A = td.placeholder((n,), name="A")
    B = td.compute((n,), lambda i: A[i] * 2.0, name="B")
    s = td.create_schedule(B.op)
    cfg = autotvm.get_config()
    cfg.define_knob("bad", [False, True])
    if cfg["bad"].val:
        s[B].unroll(td.reduce_axis((0, 2), "foreign"))   # not an axis of B: refused
    return s, [A, B]


CRASH_IR = """
define float @td_test_crash(float %x) {
  %p = inttoptr i64 16 to ptr
  store volatile float %x, ptr %p
  ret float %x
}
"""


@autotvm.template("test/crashes")
def crashes(n):
    A = td.placeholder((n,), name="A")
    cfg = autotvm.get_config()
    cfg.define_knob("crash", [0, 1, 2])
    if cfg["crash"].val == 1:    # a kernel that writes to address 16
        B = td.compute((n,), lambda i: td.call_extern("float32", "td_test_crash", A[i]),
                       name="B")
    else:
        B = td.compute((n,), lambda i: A[i] * 2.0, name="B")
    s = td.create_schedule(B.op)
    s[B].pragma(B.op.axis[0], "import_llvm", CRASH_IR)
    return s, [A, B]


@pytest.mark.parametrize("name, errors", [
    ("test/wrong_when_shifted", [0, autotvm.MeasureErrorNo.WRONG_ANSWER]),
    ("test/refused", [0, autotvm.MeasureErrorNo.COMPILE_HOST]),
    ("test/crashes", [0, autotvm.MeasureErrorNo.RUNTIME_DEVICE, 0]),
])
def test_failing_configurations_are_results_not_the_end(tmp_path, name, errors):
    task = autotvm.task.create(name, args=(16,))
    results = []
    autotvm.tuner.GridSearchTuner(task).tune(
        n_trial=len(errors), measure_option=autotvm.measure_option(),
        callbacks=[lambda t, i, r: results.extend(r),
                   autotvm.callback.log_to_file(str(tmp_path / "bad.log"))])
    assert [r.error_no for r in results] == errors
    logged = [json.loads(line)["result"] for line in (tmp_path / "bad.log").read_text()
              .splitlines()]
    assert [r[0] for r in logged if r[1]] == [[1e9]]     # a failure's cost, as TVM's
    with autotvm.apply_history_best(str(tmp_path / "bad.log")):
        s, args = task.func(16)
    x = np.arange(16, dtype="float32")
    y = np.full(16, np.nan, dtype="float32")
    td.build(s, args)(x, y)
    np.testing.assert_array_equal(y, x * 2)   # a failed configuration is never applied


def test_split_spaces_match_tvms():
    cfg = autotvm.ConfigSpace()
    cfg.define_split("a", 12, num_outputs=3)
    cfg.define_split("b", 100, num_outputs=2, policy="power2")
    cfg.define_split("c", 64, num_outputs=2, filter=lambda e: e.size[-1] <= 8)
    cfg.define_knob("d", [4, 8])
    # ordered triples with product 12; powers of two up to 64; divisors of 64 up to 8
    assert [len(cfg.space_map[k]) for k in "abcd"] == [18, 7, 4, 2]
    assert len(cfg) == 18 * 7 * 4 * 2
    config = cfg.get(len(cfg) - 1)
    # TVM's order: the innermost factor varies slowest
    assert config["a"].size == [-1, 1, 12] and config["d"].val == 8
    assert cfg.space_map["a"].entities[1].size == [-1, 2, 1]
    assert cfg.index_of(config.chosen) == len(cfg) - 1
    assert all(math.prod(e.size[1:]) <= 100 for e in cfg.space_map["b"].entities)
    three = autotvm.ConfigSpace()
    three.define_split("p", 100, "power2", num_outputs=3)   # TVM's positional policy
    assert len(three.space_map["p"]) == 28                 # products of two powers <= 100
    # the fallback is the first split the filter leaves (TVM's space[0])
    assert cfg["c"].size == [-1, 1]
    filtered = autotvm.ConfigSpace()
    filtered.define_split("f", 64, filter=lambda e: e.size[-1] >= 4)
    assert filtered["f"].size == [-1, 4]


def test_misuse_is_refused_with_what_to_do():
    with pytest.raises(RuntimeError, match="inside a function registered with "
                                           "@autotvm.template"):
        autotvm.get_config()
    with pytest.raises(ValueError, match="no template named 'nope'"):
        autotvm.task.create("nope", args=())
    with pytest.raises(TypeError, match="arguments are positional"):
        matmul(N=1, L=1, M=1, dtype="float32")
    with pytest.raises(ValueError, match="number must be a positive int"):
        autotvm.LocalRunner(number=0)
    cfg = autotvm.ConfigSpace()
    with pytest.raises(KeyError, match="no knob of that name"):
        cfg["missing"]
    with pytest.raises(NotImplementedError, match="define_reorder is not supported"):
        cfg.define_reorder("r", [], "all")
    with pytest.raises(NotImplementedError, match=r"options \['no_tail'\] are not"):
        cfg.define_split("s", 8, no_tail=True)
    with pytest.raises(ValueError, match="tune for the CPU"):
        autotvm.task.create("tutorial/matmul", args=(N, L, M, "float32"), target="cuda")


@td.register_func("autotvm_test_add_one")
def _add_one(x, y):
    y[...] = x + 1


@autotvm.template("test/packed")
def packed(n):
    A = td.placeholder((n,), name="A")
    B = td.extern((n,), [A], lambda ins, outs: td.call_packed(
        "autotvm_test_add_one", ins[0], outs[0]), name="B")
    cfg = autotvm.get_config()
    cfg.define_knob("unused", [0, 1])
    return td.create_schedule(B.op), [A, B]


def test_a_kernel_calling_a_registered_python_function_is_refused_by_name():
    task = autotvm.task.create("test/packed", args=(8,))
    with pytest.raises(ValueError, match="calls a td.register_func function, which the "
                                         "measuring worker process does not have"):
        autotvm.tuner.GridSearchTuner(task).tune(n_trial=1,
                                                 measure_option=autotvm.measure_option())
