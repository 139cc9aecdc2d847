"""Autotuning: search spaces from the templates, measurement in isolated workers, and a
SQLite database of every trial that ``td.build``/``td.ops`` consult.

    from tensordsl import autotune
    best = autotune.tune(autotune.Workload("matmul", [("array", (1024, 1024), "float32"),
                                                      ("array", (1024, 1024), "float32")]))
    with autotune.apply_history_best("my.sqlite"):
        c = td.ops.matmul(a, b)      # the best record of that database
    autotune.tune(autotune.SparseWorkload("spmm", autotune.Matrix.file("a.mtx"), [(n, 64)]))
    with autotune.collect() as kernels:     # the td.ops calls a block runs
        model_step(x, y)
    autotune.tune_tasks(kernels, budget=200)   # one budget, spent by expected gain
"""
from .collect import collect
from .history import apply_history_best, best_config, defaults_only
from .measure import Runner
from .records import RecordDB
from .sparse_workload import Matrix, SparseWorkload
from .scheduler import tune_tasks
from .tuner import tune
from .workload import Workload

__all__ = ["Matrix", "RecordDB", "Runner", "SparseWorkload", "Workload", "apply_history_best",
           "best_config", "collect", "defaults_only", "tune", "tune_tasks"]
