"""Measuring an AutoTVM task's configurations (``autotvm.measure_option``,
``LocalBuilder``, ``LocalRunner``).

This process instantiates and compiles each configuration (the template is a function
of the user's script, which no other process can import); compiling runs nothing. The
compiled kernel is run and timed in a separate worker process with a time limit
(``tensordsl/autotune/worker.py``), its outputs checked against the fallback
configuration's, so a candidate that crashes, hangs or computes wrongly is a result,
never the end of the tuner.
"""
from __future__ import annotations

import base64
import pickle
import time
from dataclasses import dataclass, field

from ..autotune.measure import Runner
from ..ir.nodes import Call
from ..ir.visitor import post_order
from .space import ConfigSpace


class MeasureErrorNo:
    """TVM's error numbers of a ``MeasureResult``."""
    NO_ERROR = 0
    INSTANTIATION_ERROR = 1
    COMPILE_HOST = 2
    COMPILE_DEVICE = 3
    RUNTIME_DEVICE = 4
    WRONG_ANSWER = 5
    BUILD_TIMEOUT = 6
    RUN_TIMEOUT = 7
    UNKNOWN_ERROR = 8


@dataclass
class MeasureInput:
    target: str
    task: object
    config: object


@dataclass
class MeasureResult:
    costs: tuple              # seconds per run (or the error, for a failed one)
    error_no: int
    all_cost: float           # seconds spent building and measuring
    timestamp: float
    error: str = field(default="", repr=False)


class LocalBuilder:
    """Compiles in this process, without a time limit (``timeout`` and ``n_parallel``
    are accepted for TVM's sake)."""

    def __init__(self, timeout: float = 10, n_parallel=None, build_func="default"):
        self.timeout = timeout


class LocalRunner:
    """Runs each configuration ``repeat`` times, each the mean of ``number`` runs, in a
    worker process given ``timeout`` seconds a configuration."""

    def __init__(self, timeout: float = 10, number: int = 4, repeat: int = 3,
                 min_repeat_ms: int = 0, cooldown_interval: float = 0.0,
                 enable_cpu_cache_flush: bool = False):
        for name, value in (("number", number), ("repeat", repeat)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LocalRunner: {name} must be a positive int, got {value!r}")
        self.timeout, self.number, self.repeat = timeout, number, repeat


def measure_option(builder="local", runner="local"):
    """``{"builder": ..., "runner": ...}`` (``"local"`` or the objects)."""
    builder = LocalBuilder() if builder == "local" else builder
    runner = LocalRunner() if runner == "local" else runner
    if not isinstance(builder, LocalBuilder) or not isinstance(runner, LocalRunner):
        raise ValueError("measure_option: builder and runner must be 'local', "
                         "LocalBuilder(...) and LocalRunner(...) (no RPC)")
    return {"builder": builder, "runner": runner}


class Measurer:
    """Measures configurations of one task; the worker stays up between them."""

    def __init__(self, task, option: dict):
        self.task, self.runner_option = task, option["runner"]
        self.worker = Runner(timeout=self.runner_option.timeout)
        self.args = None
        self.reference = self._compile(ConfigSpace())[0]   # the fallback
        # run once on its own, with room to spare, so that a fallback that fails is
        # the task's error rather than every candidate's
        self.worker.timeout = max(60.0, 10 * self.runner_option.timeout)
        reply = self.worker.exchange(self._request(self.reference))
        self.worker.timeout = self.runner_option.timeout
        if reply["status"] != "ok":
            self.close()
            raise RuntimeError(f"autotvm: the task's fallback configuration (the "
                               f"reference each candidate is checked against) failed: "
                               f"{reply['status']}: {reply.get('error', '')}")

    def _compile(self, config):
        """(kernel as text, argument shapes) of ``config``: (None, error) on failure."""
        from ..build import compile_func
        from ..te.tensor import PlaceholderOp
        s, args = self.task.instantiate(config)
        func, binary, target = compile_func(s, args, self.task.target)
        if any(isinstance(x, Call) and x.name == "call_packed" for x in post_order(func.body)):
            raise ValueError("the kernel calls a td.register_func function, which the "
                             "measuring worker process does not have")
        shapes = [[[int(d.value) for d in t.shape], t.dtype,
                   not isinstance(t.op, PlaceholderOp)] for t in args]
        if self.args is None:
            self.args = shapes
        return base64.b64encode(pickle.dumps((func, binary, target))).decode(), shapes

    def measure(self, config) -> MeasureResult:
        start = time.time()
        try:
            kernel, _ = self._compile(config)
        except Exception as err:      # a configuration the template or compiler refuses
            return self._failed(MeasureErrorNo.COMPILE_HOST, err, start)
        reply = self.worker.exchange(self._request(kernel))
        if reply["status"] == "ok":
            return MeasureResult(tuple(reply["costs"]), MeasureErrorNo.NO_ERROR,
                                 time.time() - start, time.time())
        error_no = {"wrong": MeasureErrorNo.WRONG_ANSWER,
                    "timeout": MeasureErrorNo.RUN_TIMEOUT}.get(reply["status"],
                                                               MeasureErrorNo.RUNTIME_DEVICE)
        return self._failed(error_no, reply.get("error", reply["status"]), start)

    def _request(self, kernel: str) -> dict:
        return {"kind": "kernel", "kernel": kernel, "reference": self.reference,
                "key": self.task.key, "args": self.args, "number": self.runner_option.number,
                "repeat": self.runner_option.repeat}

    @staticmethod
    def _failed(error_no: int, err, start: float) -> MeasureResult:
        text = f"{type(err).__name__}: {err}" if isinstance(err, Exception) else str(err)
        return MeasureResult((text,), error_no, time.time() - start, time.time(), text)

    def close(self):
        self.worker.close()
