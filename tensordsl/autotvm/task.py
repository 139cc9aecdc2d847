"""Templates and tasks (TVM AutoTVM's ``@autotvm.template``, ``autotvm.task.create``,
``autotvm.get_config``, ``autotvm.apply_history_best``).

A template is a function returning ``(schedule, args)`` that asks ``get_config()`` for
its knobs. What ``get_config()`` answers depends on where the template is called:
creating a task records the space; instantiating a configuration answers with it; inside
``apply_history_best(log)``, the best configuration the log holds for that template and
those arguments; anywhere else, the fallback (no split, each knob's first value).
"""
from __future__ import annotations

import functools
import json
from contextlib import contextmanager

from .space import ConfigSpace

_TEMPLATES: dict = {}
_CHOICE: list = []        # the configuration a template being called is to use
_HISTORY: list = []       # apply_history_best contexts, innermost last


def template(name: str):
    """Register a template under ``name``: ``@autotvm.template("tutorial/matmul")``."""
    if not isinstance(name, str):
        raise TypeError(f"template: expected a name, got {name!r} (write "
                        "@autotvm.template(\"my/name\"))")

    def register(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            if kwargs:
                raise TypeError(f"template {name!r}: arguments are positional (a task is "
                                "keyed by them), got keywords {sorted(kwargs)}")
            cfg = _CHOICE[-1] if _CHOICE else _from_history(name, args)
            _CHOICE.append(cfg)
            try:
                return fn(*args)
            finally:
                _CHOICE.pop()
        call.template_name = name
        _TEMPLATES[name] = call
        return call
    return register


def get_config() -> ConfigSpace:
    """The configuration of the template being called (see the module docstring)."""
    if not _CHOICE:
        raise RuntimeError("get_config: call it inside a function registered with "
                           "@autotvm.template")
    return _CHOICE[-1]


def _from_history(name: str, args) -> ConfigSpace:
    for history in reversed(_HISTORY):
        entities = history.get((name, _key(args)))
        if entities is not None:
            return _Replay(entities)
    return ConfigSpace()


class _Replay(ConfigSpace):
    """A configuration read from a log: its entities, decoded as the template defines
    each knob."""

    def __init__(self, entities: list):
        super().__init__({})
        self.is_fallback = False
        self._json = {name: value for name, _, value in entities}

    def _define(self, name, make):
        super()._define(name, make)
        if name in self._json and name not in self.chosen:
            self.chosen[name] = self.space_map[name].from_json(self._json[name])


class Task:
    """One template on one set of arguments, for one target."""

    def __init__(self, name: str, args: tuple, target: str):
        self.name, self.args, self.target = name, tuple(args), target
        self.func = _TEMPLATES[name]
        space = ConfigSpace()
        _CHOICE.append(space)
        try:
            self.func(*self.args)
        finally:
            _CHOICE.pop()
        self.config_space = space
        self.flop = space.flop

    def instantiate(self, config: ConfigSpace):
        """``(schedule, args)`` of the template under ``config``."""
        _CHOICE.append(config)
        try:
            return self.func(*self.args)
        finally:
            _CHOICE.pop()

    @property
    def key(self) -> str:
        return json.dumps([self.name, list(self.args), self.target])

    def __repr__(self):
        return f"Task(func_name={self.name}, args={self.args}, target={self.target})"


def create(task_name: str, args, target="llvm", target_host=None) -> Task:
    """The task of template ``task_name`` on ``args`` (TVM ``autotvm.task.create``)."""
    if str(target).split()[0] != "llvm":
        raise ValueError(f"task.create: AutoTVM tasks here tune for the CPU (target "
                         f"'llvm'), got {target!r}; tune GPU templates with tensordsl tune")
    if task_name not in _TEMPLATES:
        raise ValueError(f"task.create: no template named {task_name!r}; registered: "
                         f"{sorted(_TEMPLATES)}")
    return Task(task_name, tuple(args), str(target))


@contextmanager
def apply_history_best(records):
    """Inside, a template called on arguments a log has measured uses the fastest
    configuration measured without error (``records``: a log file's path, or
    ``(MeasureInput, MeasureResult)`` pairs)."""
    from .record import best_by_workload
    _HISTORY.append(best_by_workload(records))
    try:
        yield
    finally:
        _HISTORY.pop()


def _key(args) -> str:
    """Arguments as a log file stores them (tuples become lists)."""
    return json.dumps(list(args))
