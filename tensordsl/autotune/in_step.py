"""The step check: tuned kernels timed inside the program that runs them.

A trial times a kernel alone, hot: the same call again and again on the same arrays.
Inside a training step the kernel runs once between its neighbours, on arrays they have
just written and with the caches they leave, and a configuration that won alone can lose
there (measured in the MLP step: a weight gradient 43 us with its defaults, 68 us with
the configuration that was fastest alone). So after tuning, ``check_in_step`` runs the
program built with the templates' defaults and the one built with the records, one after
the other, each kernel timed in its place, and for every tuned workload files both
times as records of one run ``.../in-step`` (``records.IN_STEP_RUN``): a build then
takes whichever configuration was faster in the program (``records.served``), until the
workload is tuned again.
"""
from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass

from .records import IN_STEP_RUN, RecordDB, canonical, record_target

ROUNDS = 200   # runs of each program; a kernel's time is its median over them
WARMUP = 5


@dataclass
class Checked:
    """One workload's kernels inside the program: seconds per run (summed over the
    kernels that use its records) with the defaults and with the tuned configuration."""
    workload: object
    kernels: int
    default_seconds: float
    tuned_seconds: float

    @property
    def keeps_tuned(self) -> bool:
        return self.tuned_seconds < self.default_seconds


def check_in_step(defaults, tuned, arrays, db: RecordDB, target: str = "llvm",
                  rounds: int = ROUNDS) -> list[Checked]:
    """Time the kernels of ``defaults`` and ``tuned`` (``Program``s of one graph, built
    without records and with ``db``'s) on the inputs ``arrays``, alternately, ``rounds``
    runs each; file the times of every workload ``db`` has a tuned configuration for
    (see the module docstring). Returns what was compared, largest first."""
    _check_same_kernels(defaults, tuned)
    target = record_target(target)
    uses: dict = {}   # workload key -> (workload, its tuned record, kernel indices)
    for k, kernel in enumerate(tuned.kernels):
        w = kernel.workload
        if w is None:
            continue
        if w.key not in uses:
            rec = db.best(w.key, target, w.template)
            if rec is None or canonical(rec["config"]) == canonical(w.default_config()):
                uses[w.key] = None      # nothing tuned here to choose between
                continue
            uses[w.key] = (w, rec, [])
        if uses[w.key] is not None:
            uses[w.key][2].append(k)
    uses = {key: use for key, use in uses.items() if use is not None}
    if not uses:
        return []
    medians = _kernel_medians(defaults, tuned, arrays, rounds)
    checked = [Checked(w, len(ks), sum(medians["defaults"][k] for k in ks),
                       sum(medians["tuned"][k] for k in ks))
               for w, _, ks in uses.values()]
    run, created = uuid.uuid4().hex[:12] + IN_STEP_RUN, time.time()
    for c, (w, rec, _) in zip(checked, uses.values()):
        name = rec.get("name") or repr(w)
        db.add(w.key, target, w.template, w.default_config(), "ok", c.default_seconds,
               run=run, created=created, name=name)
        db.add(w.key, target, w.template, rec["config"], "ok", c.tuned_seconds, run=run,
               created=created, name=name)
    return sorted(checked, key=lambda c: -c.default_seconds)


def _kernel_medians(defaults, tuned, arrays, rounds: int) -> dict:
    """{"defaults"|"tuned": each kernel's median seconds in its place}, the two
    programs run alternately (each first in every other round)."""
    runs = {"defaults": defaults.timed_runs(*arrays), "tuned": tuned.timed_runs(*arrays)}
    samples: dict = {name: [] for name in runs}
    for r in range(WARMUP + rounds):
        for name in (("defaults", "tuned") if r % 2 == 0 else ("tuned", "defaults")):
            seconds = runs[name]()
            if r >= WARMUP:
                samples[name].append(seconds)
    return {name: [statistics.median(column) for column in zip(*rows)]
            for name, rows in samples.items()}


def _check_same_kernels(defaults, tuned):
    """The two programs must cut one graph the same way (kernel k of one is kernel k
    of the other, with the same arguments)."""
    from tensordsl.arith.simplify import const_int

    def outline(program):
        return [(k.writes[0].op.name, k.shapes,
                 [tuple(const_int(d) for d in t.shape) for t in k.reads])
                for k in program.kernels]
    if outline(defaults) != outline(tuned):
        raise ValueError("check_in_step: the two programs do not run the same kernels "
                         "(build both from one graph: with defaults_only() and with "
                         "apply_history_best(db))")


def time_programs(programs: dict, arrays, rounds: int = 40, calls: int = 5) -> dict:
    """{name: median seconds of one call} of each of ``programs`` ({name: Program}) on
    ``arrays``, timed alternately in chunks of ``calls`` calls."""
    order = list(programs)
    times: dict = {name: [] for name in order}
    for program in programs.values():
        program(*arrays)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            for _ in range(calls):
                programs[name](*arrays)
            times[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(t) for name, t in times.items()}
