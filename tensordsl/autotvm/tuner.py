"""AutoTVM's tuners: ``RandomTuner``, ``GridSearchTuner`` and ``XGBTuner``, each
``tuner.tune(n_trial, measure_option, callbacks=[...])``.

``XGBTuner`` is TVM's model-guided search with scikit-learn's gradient-boosted trees in
place of XGBoost (one cost-model library for the project): after a first batch of random
configurations, each batch is the unmeasured configurations the model, refitted on all
measurements so far, ranks fastest among a random sample of the space.
"""
from __future__ import annotations

import logging
import math
import random

from .measure import Measurer, MeasureErrorNo, MeasureInput
from .space import SplitEntity

log = logging.getLogger("autotvm")


class Tuner:
    """The loop every tuner shares; subclasses choose the next configurations."""

    def __init__(self, task, seed: int = 0):
        self.task, self.space = task, task.config_space
        self.rng = random.Random(seed)
        self.visited: set = set()
        self.best_config, self.best_flops, self.best_measure_pair = None, 0.0, None
        self.best_iter = 0

    def next_batch(self, batch_size: int) -> list[int]:
        raise NotImplementedError

    def update(self, inputs, results):
        """Learn from a measured batch (a model-guided tuner refits here)."""

    def has_next(self) -> bool:
        return len(self.visited) < len(self.space)

    def tune(self, n_trial: int, measure_option: dict, early_stopping=None, callbacks=(),
             si_prefix: str = "G"):
        """Measure up to ``n_trial`` configurations (never one twice), calling each
        callback with ``(tuner, inputs, results)`` after every batch; stop early after
        ``early_stopping`` trials without a better one."""
        if not isinstance(n_trial, int) or n_trial < 1:
            raise ValueError(f"tune: n_trial must be a positive int, got {n_trial!r}")
        measurer = Measurer(self.task, measure_option)
        trial = 0
        try:
            while trial < n_trial and self.has_next():
                batch = [i for i in self.next_batch(min(8, n_trial - trial))
                         if i not in self.visited][:n_trial - trial]
                if not batch:
                    break
                inputs, results = [], []
                for index in batch:
                    self.visited.add(index)
                    config = self.space.get(index)
                    inputs.append(MeasureInput(self.task.target, self.task, config))
                    results.append(measurer.measure(config))
                for inp, res in zip(inputs, results):
                    trial += 1
                    self._note(trial, inp, res)
                self.update(inputs, results)
                for callback in callbacks:
                    callback(self, inputs, results)
                if early_stopping is not None and trial - self.best_iter >= early_stopping:
                    log.debug("early stopped at trial %d", trial)
                    break
        finally:
            measurer.close()

    def _note(self, trial: int, inp, res):
        if res.error_no != MeasureErrorNo.NO_ERROR:
            log.debug("no %d: error %d %s", trial, res.error_no, res.error)
            return
        cost = sum(res.costs) / len(res.costs)
        flops = (self.task.flop or 1.0) / cost
        if flops > self.best_flops:
            self.best_config, self.best_flops = inp.config, flops
            self.best_measure_pair, self.best_iter = (inp, res), trial
        log.debug("no %d: %.6f s %s", trial, cost, inp.config)


class RandomTuner(Tuner):
    """Configurations in random order, none twice."""

    def next_batch(self, batch_size: int) -> list[int]:
        out = []
        while len(out) < batch_size and len(self.visited) + len(out) < len(self.space):
            index = self.rng.randrange(len(self.space))
            if index not in self.visited and index not in out:
                out.append(index)
        return out


class GridSearchTuner(Tuner):
    """Configurations in index order."""

    def __init__(self, task, seed: int = 0):
        super().__init__(task, seed)
        self.counter = 0

    def next_batch(self, batch_size: int) -> list[int]:
        out = list(range(self.counter, min(self.counter + batch_size, len(self.space))))
        self.counter += len(out)
        return out


class XGBTuner(RandomTuner):
    """Model-guided: random for ``plan_size`` trials, then the configurations a
    gradient-boosted tree model of log cost ranks fastest (scikit-learn,
    ``pip install ".[tune]"``)."""

    SAMPLE = 512   # configurations the model ranks per batch

    def __init__(self, task, plan_size: int = 16, feature_type="knob", loss_type="rank",
                 num_threads=None, seed: int = 0):
        super().__init__(task, seed)
        try:
            from sklearn.ensemble import GradientBoostingRegressor
        except ImportError:
            raise ImportError("XGBTuner needs scikit-learn: pip install \".[tune]\"") \
                from None
        self.model_class = GradientBoostingRegressor
        self.plan_size, self.model = plan_size, None
        self.measured: list = []      # (features, log cost)

    def features(self, index: int) -> list[float]:
        config = self.space.get(index)
        out = []
        for name, space in self.space.space_map.items():
            entity = config[name]
            if isinstance(entity, SplitEntity):
                out += [math.log2(max(1, x)) for x in entity.size[1:]]
            else:
                out.append(float(space.entities.index(entity)))
        return out

    def update(self, inputs, results):
        for inp, res in zip(inputs, results):
            ok = res.error_no == MeasureErrorNo.NO_ERROR
            cost = sum(res.costs) / len(res.costs) if ok else 1e9   # a failure: slowest
            self.measured.append((self.features(inp.config.index), math.log(cost)))
        if len(self.measured) >= self.plan_size:
            xs, ys = zip(*self.measured)
            self.model = self.model_class(n_estimators=100, max_depth=3,
                                          random_state=0).fit(list(xs), list(ys))

    def next_batch(self, batch_size: int) -> list[int]:
        if self.model is None:
            return super().next_batch(batch_size)
        left = len(self.space) - len(self.visited)
        pool = super().next_batch(min(self.SAMPLE, left))
        predicted = self.model.predict([self.features(i) for i in pool])
        return [i for _, i in sorted(zip(predicted, pool))[:batch_size]]
