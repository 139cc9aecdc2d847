"""``td.autotune.collect()``: the workloads of the ``td.ops`` calls a block of code runs.

    with td.autotune.collect() as kernels:
        model(x).backward()                   # any td.ops calls, forward and gradients
    td.autotune.tune_tasks(kernels, budget=200)

Each kernel that runs — a ``td.ops`` operator or a gradient (``td.ops.<op>_backward``, one
workload per operand, ``wrt=NAME``) — is noted as the ``Workload`` its records are filed
under, each key once, in first-run order: tuning them gives the records that code then
compiles with (``tensordsl tune-model`` finds a training step's kernels this way).
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def collect():
    """Within the block, the ``Workload`` of every ``td.ops`` kernel that runs (forward
    and backward) is appended to the yielded list, each key once, in first-run order."""
    from tensordsl import ops, ops_backward
    from .workload import Workload
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
