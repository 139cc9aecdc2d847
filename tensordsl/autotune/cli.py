"""``tensordsl tune`` and ``tensordsl records``: argument parsing and output."""
from __future__ import annotations

import sys

MATMUL_LIKE = ("matmul", "dense", "batch_matmul")


def parse_shape(text: str) -> tuple[int, ...]:
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--shape: expected sizes like 1024,1024 or 64x3x224x224, "
                         f"got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"--shape: sizes must be positive, got {text!r}")
    return dims


def workload_from_args(op: str, shapes: list[str], dtype: str, attrs: list[str],
                       scheduler: str = "template"):
    """``--shape`` once per input array; for matmul, one ``M,N,K`` also works."""
    from .workload import Workload
    if not shapes:
        raise ValueError("--shape: give the shape of each input array (at least one)")
    dims = [parse_shape(s) for s in shapes]
    if op in MATMUL_LIKE and len(dims) == 1 and len(dims[0]) == 3:
        m, n, k = dims[0]
        dims = [(m, k), (n, k)] if op == "dense" else [(m, k), (k, n)]
    parsed = {}
    for a in attrs:
        name, sep, value = a.partition("=")
        if not sep:
            raise ValueError(f"--attr: expected name=value, got {a!r}")
        try:
            import ast
            parsed[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[name] = value
    w = Workload(op, [("array", d, dtype) for d in dims], parsed, scheduler)
    try:
        w.define()  # refuse a bad operator or mismatched shapes now, in the operator's words
    except TypeError as err:
        raise ValueError(f"{op}: {err} (one --shape per input array)") from None
    return w


def add_parsers(sub):
    tune = sub.add_parser(
        "tune", help="search the schedule space of an operator, recording every trial",
        description="Measure configurations of OP's template (or, for a user's compute, "
                    "its SPACE) in an isolated worker, each trial committed to the record "
                    "database as it finishes. td.ops and td.build use the best record.")
    tune.add_argument("op", help="an operator of kernels/ (matmul, conv2d_nchw, softmax, ...) "
                                 "or path/to/file.py:function")
    tune.add_argument("--shape", action="append", default=[], metavar="DIMS",
                      help="an input's shape, e.g. 1024,1024 (repeat per input; matmul "
                           "also takes one M,N,K)")
    tune.add_argument("--dtype", default="float32", help="element type of the inputs "
                                                         "(default float32)")
    tune.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                      help="an operator attribute, e.g. padding=1 (repeatable)")
    tune.add_argument("--target", default="llvm", help="compilation target (default llvm)")
    tune.add_argument("--trials", type=int, default=200,
                      help="trials in total for this workload (default 200)")
    tune.add_argument("--timeout", type=float, default=30.0,
                      help="seconds one candidate may take to build and run (default 30)")
    tune.add_argument("--db", help="record database (default: records.sqlite in the cache "
                                   "directory)")
    tune.add_argument("--resume", action="store_true",
                      help="continue the trials already stored for this workload")
    tune.add_argument("--seed", type=int, default=0, help="random seed of the search")
    tune.add_argument("--auto", action="store_true",
                      help="search the auto-scheduler's space (multi-level tiling derived "
                           "from the compute) instead of the operator's template")
    tune.add_argument("--plot", metavar="FILE.png",
                      help="draw best-so-far GFLOP/s (or time) against trials")

    bench = sub.add_parser(
        "bench", help="time an operator beside the library a user would call",
        description="Our operator (as td.ops builds it: the best record or the defaults) "
                    "beside numpy or PyTorch, each in a fresh process, medians after "
                    "warm-up, ratio = their time / ours.")
    bench.add_argument("op", help="an operator of kernels/ (matmul, conv2d_nchw, ...)")
    bench.add_argument("--shape", action="append", default=[], metavar="DIMS",
                       help="an input's shape (repeat per input; matmul also takes M,N,K)")
    bench.add_argument("--dtype", default="float32", help="element type (default float32)")
    bench.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                       help="an operator attribute, e.g. padding=1 (repeatable)")
    bench.add_argument("--rounds", type=int, default=2,
                       help="alternating rounds; each system's best median is kept")

    records = sub.add_parser("records", help="list, query, export and import tuning records",
                             description="The tuning record database (SQLite).")
    rsub = records.add_subparsers(dest="records_command", metavar="{list,best,export,import}")
    for name, text in (("list", "one line per workload: trials and best time"),
                       ("best", "the best record of every workload"),
                       ("export", "all records as JSON lines (to stdout or --out)"),
                       ("import", "add records from a JSON-lines file")):
        p = rsub.add_parser(name, help=text, description=text)
        p.add_argument("--db", help="record database (default: records.sqlite in the cache "
                                    "directory)")
        if name == "export":
            p.add_argument("--out", help="file to write (default: standard output)")
        if name == "import":
            p.add_argument("file", help="a JSON-lines file written by records export")


def run_tune(args) -> int:
    from .records import RecordDB
    from .tuner import tune
    if args.trials < 1:
        raise ValueError(f"--trials: expected a positive number, got {args.trials}")
    if args.timeout <= 0:
        raise ValueError(f"--timeout: expected a positive number of seconds, got {args.timeout}")
    workload = workload_from_args(args.op, args.shape, args.dtype, args.attr,
                                  "auto" if args.auto else "template")
    db = RecordDB(args.db)
    history: list = []
    bar = _Progress(args.trials, str(workload))

    def progress(done, failed, gflops, seconds):
        history.append((done, gflops, seconds))
        bar.update(done, failed, gflops, seconds)

    try:
        best = tune(workload, trials=args.trials, db=db, timeout=args.timeout,
                    target=args.target, resume=args.resume, seed=args.seed,
                    progress=progress)
    finally:
        bar.close()
    if best is None:
        print(f"no configuration of {workload} ran successfully", file=sys.stderr)
        return 1
    rate = f", {best['gflops']:.1f} GFLOP/s" if best.get("gflops") else ""
    print(f"best of {workload}: {best['seconds'] * 1e3:.3f} ms{rate}  config {best['config']}")
    print(f"records: {db.path}")
    if args.plot:
        _plot(history, args.plot, str(workload))
    return 0


def run_bench(args) -> int:
    from .bench import bench
    if args.rounds < 1:
        raise ValueError(f"--rounds: expected a positive number, got {args.rounds}")
    workload = workload_from_args(args.op, args.shape, args.dtype, args.attr)
    result = bench(workload, rounds=args.rounds)
    ours = result["tensordsl"]
    if "error" in ours:
        raise ValueError(f"bench: our kernel failed: {ours['error']}")
    print(f"{workload}")
    print(f"  tensordsl  {ours['seconds'] * 1e3:9.3f} ms")
    for name, r in result.items():
        if name == "tensordsl":
            continue
        if "error" in r:
            print(f"  {name:9s}  not run: {r['error']}")
        else:
            print(f"  {name:9s}  {r['seconds'] * 1e3:9.3f} ms   ratio {name}/tensordsl "
                  f"{r['seconds'] / ours['seconds']:.2f}")
    if len(result) == 1:
        print("  (no reference library for this operator)")
    return 0


def run_records(args) -> int:
    from .records import RecordDB
    if args.records_command is None:
        raise ValueError("records: expected one of list, best, export, import")
    db = RecordDB(args.db)
    if args.records_command == "list":
        for workload, target, n, best in db.workloads():
            shown = f"{best * 1e3:.3f} ms" if best is not None else "-"
            print(f"{target}\t{n} trials\tbest {shown}\t{workload}")
    elif args.records_command == "best":
        for workload, target, _, _ in db.workloads():
            rec = db.best(workload, target)
            if rec is not None:
                print(f"{target}\t{rec['seconds'] * 1e3:.3f} ms\t{rec['config']}\t{workload}")
    elif args.records_command == "export":
        if args.out:
            with open(args.out, "w") as f:
                n = db.export_jsonl(f)
            print(f"exported {n} records to {args.out}", file=sys.stderr)
        else:
            db.export_jsonl(sys.stdout)
    else:
        try:
            with open(args.file) as f:
                added, skipped = db.import_jsonl(f)
        except FileNotFoundError:
            raise ValueError(f"records import: no such file: {args.file!r}") from None
        print(f"imported {added} records ({skipped} already present)")
    return 0


class _Progress:
    """A live line: trials done, failures, best so far (rich when installed)."""

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label
        self.rich = None
        try:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self.rich = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 transient=False)
            self.task = self.rich.add_task(f"tune {label}", total=total, info="")
            self.rich.start()
        except ImportError:
            self.rich = None

    def update(self, done, failed, gflops, seconds):
        best = (f"best {gflops:.1f} GFLOP/s" if gflops else
                f"best {seconds * 1e3:.3f} ms" if seconds else "best -")
        info = f"failed {failed}  {best}"
        if self.rich is not None:
            self.rich.update(self.task, completed=done, info=info)
        else:
            print(f"\rtune {self.label}: {done}/{self.total}  {info}", end="", file=sys.stderr,
                  flush=True)

    def close(self):
        if self.rich is not None:
            self.rich.stop()
        else:
            print(file=sys.stderr)


def _plot(history, path: str, label: str):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib (pip install '.[tune]')") from None
    xs, ys, best = [], [], None
    use_gflops = any(g for _, g, _ in history)
    for done, gflops, seconds in history:
        value = gflops if use_gflops else (1e3 * seconds if seconds else None)
        if value is not None:
            best = value if best is None else (max(best, value) if use_gflops
                                              else min(best, value))
        xs.append(done)
        ys.append(best)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, drawstyle="steps-post")
    ax.set_xlabel("trials")
    ax.set_ylabel("best GFLOP/s" if use_gflops else "best time (ms)")
    ax.set_title(f"tensordsl tune {label}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
