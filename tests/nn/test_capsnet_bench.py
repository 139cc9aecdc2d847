"""benchmarks/capsnet_ops.py times the same CapsNet step on both sides: the model
``tensordsl train capsnet`` trains, its PyTorch twin from our weights; our compiled
step's loss and gradients against PyTorch's float64 autograd, at a small batch."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import capsnet_ops

torch = pytest.importorskip("torch")
SMALL = dict(capsnet_ops.CAPSNET, batch=4)


@pytest.fixture(scope="module")
def first_step():
    return capsnet_ops.our_first_step(SMALL)


def test_our_step_matches_torch_loss_and_every_gradient(first_step):
    errors = capsnet_ops.errors(SMALL, first_step)
    assert set(errors) == {"loss", "0.weight", "0.bias", "2.weight", "2.bias", "3.weight"}
    # float32 against float64: a few float32 roundings, no more
    assert max(errors.values()) < 1e-5, errors


def test_gradients_read_from_adams_state_are_the_tapes(first_step):
    """The check reads the compiled step's gradients back from Adam's first moment; the
    eager tape's ``loss.backward()`` from the same weights gives the same ones."""
    import tensordsl.nn as nn
    import tensordsl.nn.functional as F
    initial, loss, grads = first_step
    model, _ = capsnet_ops.our_model(SMALL)
    model.load_state_dict(initial)
    x, y = capsnet_ops.inputs(SMALL)
    tape_loss = F.margin_loss(model(nn.Tensor(x)), nn.Tensor(y))
    tape_loss.backward()
    assert loss == pytest.approx(tape_loss.item(), rel=1e-5)
    for name, param in model.named_parameters():
        scale = np.abs(param.grad).max()
        np.testing.assert_allclose(grads[name], param.grad, rtol=0, atol=1e-5 * scale,
                                   err_msg=name)


def test_the_timed_steps_train_from_the_same_weights():
    ours, theirs = capsnet_ops.tensordsl_fn(SMALL), capsnet_ops.torch_fn(SMALL)
    first = ours(), theirs()
    np.testing.assert_allclose(first[0], first[1], rtol=1e-5)
    # the second step's loss moved: each side's optimizer updated its weights
    second = ours(), theirs()
    assert second[0] != first[0]
    np.testing.assert_allclose(second[0], second[1], rtol=1e-3)


def test_a_failing_torch_compile_becomes_the_rows_reason(monkeypatch):
    from benchmarks import capsule, workers

    def broken(fn):
        def compiled(*args):
            raise RuntimeError("inductor: no C compiler | found\nmore detail")
        return compiled
    monkeypatch.setattr(torch, "compile", broken)
    # the worker sets the suite's threads: put this process's back afterwards
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    threads = torch.get_num_threads()
    try:
        result = workers.capsnet_torchcompile({"params": SMALL, "threads": 2})
    finally:
        torch.set_num_threads(threads)
    assert result == {"seconds": float("inf"),
                      "fails": "RuntimeError: inductor: no C compiler / found"}
    runs = {"tensordsl": {"seconds": 0.02}, "torch": {"seconds": 0.03},
            "torchcompile": result}
    row = capsule._row("step", runs, capsule.STEP_SYSTEMS, 1e-6, "—")
    assert row["torchcompile_ms"] == "fails: RuntimeError: inductor: no C compiler / found"
    assert row["vs_torchcompile"] == "—"
    assert row["vs_torch"] == pytest.approx(1.5)
