"""TVM's AutoTVM, for templates written the way its tutorials write them:

    @autotvm.template("tutorial/matmul")
    def matmul(N, L, M, dtype):
        ...
        cfg = autotvm.get_config()
        cfg.define_split("tile_y", y, num_outputs=2)
        yo, yi = cfg["tile_y"].apply(s, C, y)
        ...
        return s, [A, B, C]

    task = autotvm.task.create("tutorial/matmul", args=(512, 512, 512, "float32"))
    tuner = autotvm.tuner.RandomTuner(task)
    tuner.tune(n_trial=10, measure_option=autotvm.measure_option(
        builder="local", runner=autotvm.LocalRunner(number=5)),
        callbacks=[autotvm.callback.log_to_file("matmul.log")])
    with autotvm.apply_history_best("matmul.log"):
        s, args = matmul(512, 512, 512, "float32")

Configurations compile in this process and run in a worker process with a time limit,
checked against the fallback configuration (``measure.py``). The project's own tuner
(``tensordsl tune``, ``td.autotune``) is the one the CLI and ``td.ops`` use; this is
for porting AutoTVM programs.
"""
from . import callback, record, task, tuner
from .measure import (LocalBuilder, LocalRunner, MeasureErrorNo, MeasureInput, MeasureResult,
                      measure_option)
from .space import ConfigSpace
from .task import apply_history_best, get_config, template

__all__ = ["callback", "record", "task", "tuner", "LocalBuilder", "LocalRunner",
           "MeasureErrorNo", "MeasureInput", "MeasureResult", "measure_option",
           "ConfigSpace", "apply_history_best", "get_config", "template"]
