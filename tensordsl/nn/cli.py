"""``tensordsl train`` and ``tensordsl tune-model``: argument parsing and output (the
work: ``train.py`` and ``tune_model.py``).

    tensordsl train mlp|cnn|capsnet [--epochs N] [--batch-size B] [--lr LR] [--seed S]
                                    [--step compiled|eager] [--target llvm|cuda]
                                    [--plot curves.png] [--save model.npz]
    tensordsl tune-model mlp|cnn|capsnet [--trials N] [--batch-size B] [--timeout S]
                                         [--db PATH] [--step compiled|eager]
                                         [--schedule gain|share] [--resume]
                                         [--no-step-check]
                                         [--cluster local:N|tcp://HOST:PORT]
                                         [--resources NAME]
    tensordsl tune-layers FILE.py:NAME|FILE.json [the same tuning options]
"""
from __future__ import annotations

import argparse
import time


def add_parsers(sub):
    from .train import DEFAULTS, MODELS, STEPS
    train = sub.add_parser(
        "train", help="train a small network on scikit-learn's digits, every kernel generated",
        description="Train MODEL on scikit-learn's bundled digits (8x8 images, no download): "
                    "1437 training and 360 test images, a fixed split. Per epoch: the "
                    "training loss, the test loss and accuracy; at the end the test "
                    "accuracy and the wall time. Defaults: "
                    + "; ".join(f"{m} {d.epochs} epochs, batch {d.batch_size}, "
                                f"{d.describe(d.lr)}" for m, d in DEFAULTS.items()))
    train.add_argument("model", choices=MODELS, help="mlp: 64-256-256-10 with ReLUs; cnn: "
                                                     "two conv/ReLU/max-pool blocks, linear; "
                                                     "capsnet: conv/ReLU, primary capsules, "
                                                     "10 digit capsules by dynamic routing, "
                                                     "margin loss")
    train.add_argument("--epochs", type=int, help="passes over the training images")
    train.add_argument("--batch-size", type=int, help="images per step")
    train.add_argument("--lr", type=float, help="initial learning rate of the optimizer "
                                                "(SGD with momentum 0.9; Adam for the "
                                                "capsnet; a cosine down to 0 over the "
                                                "epochs)")
    train.add_argument("--seed", type=int, default=0,
                       help="initial weights and batch order (the split never moves)")
    train.add_argument("--step", default="compiled", choices=STEPS,
                       help="compiled: nn.TrainStep, the whole step traced into one "
                            "program (default); eager: kernel by kernel on the tape")
    train.add_argument("--target", default="llvm", choices=("llvm", "cuda"),
                       help="where the kernels run (default llvm, this CPU)")
    train.add_argument("--plot", metavar="FILE.png", help="draw loss and accuracy per epoch")
    train.add_argument("--save", metavar="FILE.npz",
                       help="save the trained weights (Module.save; load_state_dict reads "
                            "them back)")
    train.add_argument("--train-size", type=int, metavar="N",
                       help="train on the first N training images only (a quick run)")

    tune = sub.add_parser(
        "tune-model", help="tune every kernel of a training step within one trial budget",
        description="Run one training step of MODEL, note every distinct kernel it runs "
                    "that reads records (the compiled step's matrix products, as the "
                    "matmul of their sizes; the eager step's td.ops operators and their "
                    "gradients, <op>_backward wrt=NAME), and tune them within one budget, "
                    "spent in rounds on the kernels of the largest expected gain (time "
                    "share x recent improvement). Records go where tensordsl tune writes "
                    "them, so tensordsl train uses them.")
    tune.add_argument("model", choices=MODELS)
    tune.add_argument("--trials", type=int, default=300,
                      help="trials in total, over all kernels (default 300)")
    tune.add_argument("--batch-size", type=int,
                      help="the batch of the step (default: tensordsl train's)")
    tune.add_argument("--timeout", type=float, default=30.0,
                      help="seconds one candidate may take to build and run (default 30)")
    tune.add_argument("--db", help="record database (default: records.sqlite in the cache "
                                   "directory, which td.ops reads)")
    tune.add_argument("--seed", type=int, default=0, help="random seed of the search")
    tune.add_argument("--step", default="compiled", choices=STEPS,
                      help="the kernels of which step: compiled (nn.TrainStep's program, "
                           "tensordsl train's default) or eager (td.ops and their "
                           "gradients)")
    tune.add_argument("--step-check", action=argparse.BooleanOptionalAction, default=None,
                      help="after tuning, time each tuned kernel inside the compiled step "
                           "with its defaults and tuned, keep the faster there, and time "
                           "the step both ways (default: on for --step compiled)")
    _add_job_options(tune)

    layers = sub.add_parser(
        "tune-layers", help="tune a model's layers (td.ops calls listed in a file) within "
                            "one trial budget",
        description="Tune every distinct td.ops kernel of FILE.py:NAME within one budget "
                    "(as tune-model). NAME is a list, or a function returning one, of "
                    "(operator, arrays, options) calls (unfilled arrays will do: only "
                    "shapes and dtypes count), or a function that runs the model's td.ops "
                    "calls itself and returns None; or FILE.json, a workload list "
                    "(autotune.layers.save writes one). Example: tensordsl tune-layers "
                    "benchmarks/models.py:resnet50. Prints each kernel's default and tuned "
                    "times and the layers' total.")
    layers.add_argument("spec", metavar="FILE.py:NAME|FILE.json")
    for name in ("--trials", "--timeout", "--db", "--seed"):
        action = next(a for a in tune._actions if name in a.option_strings)
        layers.add_argument(name, type=action.type, default=action.default, help=action.help)
    _add_job_options(layers)


def _add_job_options(parser):
    """How a job's budget is spent, and where its candidates run."""
    parser.add_argument("--schedule", default="gain", choices=("gain", "share"),
                        help="gain: rounds of trials to the kernels of the largest "
                             "expected gain (time share x recent improvement; default); "
                             "share: a static split, each kernel a minimum and the rest in "
                             "proportion to its work, largest first")
    parser.add_argument("--resume", action="store_true",
                        help="the budget counts the trials already stored for these "
                             "kernels (a killed job, restarted, does what was left); "
                             "without it the budget is spent on top of them")
    parser.add_argument("--cluster", metavar="local:N|tcp://HOST:PORT",
                        help="run builds and measurements on a Dask cluster (needs "
                             "pip install 'tensordsl[dask]'): local:N starts N worker "
                             "processes here, one of which measures; tcp://... connects to "
                             "a running dask scheduler. Default: processes of this "
                             "machine, nothing to start")
    parser.add_argument("--resources", metavar="NAME",
                        help="with --cluster: the Dask worker resource a worker must hold "
                             "to measure (default cpu-<this CPU>, e.g. cpu-znver3; start "
                             "workers with --resources \"NAME=1\")")
    from tensordsl.autotune.cli import add_confirm_option
    add_confirm_option(parser)


def run_train(args) -> int:
    start = time.perf_counter()
    from . import train as t
    _check_target(args.target)
    for name in ("epochs", "batch_size", "train_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive number, "
                             f"got {value}")
    d = t.DEFAULTS[args.model]
    epochs = args.epochs or d.epochs
    batch_size = args.batch_size or d.batch_size
    lr = d.lr if args.lr is None else args.lr
    data = t.load_digits()
    n_train = len(data.x_train) if args.train_size is None else \
        min(args.train_size, len(data.x_train))
    t.check_arguments(epochs, batch_size, lr, n_train)
    print(f"train {args.model} on digits: {n_train} training / {len(data.x_test)} test "
          f"images, batch {batch_size}, {epochs} epoch{'s' if epochs > 1 else ''}, "
          f"{d.describe(lr)}, {args.step} step, target "
          f"{args.target}", flush=True)
    steps = epochs * (n_train // batch_size)
    bar = _Bar(steps, f"train {args.model}")

    def on_epoch(k, h):
        bar.say(f"epoch {k + 1:>3}/{epochs}  train loss {h.train_loss[-1]:.4f}  test loss "
                f"{h.test_loss[-1]:.4f}  test accuracy {h.test_accuracy[-1]:.4f}  "
                f"{_duration(h.seconds[-1])}")

    try:
        history = t.train(args.model, epochs, batch_size, lr, seed=args.seed,
                          train_size=args.train_size, data=data, step=args.step,
                          on_epoch=on_epoch, on_step=bar.advance)
    finally:
        bar.close()
    accuracy = history.test_accuracy[-1]
    right = int(round(accuracy * len(data.y_test)))
    print(f"test accuracy: {accuracy:.4f} ({right}/{len(data.y_test)})")
    if args.save:
        history.model.save(args.save)
        print(f"saved the weights to {args.save}")
    if args.plot:
        t.plot(history, args.plot, f"tensordsl train {args.model}")
        print(f"curves: {args.plot}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0


def _check_target(target: str):
    if target == "cuda":
        from tensordsl.nd import is_cuda_available
        if not is_cuda_available():
            raise ValueError("--target cuda: no CUDA device found (train on the CPU with "
                             "--target llvm)")
        raise ValueError("--target cuda: nn.Tensor holds host (numpy) arrays only so far; "
                         "train on the CPU with --target llvm")


def run_tune_model(args) -> int:
    from .tune_model import step_workloads
    _check_budget(args)
    if args.step_check is None:
        args.step_check = args.step == "compiled"
    if args.step_check and args.step != "compiled":
        raise ValueError("--step-check: the check runs the compiled step (--step compiled)")
    workloads = step_workloads(args.model, args.batch_size, args.step)
    status = _tune_all(workloads, args, f"in a training step of {args.model}",
                       f"tune-model {args.model}")
    if args.step_check:
        _print_step_check(args)
    return status


def _print_step_check(args):
    """Run ``tune_model.check_step`` on the records just written and say what it chose
    and what the step takes now."""
    from tensordsl.autotune.records import RecordDB
    from .tune_model import check_step
    print("step check: each tuned kernel timed inside the step, with its defaults and "
          "tuned; the faster is kept:", flush=True)
    with RecordDB(args.db) as db:
        checked, step = check_step(args.model, args.batch_size, db)
    for c in checked:
        kept = "tuned" if c.keeps_tuned else "default"
        print(f"  default {c.default_seconds * 1e3:9.4f} ms  tuned "
              f"{c.tuned_seconds * 1e3:9.4f} ms  keeps {kept:7}  {_label(c.workload)}"
              + (f" (x{c.kernels})" if c.kernels > 1 else ""))
    if not checked:
        print("  (no kernel has a tuned configuration to check)")
    print(f"the step: {step['defaults'] * 1e3:.3f} ms with defaults, "
          f"{step['tuned'] * 1e3:.3f} ms tuned ({step['defaults'] / step['tuned']:.3f}x)")


def run_tune_layers(args) -> int:
    from tensordsl.autotune.layers import load, weighted
    _check_budget(args)
    found = weighted(load(args.spec))
    return _tune_all(found, args, f"in {args.spec}", f"tune-layers {args.spec}",
                     compare=True)


def _check_budget(args):
    if args.trials < 1:
        raise ValueError(f"--trials: expected a positive number, got {args.trials}")
    if args.timeout <= 0:
        raise ValueError(f"--timeout: expected a positive number of seconds, "
                         f"got {args.timeout}")
    from tensordsl.autotune.cli import check_confirm
    check_confirm(args)


def _tune_all(found: list, args, where: str, title: str, compare: bool = False) -> int:
    """Spend ``args.trials`` over ``found`` (workloads, or (workload, weight) pairs), on
    this machine or ``args.cluster``; print each one's best (with ``compare``: beside its
    default configuration's time, and the totals)."""
    from tensordsl.autotune.records import RecordDB
    from tensordsl.autotune.scheduler import default_seconds, tune_tasks
    from tensordsl.autotune.tuner import stored_trials
    pairs = [w if isinstance(w, tuple) else (w, 1) for w in found]
    workloads, weights = [w for w, _ in pairs], [n for _, n in pairs]
    if args.resources and not args.cluster:
        raise ValueError("--resources: only with --cluster (which workers may measure)")
    print(f"{len(workloads)} distinct kernels {where}; {args.trials} trials, "
          f"{args.schedule} schedule"
          + (f", on the Dask cluster {args.cluster}" if args.cluster else "") + ":",
          flush=True)
    db = RecordDB(args.db)
    executor = None
    if args.cluster:
        from tensordsl.autotune.dask_backend import DaskExecutor
        executor = DaskExecutor(args.cluster, timeout=args.timeout, resource=args.resources)
        print(f"  {executor.describe()}", flush=True)
    stored = sum(len(stored_trials(db, w, "llvm")) for w in workloads) if args.resume else 0
    bar = _Bar(max(0, args.trials - stored), title)   # (--resume: what is left)

    def progress(task, report):
        bar.advance(label=_label(task.workload))

    try:
        results = tune_tasks(workloads, args.trials, db, schedule=args.schedule,
                             weights=weights, timeout=args.timeout, seed=args.seed,
                             resume=args.resume, executor=executor, progress=progress,
                             confirm_rounds=args.confirm)
    finally:
        bar.close()
        if executor is not None:
            executor.close()
    totals = [0.0, 0.0]
    for task, b in results:
        label = _label(task.workload) + (f" (x{task.weight:g})" if task.weight != 1 else "")
        if task.trials == 0:
            print(f"  not tuned (budget spent)  {label}")
        elif b is None:
            print(f"  no configuration ran      {label}")
        elif compare and (default := default_seconds(db, task.workload)) is not None:
            totals[0] += default * task.weight
            totals[1] += b["seconds"] * task.weight
            print(f"  {task.trials:>4} trials  default {default * 1e3:9.4f} ms  best "
                  f"{b['seconds'] * 1e3:9.4f} ms  {default / b['seconds']:5.2f}x  {label}")
        else:
            print(f"  {task.trials:>4} trials  best {b['seconds'] * 1e3:9.4f} ms  {label}")
    if compare and totals[1]:
        print(f"the tuned kernels' total: {totals[0] * 1e3:.3f} ms with defaults, "
              f"{totals[1] * 1e3:.3f} ms tuned ({totals[0] / totals[1]:.2f}x)")
    print(f"records: {db.path}")
    return 0


def _duration(seconds: float) -> str:
    """``2.7 s``, or ``85 ms`` below a second (a compiled epoch of the mlp)."""
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1e3:.0f} ms"


def _label(workload) -> str:
    """``dense_backward(64x256, 256x256, 256, 64x256) wrt=weight``."""
    wrt = workload.attrs.get("wrt")
    return f"{workload!r}" + (f" wrt={wrt}" if wrt else "")


class _Bar:
    """A progress bar (rich when installed, else nothing) with lines printed above it."""

    def __init__(self, total: int, description: str):
        self.rich = None
        try:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)
        except ImportError:
            return
        self.description = description
        self.rich = Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(),
                             TextColumn("{task.fields[label]}"))
        self.task = self.rich.add_task(description, total=total, label="")
        self.rich.start()

    def advance(self, label: str = ""):
        if self.rich is not None:
            self.rich.update(self.task, advance=1, label=label)

    def say(self, line: str):
        if self.rich is not None:
            self.rich.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)

    def close(self):
        if self.rich is not None:
            self.rich.stop()
