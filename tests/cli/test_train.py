"""``tensordsl train`` and ``tensordsl tune-model`` end to end, on small budgets."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tensordsl import cli



def _digits():
    from tensordsl.nn.train import load_digits
    return load_digits()


def test_train_mlp_prints_epochs_saves_weights_that_predict_the_same_and_plots(tmp_path,
                                                                              capsys):
    saved, png = tmp_path / "mlp.npz", tmp_path / "curves.png"
    assert cli.main(["train", "mlp", "--epochs", "2", "--train-size", "512",
                     "--batch-size", "32", "--seed", "3", "--save", str(saved),
                     "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "train mlp on digits: 512 training / 360 test images, batch 32, 2 epochs" in out
    epochs = re.findall(r"epoch +(\d)/2  train loss (\S+)  test loss (\S+)  test accuracy "
                        r"(\S+)", out)
    assert [e[0] for e in epochs] == ["1", "2"]
    assert all(np.isfinite(float(v)) for e in epochs for v in e[1:])
    (accuracy, right), = re.findall(r"test accuracy: (\S+) \((\d+)/360\)", out)
    assert float(accuracy) > 0.5            # chance is 0.1
    assert re.search(r"wall time: \d+\.\d s", out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the saved weights, loaded into a fresh model, give the printed test accuracy
    import tensordsl.nn as nn
    from tensordsl.nn.train import build_model, evaluate
    model = build_model("mlp", np.random.default_rng(99))
    model.load_state_dict(saved)
    data = _digits()
    _, reloaded = evaluate(model, data.x_test, data.y_test)
    assert round(reloaded * 360) == int(right)
    assert isinstance(model, nn.Module)


def test_a_saved_cnn_predicts_exactly_what_the_trained_one_does(tmp_path, capsys):
    import tensordsl.nn as nn
    from tensordsl.nn.train import build_model, model_input, train
    data = _digits()
    history = train("cnn", epochs=3, batch_size=32, train_size=512, seed=1, data=data)
    assert history.test_accuracy[-1] > 0.6  # chance is 0.1
    assert len(history.train_loss) == len(history.test_loss) == 3
    path = tmp_path / "cnn.npz"
    history.model.save(path)
    fresh = build_model("cnn", np.random.default_rng(7))
    fresh.load_state_dict(path)
    x = nn.Tensor(model_input("cnn", data.x_test[:50]))
    with nn.no_grad():
        np.testing.assert_array_equal(fresh(x).data, history.model(x).data)


def test_bad_arguments_and_cuda_without_a_device_are_refused(capsys):
    assert cli.main(["train", "mlp", "--epochs", "0"]) == 2
    assert "--epochs: expected a positive number, got 0" in capsys.readouterr().err
    assert cli.main(["train", "mlp", "--batch-size", "5000"]) == 2
    assert "--batch-size: expected 1 to 1437" in capsys.readouterr().err
    assert cli.main(["train", "mlp", "--target", "cuda"]) == 2
    err = capsys.readouterr().err
    from tensordsl.nd import is_cuda_available
    expected = "host (numpy) arrays only" if is_cuda_available() else "no CUDA device found"
    assert f"tensordsl train: error: --target cuda: " in err and expected in err
    assert cli.main(["tune-model", "mlp", "--step", "eager", "--step-check"]) == 2
    assert "--step-check: the check runs the compiled step" in capsys.readouterr().err


def test_the_kernels_of_a_step_are_found_by_running_it():
    from tensordsl.nn.tune_model import step_workloads
    found = {(w.op, w.attrs.get("wrt"))
             for w in step_workloads("mlp", batch_size=16, step="eager")}
    assert {("dense", None), ("dense_backward", "x"), ("dense_backward", "weight"),
            ("dense_backward", "bias"), ("relu", None), ("relu_backward", "x"),
            ("cross_entropy", None), ("cross_entropy_backward", "logits")} <= found
    # an integer operand (the labels) has no gradient kernel, nor has the input
    assert ("cross_entropy_backward", "labels") not in found
    assert not [w for w in step_workloads("mlp", batch_size=16, step="eager")
                if w.attrs.get("wrt") == "x" and w.args[0][1] == (16, 64)]


def test_the_compiled_steps_products_are_tuned_as_matmuls_the_rest_as_computes():
    # the MLP's compiled step: each layer's product (16 x in x out, W read transposed),
    # the data gradients of layers 2 and 3 and the weight gradients (the batch as k);
    # its other kernels as what they compute: by the auto-scheduler's space, or the
    # row-wise template's (the loss's maximum over each row)
    from tensordsl.nn.tune_model import step_workloads
    everything = step_workloads("mlp", batch_size=16)
    found = [w for w in everything if w.op == "matmul"]
    computes = [w for w in everything if w.op != "matmul"]
    assert {w.template for w in computes} == {"auto", "rowwise"}
    assert all(w.op.startswith("compute:") for w in computes)
    assert "relu(16x256)" in [repr(w) for w in computes]
    assert "cross_entropy_max(16x1)" in [repr(w) for w in computes if w.template == "rowwise"]
    shapes = {(w.args[0][1], w.args[1][1], w.attrs["transpose_a"], w.attrs["transpose_b"])
              for w in found}
    assert ((16, 64), (256, 64), False, True) in shapes        # layer 1, forward
    assert ((16, 10), (10, 256), False, False) in shapes       # layer 3, input gradient
    assert ((16, 256), (16, 64), True, False) in shapes        # layer 1, weight gradient
    assert not any(s[0] == (16, 256) and s[1] == (256, 64) and not s[2] for s in shapes)


@pytest.mark.parametrize("model, templates", [
    ("mlp", {"matmul", "auto", "rowwise"}),
    ("cnn", {"matmul", "auto", "rowwise", "conv2d_flat", "panel"})])
def test_every_kernel_of_the_compiled_step_has_a_workload_to_tune(model, templates):
    # the optimizer's updates too: one kernel of two outputs (the parameter and its
    # momentum) per parameter, auto-scheduled; a convolution and its weight gradient
    # by their templates in the operator table, with those templates' knobs
    from tensordsl.nn.tune_model import step_program
    kernels = step_program(model, batch_size=16).kernels
    assert [k.writes[0].op.name for k in kernels if k.workload is None] == []
    assert {k.workload.template for k in kernels} == templates
    assert all(k.workload.space() for k in kernels)
    updates = [k for k in kernels if len(k.writes) == 2]
    assert updates and (model != "mlp" or len(updates) == 6)
    assert {k.workload.template for k in updates} == {"auto"}
    assert all(k.workload.define()[1].op.num_outputs == 2 for k in updates)
    from tensordsl.autotune import worker
    from tensordsl.autotune.workload import Workload
    for w in {k.workload.key: k.workload for k in kernels
              if k.workload.template not in ("matmul", "auto")}.values():
        # as a worker gets it: rebuilt from its key and source, measured off defaults
        again = Workload.from_key(w.key, w.scheduler, w.source)
        config = {knob: values[0] for knob, values in again.space().items()}
        assert worker._run(again, config, 3, 0.0, {})["status"] == "ok", repr(w)


def test_share_splits_one_budget_by_work_largest_first():
    from tensordsl.autotune.scheduler import MIN_TRIALS, share
    from tensordsl.nn.tune_model import step_workloads
    workloads = step_workloads("mlp", batch_size=16, step="eager")
    shares = share(workloads, 200)
    assert sum(s.trials for s in shares) == 200
    assert [s.work for s in shares] == sorted((s.work for s in shares), reverse=True)
    assert all(s.trials >= MIN_TRIALS for s in shares)
    assert shares[0].trials > 5 * shares[-1].trials
    small = share(workloads, 5)
    assert [s.trials for s in small][:4] == [2, 2, 1, 0] and sum(s.trials for s in small) == 5
    with pytest.raises(ValueError, match="--trials: expected a positive number"):
        share(workloads, 0)


@pytest.mark.parametrize("step", ["eager", "compiled"])
def test_tune_model_writes_records_that_training_then_uses(tmp_path, capsys, step):
    db = tmp_path / "r.sqlite"
    assert cli.main(["tune-model", "mlp", "--trials", "3", "--batch-size", "16",
                     "--db", str(db), "--step", step]) == 0
    out = capsys.readouterr().out
    assert "distinct kernels in a training step of mlp; 3 trials, gain schedule" in out
    assert "not tuned (budget spent)" in out and f"records: {db}" in out
    # the compiled step is checked (each kernel's tuning a trial: its default, so
    # nothing to choose) and timed both ways
    assert ("the step: " in out and "ms tuned (" in out) == (step == "compiled")
    assert ("no kernel has a tuned configuration to check" in out) == (step == "compiled")
    from tensordsl.autotune import apply_history_best
    from tensordsl.autotune.history import best_config
    from tensordsl.autotune.records import RecordDB, record_target
    from tensordsl.autotune.scheduler import make_tasks
    from tensordsl.nn.tune_model import step_workloads
    records = RecordDB(db)
    # a budget below a round each: a trial each (the default) to the kernels of most
    # work, largest first
    tuned = [t.workload for t in make_tasks(step_workloads("mlp", batch_size=16,
                                                           step=step))[:3]]
    assert {key for key, _, _, _ in records.workloads()} == {w.key for w in tuned}
    assert sorted(n for _, _, n, _ in records.workloads()) == [1, 1, 1]
    with apply_history_best(db):
        for w in tuned:   # what td.ops and the program build these kernels with
            best = records.best(w.key, record_target("llvm"))["config"]
            assert w.tuned_config() == best
            assert best_config(w.key, "llvm", "matmul" if step == "compiled"
                               else w.template) == best


def test_the_compiled_step_trains_as_the_eager_one_does():
    from tensordsl.nn.train import train
    data = _digits()
    eager, compiled = (train("mlp", epochs=2, batch_size=32, train_size=128, seed=2,
                             data=data, step=kind) for kind in ("eager", "compiled"))
    np.testing.assert_allclose(compiled.train_loss, eager.train_loss, rtol=1e-4)
    np.testing.assert_allclose(compiled.test_loss, eager.test_loss, rtol=1e-4)
    with pytest.raises(ValueError, match="--step: expected one of eager, compiled"):
        train("mlp", epochs=1, data=data, step="jit")
