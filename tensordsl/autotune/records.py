"""The tuning record database: one SQLite file, nothing to start.

Every measured trial is one row, committed the moment it is measured, so killing a tuner
loses at most the trial in flight. Two tuners may write one file at once: SQLite's
write-ahead log and a busy timeout serialize their short transactions. Each record has a
``uid`` (a hash of what it is), so importing the same records twice adds nothing.

Each record also carries the workload's readable ``name`` (``matmul(96x64, 64x80)``,
``my_op.py:bias_relu(512, 256)``) and, for a user's file, its ``source`` (the call and a
hash of the file's text, so the tuner can tell records of an older version of the file).

The schema is versioned (``meta.schema_version``); a file from a newer tensordsl is
refused with a clear error rather than misread, one from an older is upgraded in place.
A file that SQLite cannot read raises ``RecordDBError`` naming the file and what to do.

A kernel checked inside the program that runs it (``tune-model``'s step check,
``in_step.py``) has two more records, its default and its tuned configuration each with
the time it took there (run ``.../in-step``): until the workload is tuned again, a build
takes the one that was faster in the program (``served``).

A trial measured on a cluster also notes the worker that ran it (``measured_by``, a side
table: the records themselves, their export and their identity are unchanged).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import statistics
import time
from pathlib import Path

SCHEMA_VERSION = 2
CONFIRM_RUN = "/confirm"   # the end of the run id of a confirming round's measurements
IN_STEP_RUN = "/in-step"   # ... of a step check's (the kernel timed inside its program)
STATUSES = ("ok", "error", "wrong", "timeout", "crash")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    workload TEXT NOT NULL,
    target TEXT NOT NULL,
    template TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    seconds REAL,
    gflops REAL,
    error TEXT,
    created REAL NOT NULL,
    run TEXT NOT NULL,
    name TEXT,
    source TEXT
);
CREATE INDEX IF NOT EXISTS trials_workload ON trials (workload, target, status, seconds);
CREATE TABLE IF NOT EXISTS measured_by (uid TEXT PRIMARY KEY, worker TEXT NOT NULL);
"""

FIELDS = ("uid", "workload", "target", "template", "config", "status", "seconds", "gflops",
          "error", "created", "run", "name", "source")
_ADDED_IN_2 = ("name", "source")   # columns a version-1 file lacks (added when opened)


def fastest(records: list[dict]) -> dict | None:
    """Of successful ``records`` of one workload, the first record of the configuration
    (and template) whose median time is least, with that median as its ``seconds``. One
    lucky or unlucky measurement does not decide alone where a configuration was measured
    again."""
    times: dict = {}
    first: dict = {}
    for rec in records:
        if rec["status"] != "ok" or rec["seconds"] is None:
            continue
        key = (rec["template"], canonical(rec["config"]))
        times.setdefault(key, []).append(rec["seconds"])
        first.setdefault(key, rec)
    if not times:
        return None
    key = min(times, key=lambda k: (statistics.median(times[k]), first[k]["seconds"]))
    rec = dict(first[key])
    median = statistics.median(times[key])
    if rec.get("gflops"):
        rec["gflops"] = rec["gflops"] * rec["seconds"] / median
    rec["seconds"], rec["measurements"] = median, len(times[key])
    return rec


def served(records: list[dict]) -> dict | None:
    """The record a build takes of ``records`` (one workload, target and template; each
    with its ``run`` and ``created``): the faster of the latest step check's two
    (``IN_STEP_RUN``) where that check is newer than every successful trial, else
    ``fastest``."""
    records = [r for r in records if r["status"] == "ok"]
    checked = [r for r in records if r["run"].endswith(IN_STEP_RUN)]
    searched = [r for r in records if not r["run"].endswith(IN_STEP_RUN)]
    newest = max((r["created"] for r in searched), default=float("-inf"))
    checked = [r for r in checked if r["created"] > newest]
    if checked:
        latest = max(checked, key=lambda r: r["created"])["run"]
        return fastest([r for r in checked if r["run"] == latest])
    return fastest(searched)


class RecordDBError(ValueError):
    """A record database that cannot be opened or read; the message names the file."""


def default_path() -> Path:
    from targets.cache import cache_dir
    return cache_dir() / "records.sqlite"


def record_target(target: str) -> str:
    """What records are filed under: the target plus the CPU it was measured on, so that
    records tuned on one CPU are not taken for another's."""
    if target.split()[0] == "llvm" and "-mcpu=" not in target:
        import llvmlite.binding as llvm
        return f"{target} -mcpu={llvm.get_host_cpu_name()}"
    return target


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class RecordDB:
    """``RecordDB(path)``; ``add`` one trial, query with ``trials`` and ``best``."""

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True):
        """``create=False`` (the read-only commands): a missing file is an error, not a
        new empty database."""
        self.path = Path(path) if path is not None else default_path()
        if not create and not self.path.is_file():
            raise RecordDBError(f"no record database at {str(self.path)!r} (check the path; "
                                "tensordsl tune creates one)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise self._error(err) from None
        self._execute("PRAGMA busy_timeout = 60000")
        self._execute("PRAGMA journal_mode = WAL")
        try:
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise self._error(err) from None
        self._check_version()

    def _error(self, err: Exception) -> RecordDBError:
        return RecordDBError(
            f"record database {str(self.path)!r} cannot be read ({err}): move it away or "
            "delete it (its records are lost; tensordsl tune starts a new one), or choose "
            "another file with --db / apply_history_best")

    def _execute(self, sql: str, params=()):
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as err:
            raise self._error(err) from None

    def _check_version(self):
        row = self._execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                          (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RecordDBError(f"record database {str(self.path)!r} has schema version "
                                f"{row[0]}; this tensordsl reads up to {SCHEMA_VERSION}")
        elif int(row[0]) < SCHEMA_VERSION:
            have = {r[1] for r in self._execute("PRAGMA table_info(trials)").fetchall()}
            for column in _ADDED_IN_2:
                if column not in have:
                    self._execute(f"ALTER TABLE trials ADD COLUMN {column} TEXT")
            self._execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                          (str(SCHEMA_VERSION),))

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ writing
    def add(self, workload: str, target: str, template: str, config: dict, status: str,
            seconds: float | None = None, gflops: float | None = None,
            error: str | None = None, run: str = "", created: float | None = None,
            name: str | None = None, source: str | None = None,
            worker: str | None = None) -> bool:
        """Store one trial (its own transaction). False if an identical record exists.
        ``name``: the workload as a person reads it; ``source``: a user file's call;
        ``worker``: the address of the cluster worker that ran it."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        created = time.time() if created is None else created
        cfg = canonical(config)
        uid = hashlib.sha256(canonical([workload, target, template, cfg, status, seconds,
                                        created, run]).encode()).hexdigest()[:32]
        row = (uid, workload, target, template, cfg, status, seconds, gflops, error, created,
               run, name, source)
        insert = (f"INSERT OR IGNORE INTO trials ({', '.join(FIELDS)}) VALUES "
                  f"({', '.join('?' * len(FIELDS))})")
        if worker is None:
            return self._execute(insert, row).rowcount == 1
        try:   # the trial and its worker in one transaction
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                added = self._conn.execute(insert, row).rowcount == 1
                self._conn.execute("INSERT OR IGNORE INTO measured_by VALUES (?, ?)",
                                   (uid, worker))
        except sqlite3.Error as err:
            raise self._error(err) from None
        return added

    def delete(self, workload: str, failed_only: bool = False) -> int:
        """Remove the records of ``workload`` (a key; only the failed ones with
        ``failed_only``); returns how many."""
        sql = "DELETE FROM trials WHERE workload = ?"
        if failed_only:
            sql += " AND status != 'ok'"
        return self._execute(sql, (workload,)).rowcount

    # ------------------------------------------------------------ reading
    def _rows(self, sql: str, params=()) -> list[dict]:
        cur = self._execute(sql, params)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            rec = dict(zip(names, row))
            rec["config"] = json.loads(rec["config"])
            out.append(rec)
        return out

    def trials(self, workload: str | None = None, target: str | None = None,
               template: str | None = None, confirming: bool = False,
               in_step: bool = False) -> list[dict]:
        """The search's trials, oldest first (with ``confirming``, also the measurements
        of the confirming rounds, ``tuner.confirm``, whose run ends in ``/confirm``; with
        ``in_step``, also the step checks' times, which no search compares with its
        own)."""
        where, params = [], []
        if not confirming:
            where.append(f"run NOT LIKE '%{CONFIRM_RUN}'")
        if not in_step:
            where.append(f"run NOT LIKE '%{IN_STEP_RUN}'")
        if template is not None:
            where.append("template = ?")
            params.append(template)
        if workload is not None:
            where.append("workload = ?")
            params.append(workload)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        sql = f"SELECT {', '.join(FIELDS)} FROM trials"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self._rows(sql + " ORDER BY id", params)

    def best(self, workload: str, target: str, template: str | None = None,
             in_step: bool = True) -> dict | None:
        """The record of the fastest configuration among the successful trials (of
        ``template``'s configurations, if given). A configuration measured more than once
        (the tuner's confirming rounds, ``tuner.confirm``) counts with the median of its
        times: the returned record's ``seconds`` (and ``gflops``), with ``measurements``
        how many there were. Where a step check is newer than every trial, the record it
        kept (``served``), with its time inside the step; ``in_step=False``: the trials'
        fastest alone (what the tuner compares its trials with)."""
        # (the tuner asks after every trial: the times alone, configurations as their
        # stored canonical text, and then the one winning row in full)
        sql = ("SELECT id, template, config, seconds, run, created FROM trials WHERE "
               "workload = ? AND target = ? AND status = 'ok'")
        params = [workload, target]
        if template is not None:
            sql += " AND template = ?"
            params.append(template)
        if not in_step:
            sql += f" AND run NOT LIKE '%{IN_STEP_RUN}'"
        times = [{"id": i, "status": "ok", "template": t, "config": c, "seconds": sec,
                  "run": run, "created": created}
                 for i, t, c, sec, run, created in
                 self._execute(sql + " ORDER BY id", params).fetchall()]
        best = served(times)
        if best is None:
            return None
        (rec,) = self._rows(f"SELECT {', '.join(FIELDS)} FROM trials WHERE id = ?",
                            (best["id"],))
        if rec.get("gflops"):
            rec["gflops"] = rec["gflops"] * rec["seconds"] / best["seconds"]
        rec["seconds"], rec["measurements"] = best["seconds"], best["measurements"]
        return rec

    def workers(self) -> dict[str, str]:
        """{trial uid: address of the cluster worker that ran it} (trials run on a
        cluster only)."""
        return dict(self._execute("SELECT uid, worker FROM measured_by").fetchall())

    def workloads(self) -> list[tuple[str, str, int, float | None]]:
        """(workload, target, trials, best seconds) for every workload stored (trials:
        the searches'; best: ``best``'s, a median where measured again)."""
        rows = self._execute(
            f"SELECT workload, target, COUNT(CASE WHEN run NOT LIKE '%{CONFIRM_RUN}' "
            f"AND run NOT LIKE '%{IN_STEP_RUN}' THEN 1 END) FROM trials GROUP BY workload, target ORDER BY workload").fetchall()
        out = []
        for workload, target, n in rows:
            best = self.best(workload, target)
            out.append((workload, target, n, None if best is None else best["seconds"]))
        return out

    def failed_counts(self) -> dict[tuple[str, str], int]:
        """{(workload, target): trials that did not run correctly}."""
        rows = self._execute("SELECT workload, target, COUNT(*) FROM trials WHERE "
                             "status != 'ok' GROUP BY workload, target").fetchall()
        return {(w, t): n for w, t, n in rows}

    def names(self) -> dict[str, str]:
        """{workload key: its readable name} (the latest name stored for it)."""
        rows = self._execute("SELECT workload, name FROM trials WHERE name IS NOT NULL "
                             "ORDER BY id").fetchall()
        return dict(rows)

    # ------------------------------------------------------------ JSON lines
    def export_jsonl(self, out, best_only: bool = False) -> int:
        """Write the records as JSON lines; with ``best_only``, only those of the fastest
        configuration of each (workload, target, template) (every measurement of it, so
        that its median travels too): what a build reads, the form to ship in
        ``schedules/records/``."""
        records = self.trials(confirming=True, in_step=True)
        if best_only:
            groups: dict = {}
            for rec in records:
                groups.setdefault((rec["workload"], rec["target"], rec["template"]),
                                  []).append(rec)
            keep = set()
            for group in groups.values():
                best = served(group)
                if best is not None:
                    keep.add((best["workload"], best["target"], best["template"],
                              canonical(best["config"])))
            records = [r for r in records if r["status"] == "ok" and
                       (r["workload"], r["target"], r["template"], canonical(r["config"]))
                       in keep]
        for rec in records:
            out.write(canonical(rec) + "\n")
        return len(records)

    def import_jsonl(self, lines) -> tuple[int, int]:
        """Add records from JSON lines; returns (added, already present)."""
        added = skipped = 0
        for k, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                fields = {f: rec[f] for f in FIELDS if f not in ("uid",) + _ADDED_IN_2}
                fields.update({f: rec.get(f) for f in _ADDED_IN_2})
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"line {k}: not a tuning record ({err})") from None
            if self.add(**fields):
                added += 1
            else:
                skipped += 1
        return added, skipped
