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

After the search the default and the three fastest configurations are measured twice
more, side by side (``confirm``), and a configuration counts with the median of its
measurements: the fastest single measurement of hundreds is often just the luckiest.

Every trial goes to the database the moment it is measured; ``resume=True`` counts the
trials already stored for the workload and never measures a configuration twice. Failed
trials of an older version of a user's file (another ``source`` hash) do not count: after
fixing the file, tuning again measures those configurations afresh.

``progress(report)`` follows each trial with a ``TuneReport``: trials by outcome and the
first error of each kind, so a person sees why trials fail while they fail.
"""
from __future__ import annotations

import json
import math
import random
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
CONFIRM_ROUNDS = 2     # ... this many more times each, with the default, interleaved


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


def stored_trials(db: RecordDB, workload, target: str) -> list[dict]:
    """The trials of ``workload`` stored in ``db`` that a tuning continues (``resume``):
    a failure of an older version of the user's file says nothing about this one."""
    sha = _source_sha(workload.source)
    return [r for r in db.trials(workload.key, record_target(target), workload.template)
            if r["status"] == "ok" or _source_sha(r["source"]) == sha]


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
    key, template = workload.key, workload.template
    target = record_target(target)
    if rounds <= 0 or template == "hand":
        return db.best(key, target, template)
    run = uuid.uuid4().hex[:12] + CONFIRM_RUN
    default = canonical(workload.default_config())
    confirmed: set = set()
    own_executor = executor is None
    if own_executor:
        executor = LocalExecutor(timeout)

    def record(config, res):
        db.add(key, target, template, config, res.get("status", "error"),
               seconds=res.get("seconds"), gflops=res.get("gflops"), error=res.get("error"),
               run=run, name=repr(workload), source=workload.source,
               worker=res.get("worker"))

    try:
        for _ in range(passes):
            rows = [r for r in db.trials(key, target, template, confirming=True)
                    if r["status"] == "ok"]
            ranked = []
            while rows and len(ranked) < top:
                best = fastest(rows)
                ranked.append(canonical(best["config"]))
                rows = [r for r in rows if canonical(r["config"]) != ranked[-1]]
            if not ranked or ranked[0] in confirmed:
                break
            todo = [c for c in dict.fromkeys([default] + ranked) if c not in confirmed]
            configs = [json.loads(c) for c in todo]
            for _ in range(rounds):
                executor.run(workload, configs, record)
            confirmed.update(todo)
    finally:
        if own_executor:
            executor.close()
    return db.best(key, target, template)


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
    key, template = workload.key, workload.template
    if template == "hand":
        raise ValueError(f"{workload!r} returns a (schedule, tensors) pair, a fixed schedule: "
                         "there is nothing to tune; return the tensors and define "
                         "schedule(s, outs, config) and SPACE in the file (or use --auto)")
    target = record_target(target)
    space = workload.space()
    previous = stored_trials(db, workload, target)
    if previous and not resume:
        raise ValueError(f"the database already holds {len(previous)} trials of {workload!r}; "
                         "pass resume=True (--resume) to continue them, or remove them "
                         f"(tensordsl records delete '{workload!r}')")
    search = Search(space, seed=seed + len(previous),
                    describe=lambda c: ir_features(workload, c))
    seen = {canonical(r["config"]) for r in previous}
    measured = [(r["config"], r["seconds"]) for r in previous if r["status"] == "ok"]
    done = len(previous)
    run = uuid.uuid4().hex[:12]
    own_executor = executor is None
    if own_executor:
        executor = LocalExecutor(timeout, build_workers, runner)

    report = TuneReport(total=trials, done=done)

    def record(config, res):
        nonlocal done
        status = res.get("status", "error")
        db.add(key, target, template, config, status, seconds=res.get("seconds"),
               gflops=res.get("gflops"), error=res.get("error"), run=run,
               name=repr(workload), source=workload.source, worker=res.get("worker"))
        done += 1
        if status == "ok":
            measured.append((config, res["seconds"]))
        elif status not in report.first_errors:
            report.first_errors[status] = (res.get("error") or status, config)
        report.done = done
        report.counts[status] = report.counts.get(status, 0) + 1
        if progress is not None:
            report.best = db.best(key, target, template)
            progress(report)

    try:
        first = workload.default_config()
        batch = [] if canonical(first) in seen else [first]
        while done < trials:
            if not batch:
                if len(measured) < RANDOM_START or not space:
                    batch = search.propose([], seen, BATCH) if space else []
                else:
                    search.fit(measured)
                    ranked = [c for c, _ in sorted(measured, key=lambda m: m[1])]
                    batch = search.propose(ranked, seen, BATCH)
                if not batch:
                    break  # the space is exhausted
            batch = batch[:trials - done]
            for config in batch:
                seen.add(canonical(config))
            # compile the batch in parallel, then time each alone; recorded as each ends
            executor.run(workload, batch, record)
            batch = []
        if confirm_rounds > 0:
            confirm(workload, db, target, executor, rounds=confirm_rounds)
    finally:
        if own_executor:
            executor.close()
    return db.best(key, target, template)
