"""Autotuning: search spaces from the templates, measurement in isolated workers, and a
SQLite database of every trial that ``td.build``/``td.ops`` consult.

    from tensordsl import autotune
    best = autotune.tune(autotune.Workload("matmul", [("array", (1024, 1024), "float32"),
                                                      ("array", (1024, 1024), "float32")]))
    with autotune.apply_history_best("my.sqlite"):
        c = td.ops.matmul(a, b)      # the best record of that database
    autotune.tune(autotune.SparseWorkload("spmm", autotune.Matrix.file("a.mtx"), [(n, 64)]))
"""
from .history import apply_history_best, best_config, defaults_only
from .measure import Runner
from .records import RecordDB
from .sparse_workload import Matrix, SparseWorkload
from .tuner import tune
from .workload import Workload

__all__ = ["Matrix", "RecordDB", "Runner", "SparseWorkload", "Workload", "apply_history_best",
           "best_config", "defaults_only", "tune"]
