"""``tensordsl tune-model mlp|cnn``: tune every distinct kernel of a training step.

The kernels are found, not listed: ``step_workloads`` compiles one training step of the
model. Of the compiled step (``nn.TrainStep``, ``tensordsl train``'s default) it takes
the matrix products, each as the ``matmul`` workload of its sizes and operand layouts
whose records the program's kernel uses (its convolution and elementwise kernels use
their templates' defaults). Of the eager step it runs one step while
``record_kernels`` notes each ``td.ops`` operator and each gradient
(``td.ops.<op>_backward``, one workload per operand, ``wrt=NAME``) as the workload the
records are filed under — the same ``Workload`` that ``td.ops`` looks up. Either way
training afterwards (any later process) builds each kernel from its best record.

One trial budget serves them all: ``share`` gives each kernel ``MIN_TRIALS`` and the
rest in proportion to its estimated work (multiply-adds for products and convolutions,
elements touched for the rest) — or, when the budget is smaller than that, the minimum
to the largest kernels only — and ``tune_model`` runs ``autotune.tune`` on each in
turn, largest first, continuing the trials already stored for it (``resume``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

MIN_TRIALS = 2      # the template's default and one other: below that nothing is learned


@contextlib.contextmanager
def record_kernels():
    """Within the block, the ``Workload`` of every ``td.ops`` kernel that runs (forward
    and backward) is appended to the yielded list, each key once, in first-run order."""
    from tensordsl import ops, ops_backward
    from tensordsl.autotune.workload import Workload
    found: list = []
    keys: set = set()

    def note(workload):
        if workload.key not in keys:
            keys.add(workload.key)
            found.append(workload)

    compiled, plans, repeats = ops._compiled, ops_backward._PLANS, ops._REPEATS.calls

    def compiled_noting(name, args, spec, attrs, target, check_indices=True):
        note(Workload.from_arrays(name, args, attrs))
        return compiled(name, args, spec, attrs, target, check_indices)

    # every kernel, forward or gradient, is looked up through ops._compiled; a backward
    # function remembers its kernels per signature (_PLANS), so within the block it
    # starts from no plans and looks each one up again (a cache hit: nothing recompiles)
    # (and td.ops's repeated calls, which skip the lookup, start from none)
    ops._compiled, ops_backward._PLANS, ops._REPEATS.calls = compiled_noting, {}, {}
    try:
        yield found
    finally:
        ops._compiled, ops_backward._PLANS, ops._REPEATS.calls = compiled, plans, repeats


def step_workloads(model_name: str, batch_size: int | None = None,
                   step: str = "compiled") -> list:
    """The workloads of one training step of ``model_name`` on a batch of the digits:
    for the compiled step (``nn.TrainStep``), the ``matmul`` each of its matrix products
    takes records from (its other kernels use their templates' defaults); for the eager
    step, every ``td.ops`` operator and gradient it runs."""
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
    x = model_input(model_name, data.x_train[:batch_size])
    y = data.y_train[:batch_size]
    if step == "compiled":
        found, keys = [], set()
        for kernel in run.program(x, y).kernels:
            if kernel.workload is not None and kernel.workload.key not in keys:
                keys.add(kernel.workload.key)
                found.append(kernel.workload)
        return found
    with record_kernels() as found:
        run(x, y)
    return found


def estimated_work(workload) -> float:
    """Multiply-adds counted twice where ``Workload.flops`` knows them, else the
    elements the kernel reads and writes (an elementwise or reduction pass)."""
    out = workload.define()[1]
    out_shape = tuple(int(d.value) for d in out.shape)
    flops = workload.flops(out_shape)
    if flops:
        return flops
    arrays = [a[1] for a in workload.args if a[0] == "array"] + [out_shape]
    return float(sum(np.prod(s) for s in arrays))


@dataclass
class Share:
    workload: object
    work: float
    trials: int


def share(workloads: list, budget: int) -> list[Share]:
    """Trials per workload, largest estimated work first. A budget that covers
    ``MIN_TRIALS`` for every kernel gives each that much and the rest in proportion to
    the work (what rounding leaves, to the largest); a smaller one gives ``MIN_TRIALS``
    to the largest kernels until it is spent, and none to the others."""
    if budget < 1:
        raise ValueError(f"--trials: expected a positive number, got {budget}")
    sized = sorted(((w, estimated_work(w)) for w in workloads), key=lambda p: -p[1])
    if budget < MIN_TRIALS * len(sized):
        shares, left = [], budget
        for w, work in sized:
            n = min(MIN_TRIALS, left)
            shares.append(Share(w, work, n))
            left -= n
        return shares
    extra = budget - MIN_TRIALS * len(sized)
    total = sum(work for _, work in sized) or 1.0
    shares = [Share(w, work, MIN_TRIALS + int(extra * work / total)) for w, work in sized]
    if shares:
        shares[0].trials += budget - sum(s.trials for s in shares)
    return shares


def tune_model(shares: list[Share], db=None, target: str = "llvm", timeout: float = 30.0,
               seed: int = 0, progress=None) -> list[dict | None]:
    """Tune each share's workload for its trials (after those already stored for it);
    ``progress(k, share, report)`` follows each trial. The best record of each."""
    from tensordsl.autotune.records import RecordDB, record_target
    from tensordsl.autotune.tuner import tune
    db = db if isinstance(db, RecordDB) else RecordDB(db)
    best = []
    for k, s in enumerate(shares):
        if s.trials == 0:
            best.append(None)
            continue
        w = s.workload
        stored = len(db.trials(w.key, record_target(target), w.template))
        best.append(tune(w, trials=stored + s.trials, db=db, timeout=timeout, target=target,
                         resume=True, seed=seed,
                         progress=None if progress is None else
                         (lambda report, k=k, s=s: progress(k, s, report))))
    return best
