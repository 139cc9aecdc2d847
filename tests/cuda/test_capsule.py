"""Capsule routing (kernels/capsule.py) on the GPU, compiled for sm_80 and sm_90 and run
by the CUDA emulator (threads and blocks in a random order): the fused template
(schedules/cuda/capsule.py) under each of its plans against the numpy references of
tests/kernels/test_capsule.py — dynamic routing, EM routing, and the routing's
gradients against the same adjoints compiled for the CPU (which
tests/kernels/test_capsule.py checks against PyTorch and finite differences); which
plan each size gets and what it fuses, asserted on the generated CUDA C; and the
generic template's kernels for what the fused ones leave to it."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensordsl as td
from kernels import capsule as caps
from schedules.cuda import capsule as template
from schedules.cuda import schedule_for
from schedules.cuda.generic import schedule_generic
from targets.cuda import driver
from tensordsl.autodiff.operators import prepare
from tests.helpers import poisoned
from tests.kernels.test_capsule import em_inputs, np_em_routing, np_predictions, np_routing

from .helpers import build_all, emulate


def _routing(B, I, J, D, K, iterations):
    u = td.placeholder((B, I, K), name="u")
    W = td.placeholder((I, J, D, K), name="W")
    return u, W, caps.capsule_routing(u, W, iterations=iterations)


def _inputs(rng, u, W):
    un = rng.standard_normal([int(d.value) for d in u.shape]).astype("float32")
    Wn = (rng.standard_normal([int(d.value) for d in W.shape]) * 0.5).astype("float32")
    return un, Wn


def _want(un, Wn, iterations):
    return np_routing(np_predictions(un.astype("float64"), Wn.astype("float64")), iterations)


def _plan(out, config=None):
    s = td.create_schedule(out.op)
    return template.plan(s, out, {**template.DEFAULT, **(config or {})})[0]


def _shared_arrays(source: str) -> list[str]:
    return [line for line in source.splitlines() if "__shared__" in line]


@pytest.mark.parametrize("B,I,J,D,K,iterations,config", [
    (2, 8, 3, 5, 4, 1, {"threads": 32}),
    (2, 8, 3, 5, 4, 3, {"threads": 32}),
    (3, 13, 5, 7, 3, 3, {"threads": 64}),                 # nothing divides the threads
    (4, 10, 3, 5, 4, 3, {"threads": 32, "samples": 2}),   # two samples per block
    (3, 9, 4, 3, 5, 2, {"threads": 96, "samples": 2}),    # 2 does not divide 3: 1 a block
    (2, 40, 10, 16, 8, 3, {}),                            # the paper's capsules, 40 inputs
    (2, 43, 10, 16, 8, 3, {}),     # the most inputs that fit: 48512 bytes of the 49152
])
def test_fused_routing_is_one_kernel_matching_numpy(B, I, J, D, K, iterations, config, rng):
    u, W, v = _routing(B, I, J, D, K, iterations)
    assert _plan(v, config) == template.ONE_KERNEL
    s = schedule_for("capsule_routing", v, config=config)
    source = build_all(s, [u, W, v])["sm_90"].get_source()
    # the whole routing in one kernel; the predictions in the block's shared memory,
    # not in a global buffer the host allocates (the kernel's only parameters: u, W, v)
    assert source.count("__global__") == 1
    assert any("u_hat" in line for line in _shared_arrays(source))
    assert "capsule_routing_u_hat)" not in source and "u_hat," not in source
    un, Wn = _inputs(rng, u, W)
    np.testing.assert_allclose(emulate(s, [u, W, v], [un, Wn]), _want(un, Wn, iterations),
                               rtol=1e-5, atol=1e-6)


@settings(max_examples=8, deadline=None)
@given(B=st.integers(1, 4), I=st.integers(1, 12), J=st.integers(1, 6), D=st.integers(1, 9),
       K=st.integers(1, 5), iterations=st.integers(1, 3),
       threads=st.sampled_from([32, 64, 96]), samples=st.integers(1, 3),
       tile=st.integers(1, 8),
       plan=st.sampled_from([None, template.PREDICTIONS_APART, template.SPLIT_INPUTS]),
       seed=st.integers(0, 2**16))
def test_random_fused_routings_match_numpy(B, I, J, D, K, iterations, threads, samples,
                                           tile, plan, seed):
    """Every plan (None: the one that fits, here one kernel) on random small routings."""
    u, W, v = _routing(B, I, J, D, K, iterations)
    config = {"threads": threads, "samples": samples, "tile": tile, "plan": plan}
    s = schedule_for("capsule_routing", v, config=config)
    un, Wn = _inputs(np.random.default_rng(seed), u, W)
    np.testing.assert_allclose(emulate(s, [u, W, v], [un, Wn]), _want(un, Wn, iterations),
                               rtol=1e-5, atol=1e-6)


def test_one_input_more_takes_the_predictions_apart(rng):
    """44 inputs: one kernel would need more than 48 KiB once each shared array starts
    on 128 bytes (as ptxas lays them out), the static limit: the planner takes the
    predictions apart. One kernel, asked for, takes its arrays from dynamic shared
    memory (up to 163 KiB on sm_80), and computes the same."""
    u, W, v = _routing(2, 44, 10, 16, 8, 3)
    assert _plan(v) == template.PREDICTIONS_APART
    s = td.create_schedule(v.op)
    template.schedule_capsule_routing(s, v, {"plan": template.ONE_KERNEL})
    f = td.build(s, [u, W, v], target="cuda -arch=sm_80")
    (kernel,) = f.plan.kernels
    assert kernel.dynamic_shared > 48 * 1024 and "td_dynamic_shared" in f.get_source()
    un, Wn = _inputs(rng, u, W)
    out = np.full([int(d.value) for d in v.shape], np.nan, "float32")
    f.emulate(un, Wn, out)
    np.testing.assert_allclose(out, _want(un, Wn, 3), rtol=1e-5, atol=1e-6)


def test_rows_summed_by_one_thread_each_are_padded_to_an_odd_length(rng):
    """The agreement's threads each sum along a row of u_hat (16 capsule dimensions):
    rows 17 words apart, so a warp's reads fall in different banks; the coefficients'
    rows (3 output capsules, odd already) are not padded."""
    u, W, v = _routing(2, 8, 3, 16, 4, 2)
    s = schedule_for("capsule_routing", v, config={"threads": 64})
    shared = _shared_arrays(build_all(s, [u, W, v])["sm_80"].get_source())
    assert any(f"u_hat[{8 * 3 * 17}]" in line for line in shared)
    assert any(f"c_exp[{8 * 3}]" in line for line in shared)
    un, Wn = _inputs(rng, u, W)
    np.testing.assert_allclose(emulate(s, [u, W, v], [un, Wn]), _want(un, Wn, 2),
                               rtol=1e-5, atol=1e-6)


def test_predictions_apart_when_they_do_not_fit_shared_memory(rng):
    """u_hat of 64 input capsules x 10 x 16 (40 KiB) beside the rest of the routing
    (~20 KiB) is more than a block's 48 KiB: u_hat gets a kernel of its own, the
    routing stays one block per sample with its logits in shared memory."""
    u, W, v = _routing(2, 64, 10, 16, 3, 3)
    assert _plan(v) == template.PREDICTIONS_APART
    s = schedule_for("capsule_routing", v)
    source = build_all(s, [u, W, v])["sm_80"].get_source()
    assert source.count("__global__") == 2
    shared = _shared_arrays(source)
    assert not any("u_hat" in line for line in shared)
    assert any("agreement" in line for line in shared)
    un, Wn = _inputs(rng, u, W)
    np.testing.assert_allclose(emulate(s, [u, W, v], [un, Wn]), _want(un, Wn, 3),
                               rtol=1e-5, atol=1e-6)


def test_the_papers_sizes_split_the_inputs_over_blocks(rng):
    """1152 input capsules x 10: each logits-shaped stage alone is 45 KiB of the 48
    (module docstring): blocks take tiles of 32 input capsules, and each iteration's
    sum over the inputs is partial sums per tile, summed by the blocks of the next
    kernel — six kernels for 3 iterations, no shared array larger than a tile's.
    Emulated for two samples (all of them: one more block row)."""
    u, W, v = _routing(32, 1152, 10, 16, 8, 3)
    assert _plan(v) == template.SPLIT_INPUTS
    source = build_all(schedule_for("capsule_routing", v), [u, W, v])["sm_80"].get_source()
    assert source.count("__global__") == 6
    sizes = [int(line.split("[")[1].split("]")[0]) for line in _shared_arrays(source)]
    assert max(sizes) == 32 * 10
    assert not any("u_hat" in line for line in _shared_arrays(source))

    u, W, v = _routing(2, 1152, 10, 16, 8, 3)
    un, Wn = _inputs(rng, u, W)
    np.testing.assert_allclose(emulate(schedule_for("capsule_routing", v), [u, W, v],
                                       [un, Wn]), _want(un, Wn, 3), rtol=1e-4, atol=1e-6)


SPLIT = {"plan": template.SPLIT_INPUTS}


@pytest.mark.parametrize("B,I,J,D,K,iterations,config,kernels", [
    (2, 48, 10, 16, 8, 3, {"tile": 16}, 6),
    (3, 13, 5, 7, 3, 3, {"tile": 4}, 6),      # 13 inputs: tiles of 1 (whole tiles only)
    # tiles of 6; the first agreement read by the last partial sums alone: in their block
    (2, 30, 4, 3, 5, 2, {"tile": 8, "threads": 64}, 4),
])
def test_split_inputs_match_numpy(B, I, J, D, K, iterations, config, kernels, rng):
    u, W, v = _routing(B, I, J, D, K, iterations)
    s = schedule_for("capsule_routing", v, config={**SPLIT, **config})
    source = build_all(s, [u, W, v])["sm_90"].get_source()
    # the predictions; each iteration's partial sums; the first agreement, read by two
    # iterations' blocks; the output
    assert source.count("__global__") == kernels
    un, Wn = _inputs(rng, u, W)
    np.testing.assert_allclose(emulate(s, [u, W, v], [un, Wn]), _want(un, Wn, iterations),
                               rtol=1e-5, atol=1e-6)


def test_split_inputs_fuse_the_predictions_into_a_single_iteration(rng):
    """With one iteration the predictions are read by the partial sums alone: computed
    in their block, a tile's in shared memory — two kernels."""
    u, W, v = _routing(2, 24, 3, 5, 4, 1)
    s = schedule_for("capsule_routing", v, config={**SPLIT, "tile": 8})
    source = build_all(s, [u, W, v])["sm_80"].get_source()
    assert source.count("__global__") == 2
    assert any(f"u_hat[{8 * 3 * 5}]" in line for line in _shared_arrays(source))
    un, Wn = _inputs(rng, u, W)
    np.testing.assert_allclose(emulate(s, [u, W, v], [un, Wn]), _want(un, Wn, 1),
                               rtol=1e-5, atol=1e-6)


def test_generic_routing_forward_and_gradients_emulated(rng):
    """The generic kernels, one per stage (the plan for what the others do not take),
    forward and both gradients."""
    u, W, v = _routing(2, 8, 3, 5, 4, 3)
    un, Wn = _inputs(rng, u, W)
    s = td.create_schedule(v.op)
    schedule_generic(s, v)
    got = emulate(s, [u, W, v], [un, Wn])
    np.testing.assert_allclose(got, _want(un, Wn, 3), rtol=1e-5, atol=1e-6)

    (gu, gW), head = td.vjp(v, [u, W])
    hn = rng.standard_normal((2, 3, 5)).astype("float32")
    for g in (gu, gW):
        s = td.create_schedule(g.op)
        schedule_generic(s, g)
        got = emulate(s, [u, W, head, g], [un, Wn, hn])
        np.testing.assert_allclose(got, _cpu_gradient(g, [u, W, head], [un, Wn, hn]),
                                   rtol=1e-4, atol=1e-5 * np.abs(got).max())


def _cpu_gradient(g, args, inputs):
    cpu = td.build(td.create_schedule(g.op), [*args, g])
    want = poisoned([int(d.value) for d in g.shape], "float32")
    cpu(*inputs, want)
    return want


def test_fused_gradient_with_respect_to_the_input_emulated(rng):
    """The routing's gradient with respect to u is a per-sample chain too (dozens of stages):
    one kernel, one block per sample."""
    u, W, v = _routing(2, 8, 3, 5, 4, 3)
    (gu,), head = td.vjp(v, [u])
    gu = prepare(gu)      # (as td.ops.capsule_routing_backward schedules it)
    assert _plan(gu) == template.ONE_KERNEL
    s = schedule_for("capsule_routing_backward", gu, config={"threads": 64})
    assert build_all(s, [u, W, head, gu])["sm_80"].get_source().count("__global__") == 1
    un, Wn = _inputs(rng, u, W)
    hn = rng.standard_normal((2, 3, 5)).astype("float32")
    got = emulate(s, [u, W, head, gu], [un, Wn, hn])
    np.testing.assert_allclose(got, _cpu_gradient(gu, [u, W, head], [un, Wn, hn]),
                               rtol=1e-4, atol=1e-5 * np.abs(got).max())


@pytest.mark.parametrize("output", [0, 1])
def test_fused_em_routing_matches_numpy(output, rng):
    """EM routing's pose (output 0) or activations (1), one kernel each."""
    V, a, _, beta_u, beta_a = em_inputs(rng, B=2, I=12, J=3, H=5)
    ph = [td.placeholder(x.shape, name=name) for x, name in
          ((V, "V"), (a, "a"), (beta_u, "beta_u"), (beta_a, "beta_a"))]
    out = caps.em_routing(*ph, iterations=3, inverse_temperature=0.1)[output]
    assert _plan(out) == template.ONE_KERNEL
    s = td.create_schedule(out.op)
    template.schedule_capsule_routing(s, out, {"threads": 32})
    assert build_all(s, [*ph, out])["sm_80"].get_source().count("__global__") == 1
    feeds = [x.astype("float32") for x in (V, a, beta_u, beta_a)]
    want = np_em_routing(V, a, beta_u, beta_a, 3, [0.1] * 3)[output]
    np.testing.assert_allclose(emulate(s, [*ph, out], feeds), want, rtol=1e-4, atol=1e-5)


def test_fused_gradient_with_respect_to_the_weights_emulated(rng):
    """The gradient with respect to W sums over the samples a per-sample tensor (the
    gradient of u_hat): that tensor's chain fused in one kernel, a block per sample,
    and the sum over the samples a kernel after it."""
    u, W, v = _routing(3, 8, 3, 5, 4, 3)
    (gW,), head = td.vjp(v, [W])
    gW = prepare(gW)
    assert _plan(gW) == template.GENERIC      # (no sample to give a block)
    s = schedule_for("capsule_routing_backward", gW, config={"threads": 64})
    assert build_all(s, [u, W, head, gW])["sm_80"].get_source().count("__global__") == 2
    un, Wn = _inputs(rng, u, W)
    hn = rng.standard_normal((3, 3, 5)).astype("float32")
    got = emulate(s, [u, W, head, gW], [un, Wn, hn])
    np.testing.assert_allclose(got, _cpu_gradient(gW, [u, W, head], [un, Wn, hn]),
                               rtol=1e-4, atol=1e-5 * np.abs(got).max())


@pytest.mark.parametrize("wrt", ["u", "W"])
def test_gradients_with_the_inputs_split_over_blocks(wrt, rng):
    """The split plan on the gradients' graphs (at the paper's sizes it makes more
    kernels than the generic template there, which the plan therefore keeps: chosen
    here by the knob), their sums over the input capsules in partial sums per tile."""
    u, W, v = _routing(3, 20, 4, 5, 3, 3)
    (g,), head = td.vjp(v, [u if wrt == "u" else W])
    g = prepare(g)
    s = schedule_for("capsule_routing_backward", g, config={**SPLIT, "tile": 8})
    assert ".rf" in str(td.lower(s, [u, W, head, g], target="cuda"))
    un, Wn = _inputs(rng, u, W)
    hn = rng.standard_normal((3, 4, 5)).astype("float32")
    got = emulate(s, [u, W, head, g], [un, Wn, hn])
    np.testing.assert_allclose(got, _cpu_gradient(g, [u, W, head], [un, Wn, hn]),
                               rtol=1e-4, atol=1e-5 * np.abs(got).max())


def test_an_operator_without_samples_gets_the_generic_template(rng):
    A = td.placeholder((6, 7), name="A")
    k = td.reduce_axis((0, 7), name="k")
    rows = td.compute((6,), lambda i: td.sum(A[i, k] * A[i, k], axis=k), name="rows")
    assert _plan(rows) == template.GENERIC
    s = td.create_schedule(rows.op)
    template.schedule_capsule_routing(s, rows)
    a = rng.standard_normal((6, 7)).astype("float32")
    np.testing.assert_allclose(emulate(s, [A, rows], [a]), (a * a).sum(1), rtol=1e-5)
    with pytest.raises(ValueError, match="plan 'one kernel' cannot schedule this "
                                         "computation: its stages are not per sample"):
        template.schedule_capsule_routing(td.create_schedule(rows.op), rows,
                                          {"plan": template.ONE_KERNEL})


@pytest.mark.parametrize("config,message", [
    ({"plan": "fastest"}, "plan must be one of"),
    ({"tile": 0}, r"tile must be a positive int up to threads \(128\), got 0"),
    ({"threads": 48}, "threads must be a multiple of 32 up to 1024, got 48"),
    ({"threads": 2048}, "threads must be a multiple of 32 up to 1024, got 2048"),
    ({"samples": 0}, "samples must be a positive int with threads x samples at most 1024, "
                     "got 0"),
    ({"threads": 256, "samples": 8}, r"threads x samples at most 1024, got 8 \(256 threads\)"),
])
def test_bad_knobs_are_refused_naming_them(config, message):
    u, W, v = _routing(2, 8, 3, 5, 4, 1)
    with pytest.raises(ValueError, match=message):
        schedule_for("capsule_routing", v, config=config)


@pytest.mark.gpu
@pytest.mark.skipif(not driver.is_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("I", [32, 100, 1152])  # one kernel, predictions apart, split inputs
def test_routing_and_its_gradients_on_a_gpu(I, rng):
    """``td.ops`` on device arrays (``pytest -m gpu``): the forward against numpy, the
    gradients against the CPU's."""
    u, W, _ = _routing(32, I, 10, 16, 8, 3)
    un, Wn = _inputs(rng, u, W)
    hn = rng.standard_normal((32, 10, 16)).astype("float32")
    on_gpu = [td.nd.array(x, device="cuda") for x in (un, Wn, hn)]
    v = td.ops.capsule_routing(*on_gpu[:2], iterations=3)
    np.testing.assert_allclose(v.numpy(), _want(un, Wn, 3), rtol=1e-4, atol=1e-6)
    grads = td.ops.capsule_routing_backward(*on_gpu, iterations=3)
    for got, want in zip(grads, td.ops.capsule_routing_backward(un, Wn, hn, iterations=3)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-3,
                                   atol=1e-5 * np.abs(want).max())
