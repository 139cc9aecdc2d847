"""``tensordsl tune-model mlp|cnn``: tune every distinct kernel of a training step.

The kernels are found, not listed: ``step_workloads`` compiles one training step of the
model. Of the compiled step (``nn.TrainStep``, ``tensordsl train``'s default) it takes
every kernel that reads records: the matrix products, each as the ``matmul`` workload
of its sizes and operand layouts, and the kernels the auto-scheduler builds (an
activation, its gradient, a bias gradient, the optimizer's updates of two outputs) or a
template of the operator table (the loss's row-wise maximum, a convolution and its
weight gradient), each as what it computes (``Workload.of_compute``: the records the
program reads when it builds the kernel). Of the eager step it runs one step while
``autotune.collect`` notes each ``td.ops`` operator and each gradient
(``td.ops.<op>_backward``, one workload per operand, ``wrt=NAME``) as the workload the
records are filed under — the same ``Workload`` that ``td.ops`` looks up. Either way
training afterwards (any later process) builds each kernel from its best record.

One trial budget serves them all: ``autotune.scheduler.tune_tasks`` spends it in rounds
on the kernels of the largest expected gain (or splits it statically: ``share``).

Then ``check_step`` times the compiled step's kernels inside the step, with the
templates' defaults and with the records, and keeps for each workload the configuration
that was faster there (``autotune.in_step``): a kernel timed alone is not quite the
kernel between its neighbours.
"""
from __future__ import annotations

import numpy as np


def step_workloads(model_name: str, batch_size: int | None = None,
                   step: str = "compiled") -> list:
    """The workloads of one training step of ``model_name`` on a batch of the digits:
    for the compiled step (``nn.TrainStep``), those its kernels take records from (a
    product's ``matmul``, any other kernel's compute); for the eager step, every
    ``td.ops`` operator and gradient it runs."""
    run, x, y = _training_step(model_name, batch_size, step)
    if step == "compiled":
        found, keys = [], set()
        for kernel in run.program(x, y).kernels:
            if kernel.workload is not None and kernel.workload.key not in keys:
                keys.add(kernel.workload.key)
                found.append(kernel.workload)
        return found
    from tensordsl.autotune.collect import collect
    with collect() as found:
        run(x, y)
    return found


def step_program(model_name: str, batch_size: int | None = None):
    """The program (``td.build_program``) of ``model_name``'s compiled training step."""
    run, x, y = _training_step(model_name, batch_size, "compiled")
    return run.program(x, y)


def check_step(model_name: str, batch_size: int | None, db, rounds: int | None = None):
    """The step check of ``db``'s records for ``model_name``'s compiled step: (what
    ``in_step.check_in_step`` compared, {"defaults": s, "tuned": s} the whole step's
    time afterwards, built without records and with ``db``'s, timed alternately)."""
    from tensordsl.autotune import apply_history_best, defaults_only
    from tensordsl.autotune.in_step import ROUNDS, check_in_step, time_programs

    def program(context):
        run, x, y = _training_step(model_name, batch_size, "compiled")
        with context():
            return run.program(x, y), run.program_inputs(x, y)
    defaults, arrays = program(defaults_only)
    tuned, _ = program(lambda: apply_history_best(db))
    checked = check_in_step(defaults, tuned, arrays, db, rounds=rounds or ROUNDS)
    if checked:
        tuned, _ = program(lambda: apply_history_best(db))   # (with the choices made)
    return checked, time_programs({"defaults": defaults, "tuned": tuned}, arrays)


def _training_step(model_name: str, batch_size: int | None, step: str):
    """(step, x, y): a training step of ``model_name`` (SGD with momentum) and a batch
    of the digits."""
    from .optim import SGD
    from .train import (DEFAULTS, build_model, load_digits, loss_function, make_step,
                        model_input)
    batch_size = batch_size or DEFAULTS[model_name].batch_size
    data = load_digits()
    if not 1 <= batch_size <= len(data.x_train):
        raise ValueError(f"--batch-size: expected 1 to {len(data.x_train)}, got {batch_size}")
    model = build_model(model_name, np.random.default_rng(0))
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    run = make_step(step, model, loss_function(model_name), optimizer)
    return run, model_input(model_name, data.x_train[:batch_size]), \
        data.y_train[:batch_size]
