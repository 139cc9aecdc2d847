"""Task scheduling: one trial budget over many workloads (a model's kernels).

    best = tune_tasks(workloads, budget=300, db=RecordDB(...))             # gain
    best = tune_tasks(workloads, budget=300, schedule="share", cluster=executor)

A model's kernels are not equally worth tuning: a kernel that takes most of the step's
time, and whose last trials still made it faster, deserves the next trials. As Ansor's
task scheduler does, the budget is spent in rounds of ``ROUND`` trials (one batch of the
search), each given to the task of the largest expected gain::

    round 1..n   every task once (largest estimated work first): a first best time;
                 these depend on nothing measured, so they run side by side (an
                 executor's builds of one task overlap the measurements of another);
                 a budget too small for n full rounds is shared evenly among them
    then         gain(task) = share of the model's time x recent relative improvement
                   share       = weight x best / sum over tasks of (weight x best)
                   improvement = (best before its last round - best now) / best before,
                                 at least MIN_IMPROVEMENT (a task's first "before" is
                                 its default configuration's time)
                 a task that waited more than ``patience`` rounds goes first (none starves);
                 the ``SIDE_BY_SIDE`` (2) tasks chosen first run their rounds side by
                 side, so that one's builds overlap the other's measurements (a round
                 of one task left a cluster's builders idle while it was measured)

``weight`` is how often the kernel occurs in the model (a file that lists a call twice).
``schedule="share"`` is the static split instead (``share``: each kernel a minimum, the
rest in proportion to its estimated work, largest first), one round per task, all side
by side. The confirming rounds at the end (``tuner.Confirmation``) run side by side too,
for the kernels of at least ``CONFIRM_MIN_SHARE`` of the model's time.

Each round continues the trials stored for its workload (``tune(..., resume=True)``),
so the search keeps its history between rounds. With ``resume=True`` the budget counts
the trials already stored for these workloads: a killed job, restarted the same way,
does only what was left.

The scheduler itself (``GainSchedule``, ``ShareSchedule``) only counts and chooses; it
never measures, so its allocation is tested with made-up times.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from .records import RecordDB, canonical, record_target
from .tuner import (BATCH, CONFIRM_ROUNDS, Confirmation, Tuning, confirm_side_by_side,
                    run_side_by_side, stored_trials)

ROUND = BATCH             # trials per round: one batch of the search
MIN_IMPROVEMENT = 0.02    # a task that stopped improving still has some headroom
PATIENCE = 3              # x the number of tasks: the most rounds a task waits
MIN_TRIALS = 2            # (share) the default and one other: below that nothing is learned
CONFIRM_MIN_SHARE = 0.01  # of the model's time: a smaller kernel is not confirmed
SIDE_BY_SIDE = 2          # rounds at once after the first ones (one's builds overlap the
#                           other's measurements; the same in every executor, so that a
#                           job chooses the same configurations wherever it runs)
SCHEDULES = ("gain", "share")


@dataclass
class Task:
    """One workload of the job and what the scheduler knows of it."""
    workload: object
    weight: float = 1.0
    work: float = 0.0                 # estimated (``estimated_work``): orders the tasks
    trials: int = 0                   # trials spent on it (this job, or stored: resume)
    rounds: int = 0
    last_round: int = -1              # the job's round number of its latest round
    bests: list = field(default_factory=list)   # best seconds before/after each round
    exhausted: bool = False           # its space has no unmeasured configuration left

    @property
    def best(self) -> float | None:
        return self.bests[-1] if self.bests else None

    @property
    def improvement(self) -> float:
        """Relative improvement of its last round (1 while nothing is known)."""
        known = [b for b in self.bests[-2:] if b is not None]
        if len(known) < 2:
            return 1.0
        before, after = known
        return max(MIN_IMPROVEMENT, (before - after) / before)


class GainSchedule:
    """Rounds by expected gain (see the module docstring). ``next()`` names the task
    and trials of the next round (None: the budget is spent, or every space is
    exhausted); ``done(task, trials, before, after)`` reports how the round went."""

    def __init__(self, tasks: list[Task], budget: int, round_trials: int = ROUND,
                 patience: int | None = None, side_by_side: int = SIDE_BY_SIDE):
        if budget < 0:
            raise ValueError(f"budget: expected a non-negative number, got {budget}")
        if round_trials < 1:
            raise ValueError(f"round_trials: expected a positive number, got {round_trials}")
        if side_by_side < 1:
            raise ValueError(f"side_by_side: expected a positive number, got {side_by_side}")
        self.tasks, self.left, self.round_trials = tasks, budget, round_trials
        self.side_by_side = side_by_side
        # a full round each, or an even share of a budget too small for that (a whole
        # model's kernels in a few trials: none is left out because others came first);
        # of a resumed job, shared by the kernels that had no round yet
        fresh = [t for t in tasks if not t.exhausted and t.rounds == 0]
        self.first_round = max(1, min(round_trials, budget // max(1, len(fresh))))
        self.patience = patience if patience is not None else PATIENCE * len(tasks)
        self.round = 0

    def gains(self) -> list[float]:
        """Each task's expected gain (its time share x its recent improvement)."""
        known = [t.best for t in self.tasks if t.best is not None]
        typical = float(np.mean(known)) if known else 1.0
        times = [t.weight * (t.best if t.best is not None else typical) for t in self.tasks]
        total = sum(times) or 1.0
        return [time / total * t.improvement for time, t in zip(times, self.tasks)]

    def next(self, skip=(), left: int | None = None) -> tuple[Task, int] | None:
        """The next round: a fresh task's first, a task that waited too long, else the
        largest expected gain; ``skip``: tasks given a round already (``next_rounds``),
        ``left``: the budget not handed out yet."""
        left = self.left if left is None else left
        live = [t for t in self.tasks if not t.exhausted and all(t is not s for s in skip)]
        if left <= 0 or not live:
            return None
        fresh = [t for t in live if t.rounds == 0]
        waited = [t for t in live if self.round - t.last_round > self.patience]
        if fresh:
            return fresh[0], min(self.first_round, left)
        if waited:
            task = min(waited, key=lambda t: t.last_round)
        else:
            gains = dict(zip(map(id, self.tasks), self.gains()))
            task = max(live, key=lambda t: (gains[id(t)], -t.trials))
        return task, min(self.round_trials, left)

    def next_rounds(self) -> list[tuple[Task, int]]:
        """The rounds that may run side by side now: every fresh task's first round
        (none depends on what another measures), else the ``side_by_side`` that
        ``next()`` chooses one after the other (distinct tasks)."""
        fresh = [t for t in self.tasks if not t.exhausted and t.rounds == 0]
        wanted = len(fresh) if fresh else self.side_by_side
        rounds, left = [], self.left
        while len(rounds) < wanted and (step := self.next([t for t, _ in rounds], left)):
            rounds.append(step)
            left -= step[1]
        return rounds

    def done(self, task: Task, trials: int, before: float | None, after: float | None,
             asked: int | None = None):
        """``task`` measured ``trials`` (of ``asked``: fewer means its space is
        exhausted); its best was ``before`` and is ``after`` (seconds, None: none ran)."""
        self.left -= trials
        if asked is not None and trials < asked:
            task.exhausted = True
        if not task.bests:
            task.bests.append(before)
        task.bests.append(after)
        task.trials += trials
        task.rounds += 1
        task.last_round = self.round
        self.round += 1


class ShareSchedule(GainSchedule):
    """The static split: each task once, for its ``share`` of the budget."""

    def __init__(self, tasks: list[Task], budget: int):
        super().__init__(tasks, budget)
        self.plan = [(s.task, s.trials) for s in share(tasks, budget) if s.trials]

    def next(self) -> tuple[Task, int] | None:
        while self.plan:
            task, trials = self.plan.pop(0)
            if not task.exhausted:
                return task, trials
        return None

    def next_rounds(self) -> list[tuple[Task, int]]:
        """All of them: a static split waits for nothing measured."""
        rounds, self.plan = [(t, n) for t, n in self.plan if not t.exhausted], []
        return rounds


# ------------------------------------------------------------ the static split
def estimated_work(workload) -> float:
    """Multiply-adds counted twice where ``Workload.flops`` knows them, else the
    elements the kernel reads and writes (an elementwise or reduction pass)."""
    out = workload.define()[1]
    out_shape = tuple(int(d.value) for d in out.shape)
    flops = workload.flops(out_shape)
    if flops:
        return flops
    arrays = [a[1] for a in workload.args if a[0] == "array"] + [out_shape]
    return float(sum(np.prod(s) for s in arrays))


@dataclass
class Share:
    task: Task
    trials: int

    @property
    def workload(self):
        return self.task.workload

    @property
    def work(self) -> float:
        return self.task.work


def share(tasks: list, budget: int) -> list[Share]:
    """Trials per task (``Task``s or workloads), largest estimated work first. A budget
    that covers ``MIN_TRIALS`` for every kernel gives each that much and the rest in
    proportion to the work (what rounding leaves, to the largest); a smaller one gives
    ``MIN_TRIALS`` to the largest kernels until it is spent, and none to the others."""
    if budget < 1:
        raise ValueError(f"--trials: expected a positive number, got {budget}")
    tasks = [t if isinstance(t, Task) else Task(t, work=estimated_work(t)) for t in tasks]
    sized = sorted(tasks, key=lambda t: -t.work)
    if budget < MIN_TRIALS * len(sized):
        shares, left = [], budget
        for t in sized:
            n = min(MIN_TRIALS, left)
            shares.append(Share(t, n))
            left -= n
        return shares
    extra = budget - MIN_TRIALS * len(sized)
    total = sum(t.work for t in sized) or 1.0
    shares = [Share(t, MIN_TRIALS + int(extra * t.work / total)) for t in sized]
    if shares:
        shares[0].trials += budget - sum(s.trials for s in shares)
    return shares


# ------------------------------------------------------------ the job
def make_tasks(workloads: list, weights: list | None = None) -> list[Task]:
    """``Task``s of ``workloads`` (distinct), largest estimated work first."""
    if weights is not None and len(weights) != len(workloads):
        raise ValueError(f"weights: expected one per workload ({len(workloads)}), "
                         f"got {len(weights)}")
    tasks = [Task(w, weight=float(weights[k]) if weights else 1.0, work=estimated_work(w))
             for k, w in enumerate(workloads)]
    return sorted(tasks, key=lambda t: -t.work)


def default_seconds(db: RecordDB, workload, target: str = "llvm") -> float | None:
    """The measured time of ``workload``'s default configuration (a tuning's first
    trial), or None if it was not measured."""
    default = canonical(workload.default_config())
    times = [r["seconds"] for r in db.trials(workload.key, record_target(target),
                                             workload.template, confirming=True)
             if r["status"] == "ok" and canonical(r["config"]) == default]
    return statistics.median(times) if times else None


def worth_confirming(tasks: list[Task], db: RecordDB, target: str = "llvm") -> list[Task]:
    """The tasks whose confirming rounds can matter: measured, and at least
    ``CONFIRM_MIN_SHARE`` of the model's time (weight x best, as the gain schedule
    counts it). A record kept by a lucky measurement costs a kernel a few percent of
    its time; for one of a hundredth of the step that is not worth the 16 measurements
    of 20 ms that confirming takes, nearly all of a small model's job on a second
    worker, which can only wait while they run."""
    bests = [(t, _best_seconds(db, t.workload, target)) for t in tasks]
    total = sum(t.weight * best for t, best in bests if best)
    return [t for t, best in bests if best and t.weight * best >= CONFIRM_MIN_SHARE * total]


def _best_seconds(db: RecordDB, workload, target: str) -> float | None:
    best = db.best(workload.key, record_target(target), workload.template,
                   in_step=False)
    return best["seconds"] if best else None


def tune_tasks(workloads: list, budget: int, db: RecordDB | None = None,
               schedule: str = "gain", weights: list | None = None, target: str = "llvm",
               timeout: float = 30.0, seed: int = 0, resume: bool = False, executor=None,
               progress=None, round_trials: int = ROUND,
               confirm_rounds: int = CONFIRM_ROUNDS) -> list[tuple[Task, dict | None]]:
    """Spend ``budget`` trials over ``workloads`` (see the module docstring); returns
    (task, best record or None) per task, largest estimated work first. At the end each
    task's default and fastest configurations are measured ``confirm_rounds`` times
    more, side by side (``tuner.confirm``; 0: not), where the task is at least
    ``CONFIRM_MIN_SHARE`` of the model's time (``worth_confirming``).
    ``executor``: where candidates run (``measure.LocalExecutor``, made here when None;
    ``dask_backend.DaskExecutor``). ``progress(task, report)`` follows each trial."""
    if schedule not in SCHEDULES:
        raise ValueError(f"--schedule: expected one of {', '.join(SCHEDULES)}, "
                         f"got {schedule!r}")
    db = db if isinstance(db, RecordDB) else RecordDB(db)
    tasks = make_tasks(workloads, weights)
    spent = 0
    for t in tasks:   # what earlier runs measured: the scheduler starts from it
        stored = len(stored_trials(db, t.workload, target))
        if stored:
            spent += stored
            t.trials, t.rounds = stored, math.ceil(stored / round_trials)
            t.bests = [default_seconds(db, t.workload, target),
                       _best_seconds(db, t.workload, target)]
    left = budget - spent if resume else budget
    plan = GainSchedule(tasks, max(0, left), round_trials) if schedule == "gain" else \
        ShareSchedule(tasks, max(0, left)) if left > 0 else GainSchedule(tasks, 0)
    own_executor = executor is None
    if own_executor:
        from .measure import LocalExecutor
        executor = LocalExecutor(timeout)
    try:
        while rounds := plan.next_rounds():
            started, tunings = [], []
            for task, trials in rounds:
                w = task.workload
                stored = len(stored_trials(db, w, target))
                tunings.append(Tuning(w, stored + trials, db, target, resume=True, seed=seed,
                                      progress=None if progress is None else
                                      (lambda report, task=task: progress(task, report))))
                started.append((task, trials, stored, _best_seconds(db, w, target)))
            run_side_by_side(tunings, executor)
            for task, trials, stored, before in started:
                w = task.workload
                measured = len(stored_trials(db, w, target)) - stored
                if before is None:      # its first round: from the default's time
                    before = default_seconds(db, w, target)
                plan.done(task, measured, before, _best_seconds(db, w, target), asked=trials)
        if confirm_rounds > 0:
            confirm_side_by_side([Confirmation(t.workload, db, target, rounds=confirm_rounds)
                                  for t in worth_confirming(tasks, db, target)], executor)
    finally:
        if own_executor:
            executor.close()
    return [(t, db.best(t.workload.key, record_target(target), t.workload.template,
                    in_step=False))
            for t in tasks]
