"""The search: which configurations of a template to measure, in what order.

    tune(workload, trials=200, db=RecordDB(...), timeout=30)

Trial 0 is the template's default configuration. Then a few random configurations, then an
evolutionary search: children are mutations (one knob changed) and crossovers of the
best configurations so far. With scikit-learn installed, a gradient-boosted tree model
fitted on the trials so far (knob values and features of the candidate's loop nest —
vector width, unrolled register tile, innermost serial extent, parallel extent, depth:
``features.py`` — to log time) ranks the children and only the most promising are
measured: the cost model steers, measurement decides.
scikit-learn's ``GradientBoostingRegressor`` is used because a few dozen points of
mixed integer knobs with sharp interactions (a tile that stops fitting in L1) is what
boosted trees fit well, it trains in milliseconds, and it is one well-kept dependency.

After the search the default and the three fastest configurations are measured four
times more, side by side (``confirm``), and a configuration counts with the median of
its measurements: the fastest single measurement of hundreds is often just the
luckiest. These are timed for ``CONFIRM_MIN_TIME`` each (a search's trial for 50 ms):
on a shared machine one measurement in a few comes out up to twice as slow (a busy
neighbour), and five short ones outvote two such where three long ones did not.

Every trial goes to the database the moment it is measured; ``resume=True`` counts the
trials already stored for the workload and never measures a configuration twice. Failed
trials of an older version of a user's file (another ``source`` hash) do not count: after
fixing the file, tuning again measures those configurations afresh.

``progress(report)`` follows each trial with a ``TuneReport``: trials by outcome and the
first error of each kind, so a person sees why trials fail while they fail.
"""
from __future__ import annotations

import importlib
import json
import math
import random
import threading
import uuid
from dataclasses import dataclass, field

from .features import IR_FEATURES, ir_features
from .measure import LocalExecutor, Runner
from .records import CONFIRM_RUN, RecordDB, canonical, fastest, record_target

RANDOM_START = 12      # random configurations before the evolution starts
POOL = 256             # children proposed per measured batch
MODEL_POOL = 64        # of which the model ranks (each described by its loop nest)
BATCH = 8              # compiled in parallel, then measured, per model refit
CONFIRM_TOP = 3        # the fastest configurations measured again after a search ...
CONFIRM_ROUNDS = 4     # ... this many more times each, with the default, interleaved,
CONFIRM_MIN_TIME = 0.02   # seconds each, or worker.MAX_RUNS runs (a search's trial:
#                           ``Runner.min_time``)


@dataclass
class TuneReport:
    """What a tuning run has measured so far: ``counts`` of its trials by outcome
    (``ok``, ``error``, ``wrong``, ``timeout``, ``crash``), the ``first_errors`` of each
    failing kind (``{outcome: (error, config)}``), the best record in the database."""
    total: int
    done: int = 0
    counts: dict = field(default_factory=dict)
    first_errors: dict = field(default_factory=dict)
    best: dict | None = None

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.counts.items() if status != "ok")

    def outcomes(self) -> str:
        """``ok 4, error 12`` (this run's trials by outcome)."""
        return ", ".join(f"{status} {n}" for status, n in self.counts.items())


def _source_sha(source: str | None) -> str | None:
    return json.loads(source).get("sha") if source else None


class Search:
    """Proposes configurations from ``space`` ({knob: [values]})."""

    def __init__(self, space: dict, seed: int = 0, describe=None):
        self.space = {k: list(v) for k, v in space.items()}
        self.rng = random.Random(seed)
        self.model = None
        self.describe = describe   # config -> extra features (of its loop nest), or None
        self._described: dict = {}

    def random(self) -> dict:
        return {k: self.rng.choice(v) for k, v in self.space.items()}

    def mutate(self, config: dict) -> dict:
        child = dict(config)
        knob = self.rng.choice(list(self.space))
        child[knob] = self.rng.choice(self.space[knob])
        return child

    def crossover(self, a: dict, b: dict) -> dict:
        return {k: (a if self.rng.random() < 0.5 else b).get(k, self.rng.choice(v))
                for k, v in self.space.items()}

    def features(self, config: dict) -> list[float]:
        out = []
        for k, values in self.space.items():
            v = config.get(k, values[0])
            out.append(math.log2(v) if isinstance(v, (int, float)) and v > 0
                       else float(values.index(v)) if v in values else -1.0)
        if self.describe is not None:
            key = canonical(config)
            if key not in self._described:
                try:
                    self._described[key] = list(self.describe(config))
                except Exception:  # a candidate that cannot even be scheduled
                    self._described[key] = [-1.0] * len(IR_FEATURES)
            out += self._described[key]
        return out

    def fit(self, measured: list[tuple[dict, float]]):
        """Fit the cost model on (config, seconds) pairs; no-op without scikit-learn."""
        if len(measured) < 8:
            return
        try:
            from sklearn.ensemble import GradientBoostingRegressor
        except ImportError:
            self.model = None
            return
        x = [self.features(c) for c, _ in measured]
        y = [math.log(max(t, 1e-9)) for _, t in measured]
        self.model = GradientBoostingRegressor(n_estimators=80, max_depth=3,
                                               learning_rate=0.1, random_state=0).fit(x, y)

    def propose(self, ranked: list[dict], seen: set, n: int) -> list[dict]:
        """Up to ``n`` unseen configurations: children of the best ``ranked``."""
        parents = ranked[:8] or [self.random()]
        pool, keys = [], set()
        for _ in range(POOL * 4):
            if len(pool) >= POOL:
                break
            r = self.rng.random()
            if r < 0.15 or not ranked:
                c = self.random()
            elif r < 0.7:
                c = self.mutate(self.rng.choice(parents))
            else:
                c = self.crossover(self.rng.choice(parents), self.rng.choice(parents))
            key = canonical(c)
            if key not in seen and key not in keys:
                keys.add(key)
                pool.append(c)
        if self.model is not None and pool:
            pool = pool[:MODEL_POOL]
            scores = self.model.predict([self.features(c) for c in pool])
            order = sorted(range(len(pool)), key=lambda i: scores[i])
            pool = [pool[i] for i in order]
        return pool[:n]


_WARMING: list = []


def warm_cost_model():
    """Import scikit-learn (about a second) on a thread while the first batches are
    built and measured, instead of between two batches when the model is first fitted,
    where every worker would wait for it. Once per process."""
    if _WARMING:
        return

    def load():
        try:
            importlib.import_module("sklearn.ensemble")
        except ImportError:
            pass    # no model: ``Search.fit`` says so
    _WARMING.append(threading.Thread(target=load, name="warm-cost-model", daemon=True))
    _WARMING[0].start()


def stored_trials(db: RecordDB, workload, target: str) -> list[dict]:
    """The trials of ``workload`` stored in ``db`` that a tuning continues (``resume``):
    a failure of an older version of the user's file says nothing about this one."""
    sha = _source_sha(workload.source)
    return [r for r in db.trials(workload.key, record_target(target), workload.template)
            if r["status"] == "ok" or _source_sha(r["source"]) == sha]


class Confirmation:
    """The confirming rounds of one workload (see ``confirm``), a pass at a time:
    ``next_batch()`` is the default and the ``top`` fastest not yet confirmed, each
    ``rounds`` times, interleaved ([] once the fastest is confirmed);
    ``record(config, result)`` stores each measurement."""

    def __init__(self, workload, db: RecordDB, target: str = "llvm", top: int = CONFIRM_TOP,
                 rounds: int = CONFIRM_ROUNDS, passes: int = 3):
        self.workload, self.db, self.target = workload, db, record_target(target)
        self.top, self.rounds, self.passes_left = top, rounds, passes
        self.run = uuid.uuid4().hex[:12] + CONFIRM_RUN
        self.default = canonical(workload.default_config())
        self.confirmed: set = set()
        if rounds <= 0 or workload.template == "hand":
            self.passes_left = 0

    def next_batch(self) -> list[dict]:
        if self.passes_left <= 0:
            return []
        self.passes_left -= 1
        w = self.workload
        rows = [r for r in self.db.trials(w.key, self.target, w.template, confirming=True)
                if r["status"] == "ok"]
        ranked = []
        while rows and len(ranked) < self.top:
            best = fastest(rows)
            ranked.append(canonical(best["config"]))
            rows = [r for r in rows if canonical(r["config"]) != ranked[-1]]
        if not ranked or ranked[0] in self.confirmed:
            self.passes_left = 0
            return []
        todo = [c for c in dict.fromkeys([self.default] + ranked) if c not in self.confirmed]
        self.confirmed.update(todo)
        return [json.loads(c) for c in todo] * self.rounds

    def record(self, config, res):
        w = self.workload
        self.db.add(w.key, self.target, w.template, config, res.get("status", "error"),
                    seconds=res.get("seconds"), gflops=res.get("gflops"),
                    error=res.get("error"), run=self.run, name=repr(w), source=w.source,
                    worker=res.get("worker"))


def confirm(workload, db: RecordDB, target: str = "llvm", executor=None,
            top: int = CONFIRM_TOP, rounds: int = CONFIRM_ROUNDS, timeout: float = 30.0,
            passes: int = 3) -> dict | None:
    """Measure the default configuration and the ``top`` fastest ones again, ``rounds``
    times each, in interleaved order; returns the best record after it.

    A search keeps the fastest of hundreds of single measurements, and on a shared
    machine that is often the one taken in a quiet second, not the fastest
    configuration: a tuning here once kept a configuration 6% slower than the default
    because the default had been measured while the machine was busy (17 ms against
    8.8). Measured side by side, a configuration counts with the median of its times
    (``records.fastest``). Repeated while the fastest is one not yet confirmed (at most
    ``passes`` times). The measurements are stored as trials of a run ending in
    ``/confirm`` and do not count against a search's trials."""
    own_executor = executor is None
    if own_executor:
        executor = LocalExecutor(timeout)
    try:
        confirm_side_by_side([Confirmation(workload, db, target, top, rounds, passes)],
                             executor)
    finally:
        if own_executor:
            executor.close()
    return db.best(workload.key, record_target(target), workload.template,
                   in_step=False)


class Tuning:
    """One workload's search (see the module docstring), a batch at a time:
    ``next_batch()`` names the configurations to measure next ([] once ``trials`` are
    stored or the space is exhausted); ``record(config, result)`` stores each one's
    outcome. ``tune`` runs one; ``scheduler.tune_tasks`` runs several side by side."""

    def __init__(self, workload, trials: int, db: RecordDB, target: str = "llvm",
                 resume: bool = False, seed: int = 0, progress=None):
        if workload.template == "hand":
            raise ValueError(f"{workload!r} returns a (schedule, tensors) pair, a fixed "
                             "schedule: there is nothing to tune; return the tensors and "
                             "define schedule(s, outs, config) and SPACE in the file (or use "
                             "--auto)")
        self.workload, self.db, self.trials = workload, db, trials
        self.target, self.progress = record_target(target), progress
        self.space = workload.space()
        previous = stored_trials(db, workload, self.target)
        if previous and not resume:
            raise ValueError(f"the database already holds {len(previous)} trials of "
                             f"{workload!r}; pass resume=True (--resume) to continue them, or "
                             f"remove them (tensordsl records delete '{workload!r}')")
        self.search = Search(self.space, seed=seed + len(previous),
                             describe=lambda c: ir_features(workload, c))
        self.seen = {canonical(r["config"]) for r in previous}
        self.measured = [(r["config"], r["seconds"]) for r in previous if r["status"] == "ok"]
        self.done = len(previous)
        self.run = uuid.uuid4().hex[:12]
        self.report = TuneReport(total=trials, done=self.done)
        self.exhausted = False
        if self.space and trials > RANDOM_START:
            warm_cost_model()

    def next_batch(self) -> list[dict]:
        """Up to ``BATCH`` configurations: the default first (it is what runs without a
        record, and the yardstick of every other), random ones while fewer than
        ``RANDOM_START`` are measured, then the children the cost model ranks best."""
        left = self.trials - self.done
        if left <= 0 or self.exhausted:
            return []
        batch = []
        default = self.workload.default_config()
        if canonical(default) not in self.seen:
            batch.append(default)
            self.seen.add(canonical(default))
        want = min(BATCH, left) - len(batch)
        if want > 0 and self.space:
            if len(self.measured) < RANDOM_START:
                batch += self.search.propose([], self.seen, want)
            else:
                self.search.fit(self.measured)
                ranked = [c for c, _ in sorted(self.measured, key=lambda m: m[1])]
                batch += self.search.propose(ranked, self.seen, want)
        if not batch:
            self.exhausted = True
        for config in batch:
            self.seen.add(canonical(config))
        return batch

    def record(self, config, res):
        w, report = self.workload, self.report
        status = res.get("status", "error")
        self.db.add(w.key, self.target, w.template, config, status,
                    seconds=res.get("seconds"), gflops=res.get("gflops"),
                    error=res.get("error"), run=self.run, name=repr(w), source=w.source,
                    worker=res.get("worker"))
        self.done += 1
        if status == "ok":
            self.measured.append((config, res["seconds"]))
        elif status not in report.first_errors:
            report.first_errors[status] = (res.get("error") or status, config)
        report.done = self.done
        report.counts[status] = report.counts.get(status, 0) + 1
        if self.progress is not None:
            report.best = self.db.best(w.key, self.target, w.template, in_step=False)
            self.progress(report)


def run_side_by_side(searches: list, executor, built: bool = False,
                     min_time: float | None = None):
    """Run ``searches`` (``Tuning``s, ``Confirmation``s) to their end, the next batch of
    every one at once: an executor that overlaps builds with measurements
    (``run_groups``: the Dask backend, the local build pool) keeps its workers busy
    across workloads instead of waiting at the end of each one's batch. Each search
    still sees its own batches in order, so its configurations are those it would try
    alone. ``built``: every configuration was built before (confirming rounds), so
    none needs a build of its own first; ``min_time``: seconds each is timed (None: the
    executor's default)."""
    while True:
        groups = [(s.workload, batch, s.record) for s in searches
                  if (batch := s.next_batch())]
        if not groups:
            return
        if hasattr(executor, "run_groups"):
            executor.run_groups(groups, built=built, min_time=min_time)
        else:   # an executor of one workload at a time
            for workload, batch, record in groups:
                executor.run(workload, batch, record)


def confirm_side_by_side(confirmations: list, executor):
    """Run ``confirmations`` together: configurations measured before, so none is built
    again, each timed for ``CONFIRM_MIN_TIME``."""
    run_side_by_side(confirmations, executor, built=True, min_time=CONFIRM_MIN_TIME)


def tune(workload, trials: int = 200, db: RecordDB | None = None, timeout: float = 30.0,
         target: str = "llvm", resume: bool = False, seed: int = 0, progress=None,
         runner: Runner | None = None, build_workers: int | None = None,
         executor=None, confirm_rounds: int = CONFIRM_ROUNDS) -> dict | None:
    """Measure up to ``trials`` configurations of ``workload``'s template; returns the
    best record. Then the default and the fastest few are measured ``confirm_rounds``
    times more (``confirm``; 0: not). Batches are compiled by ``build_workers``
    processes at once (default: one per core; 0: by the measuring worker itself), then
    timed one at a time — or run
    by ``executor`` (``measure.LocalExecutor``'s interface; ``dask_backend``: on a
    cluster), which the caller keeps and closes.
    ``progress(report)`` follows each trial (a ``TuneReport``)."""
    db = db if db is not None else RecordDB()
    tuning = Tuning(workload, trials, db, target, resume, seed, progress)
    own_executor = executor is None
    if own_executor:
        executor = LocalExecutor(timeout, build_workers, runner)
    try:
        run_side_by_side([tuning], executor)
        if confirm_rounds > 0:
            confirm(workload, db, target, executor, rounds=confirm_rounds)
    finally:
        if own_executor:
            executor.close()
    return db.best(workload.key, record_target(target), workload.template,
                   in_step=False)
