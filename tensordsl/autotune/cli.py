"""``tensordsl tune``, ``bench`` and ``records``: argument parsing and output (a user's
file.py:function and its arguments: ``userfile.py``)."""
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


def _literal(text: str):
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text   # a bare word: float32, nchw


def parse_attrs(attrs: list[str]) -> dict:
    """``--attr name=value`` (repeatable) as a dict of Python literals."""
    parsed = {}
    for a in attrs:
        name, sep, value = a.partition("=")
        if not sep:
            raise ValueError(f"--attr: expected name=value, got {a!r}")
        parsed[name] = _literal(value)
    return parsed


def user_arguments(shapes: list[str], values: list[str]) -> list:
    """A user function's positional arguments: the sizes of every ``--shape`` in order,
    then the values of every ``--args``."""
    positional = [d for s in shapes for d in parse_shape(s)]
    return positional + [_literal(v.strip()) for text in values for v in text.split(",")]


def workload_from_args(op: str, shapes: list[str], dtype: str, attrs: list[str],
                       scheduler: str = "template", values: list[str] = (),
                       grad: str | None = None, head: bool = False):
    """An operator: ``--shape`` once per input array (for matmul, one ``M,N,K`` also
    works). A user's ``file.py:function``: called with ``user_arguments`` (the contract
    of ``userfile.py``); ``--attr``s are keywords of both."""
    from .userfile import is_user_spec
    from .workload import Workload
    parsed = parse_attrs(attrs)
    if is_user_spec(op):
        if dtype != "float32":
            raise ValueError("--dtype: a user function chooses its own dtypes; pass one as "
                             f"an argument instead (--args {dtype})")
        return Workload(op, [("value", v) for v in user_arguments(shapes, values)], parsed,
                        scheduler, grad=grad, head=head)
    if grad is not None or head:
        raise ValueError(f"--grad: only for a user's file.py:function; the gradients of {op} "
                         f"are the operator {op}_backward (--attr wrt=NAME)")
    if values:
        raise ValueError(f"--args: only for a user's file.py:function; {op} takes --shape "
                         "and --attr")
    if not shapes:
        raise ValueError("--shape: give the shape of each input array (at least one)")
    dims = [parse_shape(s) for s in shapes]
    forward = op[:-len("_backward")] if op.endswith("_backward") else op
    if forward in MATMUL_LIKE and len(dims) == 1 and len(dims[0]) == 3:
        m, n, k = dims[0]
        dims = [(m, k), (n, k)] if forward == "dense" else [(m, k), (k, n)]
        if forward != op:
            dims.append((m, n))     # the cotangent of the product
    w = Workload(op, [("array", d, dtype) for d in dims], parsed, scheduler)
    try:
        w.define()  # refuse a bad operator or mismatched shapes now, in the operator's words
    except TypeError as err:
        raise ValueError(f"{op}: {err} (one --shape per input array)") from None
    return w


def parse_random(text: str) -> tuple[int, int, float, int]:
    """``--random ROWS,COLS,DENSITY[,SEED]``."""
    expected = (f"--random: expected ROWS,COLS,DENSITY[,SEED] like 4096,4096,0.01 "
                f"(sizes and seed integers, 0 < DENSITY <= 1), got {text!r}")
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (3, 4):
        raise ValueError(expected)
    try:
        rows, cols = int(parts[0]), int(parts[1])
        density = float(parts[2])
        seed = int(parts[3]) if len(parts) == 4 else 0
    except ValueError:
        raise ValueError(expected) from None
    if rows <= 0 or cols <= 0 or not 0 < density <= 1 or seed < 0:
        raise ValueError(expected)
    return rows, cols, density, seed


def sparse_dense_shapes(op: str, matrix_shape, shapes: list[str]) -> list[tuple]:
    """The dense operands' shapes of sparse operator ``op`` on a matrix of
    ``matrix_shape``: ``--shape F`` (the dense width of spmm and sddmm), or ``--shape``
    once per dense operand, in order, checked against the matrix."""
    from .sparse_workload import DENSE_OPERANDS
    m, n = matrix_shape
    names = DENSE_OPERANDS[op]
    dims = [parse_shape(s) for s in shapes]
    wide = op in ("spmm", "sddmm")
    if wide and not dims:
        raise ValueError(f"--shape: {op} needs the width of its dense operands (--shape 64) "
                         f"or their shapes (one --shape per operand: {', '.join(names)})")
    width = dims[0][-1] if wide else None
    expected = {"spmv": [(n,)], "spmm": [(n, width)], "sddmm": [(m, width), (n, width)],
                "sparse_mul": [(m, n)], "sparse_softmax": []}[op]
    if not dims or (wide and len(dims) == 1 and len(dims[0]) == 1):
        return expected
    if len(dims) != len(expected):
        raise ValueError(f"--shape: {op} takes {len(expected)} dense operand(s) "
                         f"({', '.join(names) or 'none'}), got {len(dims)} --shape")
    for name, want, got in zip(names, expected, dims):
        if got != want:
            raise ValueError(f"--shape: {op}'s {name} must be {'x'.join(map(str, want))} "
                             f"on a {m}x{n} matrix, got {'x'.join(map(str, got))}")
    return expected


def sparse_workload_from_args(args):
    """``tune spmm --matrix a.mtx | --random ROWS,COLS,DENSITY[,SEED] [--power-law]
    --shape F``: the operator on that matrix (``sparse_workload.py``)."""
    from .sparse_workload import TUNABLE, Matrix, SparseWorkload
    if args.op not in TUNABLE:
        given = "--matrix" if args.matrix else "--random" if args.random else "--power-law"
        raise ValueError(f"{given}: only for the sparse operators ({', '.join(TUNABLE)}); "
                         f"{args.op} takes --shape")
    if args.matrix and args.random:
        raise ValueError("--matrix and --random: give one matrix, not both")
    if not (args.matrix or args.random):
        raise ValueError(f"--matrix or --random: {args.op} is tuned on a sparse matrix: a "
                         "Matrix Market file (--matrix a.mtx) or a random one (--random "
                         "ROWS,COLS,DENSITY[,SEED])")
    if args.power_law and not args.random:
        raise ValueError("--power-law: shapes a --random matrix's row lengths; a --matrix "
                         "file has its own")
    if args.auto or args.grad or args.args or args.attr:
        extra = "--auto" if args.auto else "--grad" if args.grad else \
            "--args" if args.args else "--attr"
        raise ValueError(f"{extra}: not for the sparse operators ({args.op} takes --matrix "
                         "or --random, --shape and --dtype)")
    if args.dtype not in ("float32", "float64"):
        raise ValueError(f"--dtype: the sparse operators are tuned in float32 or float64, "
                         f"got {args.dtype!r}")
    matrix = Matrix.file(args.matrix) if args.matrix else \
        Matrix.random(*parse_random(args.random), power_law=args.power_law)
    S = matrix.load(args.dtype)
    dense = sparse_dense_shapes(args.op, S.shape, args.shape)
    return SparseWorkload(args.op, matrix, dense, args.dtype, S.shape, S.nnz)


def add_workload_arguments(parser, what: str = "an operator"):
    """--shape, --args, --dtype, --attr: the same for tune, bench and show."""
    parser.add_argument("--shape", action="append", default=[], metavar="DIMS",
                        help="an input's shape, e.g. 1024,1024 (repeat per input; matmul "
                             "also takes one M,N,K); for file.py:function, sizes passed "
                             "as its positional arguments, every --shape in order")
    parser.add_argument("--args", action="append", default=[], metavar="VALUES",
                        help="for file.py:function, more positional arguments after the "
                             "sizes, comma-separated Python literals (e.g. float32,0.5)")
    parser.add_argument("--dtype", default="float32",
                        help=f"element type of {what}'s inputs (default float32)")
    parser.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                        help="an operator attribute (a keyword argument of "
                             "file.py:function), e.g. padding=1 (repeatable); a gradient "
                             "operator (conv2d_nchw_backward) names its operand with "
                             "wrt=NAME and takes the cotangent's shape last")
    parser.add_argument("--grad", metavar="NAME",
                        help="for file.py:function: its gradient td.grad(out, NAME) with "
                             "respect to the input placeholder NAME, instead of the output")
    parser.add_argument("--head", action="store_true",
                        help="with --grad: the cotangent is an input (td.vjp), not ones")


def add_parsers(sub):
    tune = sub.add_parser(
        "tune", help="search the schedule space of an operator, recording every trial",
        description="Measure configurations of OP's template (or, for a user's compute, "
                    "its SPACE) in an isolated worker, each trial committed to the record "
                    "database as it finishes. td.ops and td.build use the best record.")
    tune.add_argument("op", help="an operator of kernels/ (matmul, conv2d_nchw, softmax, ...), "
                                 "its gradient (conv2d_nchw_backward --attr wrt=x), or "
                                 "path/to/file.py:function (--grad NAME: its gradient)")
    add_workload_arguments(tune)
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
    add_confirm_option(tune)
    tune.add_argument("--auto", action="store_true",
                      help="search the auto-scheduler's space (multi-level tiling derived "
                           "from the compute) instead of the operator's template")
    tune.add_argument("--plot", metavar="FILE.png",
                      help="draw best-so-far GFLOP/s (or time) against trials")
    tune.add_argument("--matrix", metavar="FILE.mtx",
                      help="a sparse operator's matrix: a Matrix Market file (--shape: the "
                           "dense operand's width, e.g. 64, for spmm and sddmm)")
    tune.add_argument("--random", metavar="ROWS,COLS,DENSITY[,SEED]",
                      help="a sparse operator's matrix: scipy.sparse.random's, seeded "
                           "(default seed 0), e.g. 4096,4096,0.01")
    tune.add_argument("--power-law", action="store_true",
                      help="with --random: row lengths from a power law (a few long rows: "
                           "a graph's degrees) instead of uniform positions")

    bench = sub.add_parser(
        "bench", help="time an operator beside the library a user would call",
        description="Our operator (as td.ops builds it: the best record or the defaults) "
                    "beside numpy or PyTorch, each in a fresh process, medians after "
                    "warm-up, ratio = their time / ours.")
    bench.add_argument("op", help="an operator of kernels/ (matmul, conv2d_nchw, ...) or "
                                  "path/to/file.py:function (timed alone)")
    add_workload_arguments(bench)
    bench.add_argument("--rounds", type=int, default=2,
                       help="alternating rounds; each system's best median is kept")

    records = sub.add_parser("records",
                             help="list, query, export, import and delete tuning records",
                             description="The tuning record database (SQLite).")
    rsub = records.add_subparsers(dest="records_command",
                                  metavar="{list,best,export,import,delete}")
    for name, text in (("list", "one line per workload: trials, failures, best time, name"),
                       ("best", "the best record of every workload"),
                       ("export", "all records as JSON lines (to stdout or --out)"),
                       ("import", "add records from a JSON-lines file"),
                       ("delete", "remove the records of a workload (or only its failed ones)")):
        p = rsub.add_parser(name, help=text, description=text)
        p.add_argument("--db", help="record database (default: records.sqlite in the cache "
                                    "directory)")
        if name == "export":
            p.add_argument("--out", help="file to write (default: standard output)")
            p.add_argument("--best", action="store_true",
                           help="only the fastest successful record of each workload and "
                                "template (what a build uses; the form to ship)")
        if name == "import":
            p.add_argument("file", help="a JSON-lines file written by records export")
        if name == "delete":
            p.add_argument("workload", help="as records list shows it: its name "
                                            "(my_op.py:bias_relu(512, 256), matmul(...)), "
                                            "file.py:function for all its shapes, or its id")
            p.add_argument("--failed", action="store_true",
                           help="delete only the failed records (error, wrong, timeout, "
                                "crash), keeping the measured ones")


def add_confirm_option(parser):
    """--confirm N: the confirming rounds after a search (``tuner.confirm``)."""
    from .tuner import CONFIRM_ROUNDS
    parser.add_argument("--confirm", type=int, default=CONFIRM_ROUNDS, metavar="N",
                        help="after the search, measure each kernel's default and fastest "
                             "configurations N more times side by side; a configuration "
                             "counts with its median time (default %(default)s; 0: not)")


def check_confirm(args):
    if args.confirm < 0:
        raise ValueError(f"--confirm: expected a number of rounds, 0 or more, "
                         f"got {args.confirm}")


def run_tune(args) -> int:
    from .records import RecordDB
    from .tuner import tune
    if args.trials < 1:
        raise ValueError(f"--trials: expected a positive number, got {args.trials}")
    if args.timeout <= 0:
        raise ValueError(f"--timeout: expected a positive number of seconds, got {args.timeout}")
    check_confirm(args)
    from .sparse_workload import TUNABLE
    if args.matrix or args.random or args.power_law or args.op in TUNABLE:
        workload = sparse_workload_from_args(args)
    else:
        workload = workload_from_args(args.op, args.shape, args.dtype, args.attr,
                                      "auto" if args.auto else "template", args.args,
                                      args.grad, args.head)
    db = RecordDB(args.db)
    history: list = []
    bar = _Progress(args.trials, str(workload))
    last = None

    def progress(report):
        nonlocal last
        best = report.best or {}
        history.append((report.done, best.get("gflops"), best.get("seconds")))
        bar.update(report)
        last = report

    try:
        best = tune(workload, trials=args.trials, db=db, timeout=args.timeout,
                    target=args.target, resume=args.resume, seed=args.seed,
                    progress=progress, confirm_rounds=args.confirm)
    finally:
        bar.close()
    if last is not None and last.failed:
        out = sys.stderr if best is None else sys.stdout
        print(f"{sum(last.counts.values())} trials this run: {last.outcomes()}", file=out)
        for status, (error, config) in last.first_errors.items():
            print(f"  first {status}: {error}  (config {config})", file=out)
    if best is None:
        print(f"no configuration of {workload} ran successfully; the first error of each "
              f"kind is above (all: tensordsl records export)", file=sys.stderr)
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
    workload = workload_from_args(args.op, args.shape, args.dtype, args.attr,
                                  values=args.args, grad=args.grad, head=args.head)
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
    from .records import RecordDB, default_path
    if args.records_command is None:
        raise ValueError("records: expected one of list, best, export, import, delete")
    if args.records_command != "import" and args.db is None and not default_path().exists():
        print(f"no records yet ({default_path()} does not exist; tensordsl tune creates it)",
              file=sys.stderr)
        return 0 if args.records_command != "delete" else 2
    # only import adds records: the others refuse a database that is not there
    db = RecordDB(args.db, create=args.records_command == "import")
    names = db.names()
    if args.records_command == "list":
        failed = db.failed_counts()
        for workload, target, n, best in db.workloads():
            shown = f"{best * 1e3:.3f} ms" if best is not None else "-"
            bad = failed.get((workload, target), 0)
            print(f"{target}\t{n} trials\tbest {shown}\t{bad} failed\t"
                  f"{_label(workload, names)}\t{_short_id(workload)}")
    elif args.records_command == "best":
        for workload, target, _, _ in db.workloads():
            rec = db.best(workload, target)
            if rec is not None:
                print(f"{target}\t{rec['seconds'] * 1e3:.3f} ms\t{rec['config']}\t"
                      f"{_label(workload, names)}\t{_short_id(workload)}")
    elif args.records_command == "export":
        if args.out:
            with open(args.out, "w") as f:
                n = db.export_jsonl(f, best_only=args.best)
            print(f"exported {n} records to {args.out}", file=sys.stderr)
        else:
            db.export_jsonl(sys.stdout, best_only=args.best)
    elif args.records_command == "delete":
        keys = sorted({w for w, _, _, _ in db.workloads()
                       if _matches(args.workload, w, _label(w, names))})
        if not keys:
            shown = "; ".join(sorted({_label(w, names) for w, _, _, _ in db.workloads()}))
            raise ValueError(f"records delete: no workload {args.workload!r} in {db.path} "
                             f"(there are: {shown or 'none'})")
        for key in keys:
            n = db.delete(key, failed_only=args.failed)
            what = "failed records" if args.failed else "records"
            print(f"deleted {n} {what} of {_label(key, names)}")
    else:
        try:
            with open(args.file) as f:
                added, skipped = db.import_jsonl(f)
        except FileNotFoundError:
            raise ValueError(f"records import: no such file: {args.file!r}") from None
        print(f"imported {added} records ({skipped} already present)")
    return 0


def _short_id(key: str) -> str:
    """A workload's id in ``records list``: the first 10 hex digits of its key's hash."""
    import hashlib
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def _label(key: str, names: dict) -> str:
    """The workload as a person reads it: the name its records carry, else the operator
    and its shapes from the key."""
    if key in names:
        return names[key]
    import json
    try:
        d = json.loads(key)
        shapes = ", ".join("x".join(map(str, a[1])) if a[0] == "array" else
                           f"csr {'x'.join(map(str, a[1]))} nnz={a[3]} {a[2]}"
                           if a[0] == "sparse" else repr(a[1]) for a in d["args"])
        return f"{d['op']}({shapes})"
    except (ValueError, KeyError, TypeError, IndexError):
        return key


def _matches(query: str, key: str, label: str) -> bool:
    """``records delete`` finds a workload by its key, id, name, or (for a user's file)
    ``file.py:function`` without the arguments."""
    return query in (key, _short_id(key), label) or label.startswith(query + "(")


class _Progress:
    """A live line: trials done, failures, best so far (rich when installed)."""

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label
        self.shown: set = set()    # outcomes whose first error was printed
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

    def update(self, report):
        best = report.best or {}
        shown = (f"best {best['gflops']:.1f} GFLOP/s" if best.get("gflops") else
                 f"best {best['seconds'] * 1e3:.3f} ms" if best.get("seconds") else "best -")
        info = f"{report.outcomes()}  {shown}"
        for status, (error, config) in report.first_errors.items():
            if status not in self.shown:   # the first failure of its kind, said at once
                self.shown.add(status)
                self.say(f"first {status}: {error}  (config {config})")
        if self.rich is not None:
            self.rich.update(self.task, completed=report.done, info=info)
        else:
            print(f"\rtune {self.label}: {report.done}/{self.total}  {info}", end="",
                  file=sys.stderr, flush=True)

    def say(self, line: str):
        if self.rich is not None:
            self.rich.console.print(line, markup=False, highlight=False)
        else:
            print(f"\r{line}", file=sys.stderr, flush=True)

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
