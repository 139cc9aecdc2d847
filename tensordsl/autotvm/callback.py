"""Callbacks of ``Tuner.tune`` (TVM ``autotvm.callback``)."""
from __future__ import annotations

import sys
from pathlib import Path

from .record import encode


def log_to_file(file_out):
    """Append each measured configuration to the log ``file_out`` (a path or an open
    file), one JSON line each (``record.py``)."""
    def callback(tuner, inputs, results):
        lines = "".join(encode(i, r) + "\n" for i, r in zip(inputs, results))
        if isinstance(file_out, (str, Path)):
            with open(file_out, "a") as f:
                f.write(lines)
        else:
            file_out.write(lines)
            file_out.flush()
    return callback


def progress_bar(total: int, prefix: str = "", si_prefix: str = "G"):
    """Print the trials done and the best GFLOPS so far after each batch."""
    done = [0]

    def callback(tuner, inputs, results):
        done[0] += len(inputs)
        sys.stdout.write(f"\r{prefix}Current/Best: {tuner.best_flops / 1e9:7.2f} GFLOPS | "
                         f"Progress: ({done[0]}/{total})")
        sys.stdout.flush()
        if done[0] >= total:
            sys.stdout.write("\n")
    return callback
