"""The ``tensordsl`` command line.

    tensordsl demo                        define, compile and time kernels beside numpy
    tensordsl show FILE.py:FUNC [--shape ...] [--ir|--llvm|--asm] [--after PASS]
                                          print a schedule's IR or code: FUNC(*sizes)
                                          returns its tensors or (schedule, tensors)
    tensordsl show OP --shape ... [--ir|--llvm|--asm]
                                          the same for an operator as td.ops builds it
    tensordsl show OP --shape ... --cuda|--ptx [--arch sm_80]
                                          the operator's GPU template: CUDA C or PTX
    tensordsl tune OP --shape ... [--trials N] [--timeout S] [--db PATH] [--resume]
                                          search OP's schedule space (autotune/)
    tensordsl tune spmm --matrix A.mtx | --random ROWS,COLS,DENSITY[,SEED] --shape F
                                          a sparse operator on that matrix
    tensordsl export OP|FILE.py:FUNC --shape ... -o DIR [--name NAME] [--cuda [--arch sm_80]]
                                          a C library and header: DIR/libNAME.so, .a, .h
    tensordsl records list|best|export|import|delete
    tensordsl bench OP --shape ...        ours beside numpy / PyTorch
    tensordsl train mlp|cnn [--epochs N] [--batch-size B] [--lr LR] [--plot F.png]
                            [--save F.npz]  train on scikit-learn's digits (nn/)
    tensordsl tune-model mlp|cnn [--trials N]
                                          tune every kernel of a training step
"""
from __future__ import annotations

import argparse
import sys

from .errors import BuildError


def _user_hand_schedule(args):
    """(schedule, tensors) when ``args.target`` is a user function that returns its own
    schedule, else None (userfile.py: the contract of user files)."""
    from .autotune.cli import parse_attrs, user_arguments
    from .autotune.userfile import UserFunction, is_user_spec
    if not is_user_spec(args.target) or args.grad:
        return None
    call = UserFunction(args.target, user_arguments(args.shape, args.args),
                        parse_attrs(args.attr))
    schedule, tensors = call.call()
    return None if schedule is None else (schedule, tensors)


def _workload(args):
    """The workload ``show`` means: an operator on ``--shape``s, or a user's compute."""
    from .autotune.cli import workload_from_args
    return workload_from_args(args.target, args.shape, args.dtype, args.attr,
                              values=args.args, grad=args.grad, head=args.head)


def _show(args) -> int:
    import tensordsl as td
    if args.cuda or args.ptx:
        return _show_cuda(args)
    hand = _user_hand_schedule(args)
    if hand is not None:
        s, tensors = hand
    else:
        # an operator on shapes, or a user's compute: the schedule a build would use,
        # i.e. the best tuning record or the template's defaults
        workload = _workload(args)
        s, tensors = workload.schedule(workload.tuned_config())
    if args.llvm or args.asm:
        f = td.build(s, tensors)
        print(f.get_source("asm" if args.asm else "ll"))
    else:
        print(td.lower(s, tensors, stop_after=args.after))
    return 0


def _show_cuda(args) -> int:
    """The GPU side: an operator scheduled by its template in schedules/cuda, or a
    file's (schedule, tensors) bound to GPU indices."""
    import tensordsl as td
    s, tensors = _cuda_schedule(args)
    target = f"cuda -arch={args.arch}" if args.arch else "cuda"
    if args.after:
        print(td.lower(s, tensors, stop_after=args.after, target=target))
        return 0
    f = td.build(s, tensors, target=target)
    print(f.get_source("ptx" if args.ptx else "cuda"))
    return 0


def _export(args) -> int:
    """The kernel ``show`` would print, written as a C library (``tensordsl/export``)."""
    import re

    import tensordsl as td
    from .export.library import write_library
    name = args.name or re.sub(r"\W", "_", args.target.rpartition(":")[2].removesuffix(".py"))
    if not name.isidentifier():
        raise ValueError(f"--name: expected a C identifier, got {name!r}")
    if args.cuda:
        s, tensors = _cuda_schedule(args)
        target = f"cuda -arch={args.arch}" if args.arch else "cuda"
    else:
        hand = _user_hand_schedule(args)
        if hand is None:
            workload = _workload(args)
            hand = workload.schedule(workload.tuned_config())
        (s, tensors), target = hand, "llvm"
    f = td.build(s, tensors, target=target, name=name)
    kinds = ["a"] if args.cuda else ["so", "a"]
    for path in write_library([(name, f)], args.output, f"lib{name}", kinds):
        print(path)
    return 0


def _cuda_schedule(args):
    """(schedule, tensors) on the GPU: a file's own schedule bound to GPU indices, or an
    operator scheduled by its template in schedules/cuda."""
    hand = _user_hand_schedule(args)
    if hand is not None:
        return hand
    from schedules.cuda import schedule_for
    workload = _workload(args)
    if workload.user:
        raise ValueError(f"--cuda/--ptx: {workload!r} returns tensors only; return a "
                         "(schedule, tensors) pair bound to GPU blocks and threads")
    placeholders, out = workload.define("cuda")
    return schedule_for(workload.op, out, workload.attrs), placeholders + [out]


def _demo() -> int:
    """Run the demo in a process where OpenBLAS is free of this machine's slowing
    variables (they are read when numpy loads, so only a fresh process can drop them)."""
    import os
    import subprocess
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return subprocess.call([sys.executable, "-m", "tensordsl.demo"], env=env)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tensordsl", description="tensordsl kernel compiler")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="define, compile and time kernels beside numpy")
    show = sub.add_parser("show", help="print the IR or generated code of a schedule")
    show.add_argument("target", help="path/to/file.py:function, called with the --shape "
                                     "sizes, returning its tensors or (schedule, tensors); "
                                     "or, with --shape, an operator (matmul, softmax, ...)")
    from .autotune import cli as tune_cli
    tune_cli.add_workload_arguments(show)
    kind = show.add_mutually_exclusive_group()
    kind.add_argument("--ir", action="store_true", help="lowered loop nest (default)")
    kind.add_argument("--llvm", action="store_true", help="LLVM IR")
    kind.add_argument("--asm", action="store_true", help="host assembly")
    kind.add_argument("--cuda", action="store_true", help="CUDA C of the GPU template")
    kind.add_argument("--ptx", action="store_true", help="PTX of the GPU template")
    show.add_argument("--arch", help="GPU architecture with --cuda/--ptx (default: the "
                                     "GPU's, else sm_90)")
    from .lower.pipeline import PASS_NAMES
    show.add_argument("--after", choices=PASS_NAMES, help="show the IR after this pass")
    export = sub.add_parser(
        "export", help="write a kernel as a C library (.so, .a) and header",
        description="Build OP on --shape (or FILE.py:FUNC) as td.build would, with its best "
                    "tuning record, and write DIR/libNAME.so, DIR/libNAME.a and "
                    "DIR/libNAME.h: the C function tensordsl_NAME (ABI in the header). "
                    "With --cuda: the GPU template's CUBIN and a driver-API launcher, as a "
                    "static archive.")
    export.add_argument("target", help="an operator (matmul, softmax, ...) with --shape, or "
                                       "path/to/file.py:function")
    tune_cli.add_workload_arguments(export)
    export.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="the folder to write to (created if missing)")
    export.add_argument("--name", help="the kernel's name: tensordsl_NAME in C (default: "
                                       "the operator's or the function's)")
    export.add_argument("--cuda", action="store_true", help="export the GPU kernel")
    export.add_argument("--arch", help="GPU architecture with --cuda (default: the GPU's, "
                                       "else sm_90)")
    tune_cli.add_parsers(sub)
    from .nn import cli as nn_cli
    nn_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if args.command == "demo":
        return _demo()
    if args.command == "show":
        try:
            return _show(args)
        except ValueError as err:
            print(f"tensordsl show: error: {err}", file=sys.stderr)
            return 2
    if args.command == "export":
        try:
            return _export(args)
        except (ValueError, BuildError) as err:
            print(f"tensordsl export: error: {err}", file=sys.stderr)
            return 2
    if args.command in ("tune", "records", "bench", "train", "tune-model", "tune-layers"):
        run = {"tune": tune_cli.run_tune, "records": tune_cli.run_records,
               "bench": tune_cli.run_bench, "train": nn_cli.run_train,
               "tune-model": nn_cli.run_tune_model,
               "tune-layers": nn_cli.run_tune_layers}[args.command]
        try:
            return run(args)
        except (ValueError, ConnectionError) as err:   # (a Dask scheduler that went away)
            print(f"tensordsl {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"tensordsl {args.command}: interrupted (every finished trial is stored)",
                  file=sys.stderr)
            return 130
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
