"""Which tuned configuration a build uses.

``best_config(workload_key, target)`` looks in, first found wins: the database of an
enclosing ``apply_history_best(db)``; the local database (``records.sqlite`` in the
cache directory), if there is one; the records shipped in ``schedules/records/``. None:
the template's defaults. A local database that cannot be read is skipped with one warning
(naming the file and what to do): a broken file never stops ``td.ops`` from running.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import warnings
from pathlib import Path

from .records import RecordDB, RecordDBError, default_path, record_target, served

_OVERRIDE: contextvars.ContextVar = contextvars.ContextVar("tensordsl_history", default=None)
SHIPPED = Path(__file__).resolve().parent.parent.parent / "schedules" / "records"
_WARNED: set = set()   # local databases already reported unreadable in this process


@contextlib.contextmanager
def apply_history_best(db):
    """Within the block, builds take their configurations from ``db`` (a path of an
    existing database, or a ``RecordDB``), before any other source."""
    db = db if isinstance(db, RecordDB) else RecordDB(db, create=False)
    token = _OVERRIDE.set(db)
    try:
        yield db
    finally:
        _OVERRIDE.reset(token)


@contextlib.contextmanager
def defaults_only():
    """Within the block, builds use the templates' default configurations and read no
    records (shipped, local or ``apply_history_best``'s): what a shape nobody tuned
    gets, e.g. to see what tuning bought."""
    token = _OVERRIDE.set(_DEFAULTS_ONLY)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


_DEFAULTS_ONLY = "defaults only"


def source_token():
    """Identifies where configurations come from now (part of td.ops's cache key)."""
    db = _OVERRIDE.get()
    return db if db is None or db is _DEFAULTS_ONLY else str(db.path)


def best_config(workload_key: str, target: str, template: str | None = None) -> dict | None:
    """The configuration of the best record for the workload on ``target`` (among
    ``template``'s, if given: another template's knobs mean nothing to this one)."""
    rec = best_record(workload_key, target, template)
    return None if rec is None else rec["config"]


def best_record(workload_key: str, target: str, template: str | None = None) -> dict | None:
    """The best record itself (``config``, ``template``, ``source``, ...), from the first
    source that has one."""
    target = record_target(target)
    db = _OVERRIDE.get()
    if db is _DEFAULTS_ONLY:
        return None
    if db is not None:
        rec = db.best(workload_key, target, template)
        if rec is not None:
            return rec
    path = default_path()
    if path.exists():
        try:
            with RecordDB(path) as local:
                rec = local.best(workload_key, target, template)
        except RecordDBError as err:
            if str(path) not in _WARNED:
                _WARNED.add(str(path))
                warnings.warn(f"{err}; using the shipped records and defaults meanwhile",
                              stacklevel=3)
            rec = None
        if rec is not None:
            return rec
    shipped = _shipped().get((workload_key, target, template))
    return None if shipped is None else {"config": dict(shipped[1]), "template": shipped[0],
                                         "source": None}


@functools.cache
def _shipped() -> dict:
    """{(workload, target, template or None): (template, config)} of the shipped
    records, each the one a build takes (``records.served``: the fastest by its median
    time, or the faster inside the step where a step check chose)."""
    groups: dict = {}
    for path in sorted(SHIPPED.glob("*.jsonl")) if SHIPPED.is_dir() else []:
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                for key in ((rec["workload"], rec["target"], rec["template"]),
                            (rec["workload"], rec["target"], None)):
                    groups.setdefault(key, []).append(rec)
    best = {key: served(recs) for key, recs in groups.items()}
    return {key: (rec["template"], rec["config"]) for key, rec in best.items()
            if rec is not None}
