"""The compile cache: in memory per process and on disk, keyed by what decides the code:
the lowered IR or the generated source, the target, the toolchain, and the source of
every module of ours the code generator imports (``module_closure_hash``), so that a
changed helper deep in ``tensordsl.arith`` never reuses code compiled before the change.

Directory: ``$TENSORDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/tensordsl``, else
``~/.cache/tensordsl``. Each entry carries a checksum of its payload: a corrupt or
truncated file is detected, deleted and rebuilt, never loaded. Writes go to a temporary
file renamed into place, so readers never see half an entry.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

_MAGIC = b"TDCACHE1"
_memory: dict[str, bytes] = {}


def cache_dir() -> Path:
    explicit = os.environ.get("TENSORDSL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "tensordsl" if xdg else Path.home() / ".cache" / "tensordsl"


_FIRST_PARTY = ("tensordsl", "targets", "kernels", "schedules")


@functools.lru_cache(maxsize=None)
def module_closure_hash(*roots: str) -> str:
    """A hash of the source of ``roots`` (module names) and of every first-party module
    they import, directly or through others (read from the files, not imported)."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        seen[name] = Path(spec.origin)
        package = name if spec.submodule_search_locations else name.rpartition(".")[0]
        todo.extend(_imported_modules(seen[name], package))
    h = hashlib.sha256()
    for name in sorted(seen):
        h.update(name.encode() + b"\0" + seen[name].read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _imported_modules(path: Path, package: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[:len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            out.append(base)
            # ``from pkg import mod`` names a module when pkg is a package
            out += [f"{base}.{a.name}" for a in node.names
                    if _is_module(f"{base}.{a.name}")]
    return [m for m in out if m.split(".")[0] in _FIRST_PARTY]


def _is_module(name: str) -> bool:
    if name.split(".")[0] not in _FIRST_PARTY:
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def make_key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str, suffix: str) -> Path:
    return cache_dir() / key[:2] / f"{key}{suffix}"


def load(key: str, suffix: str = ".o") -> bytes | None:
    """The cached payload, or None if absent or damaged (a damaged file is removed)."""
    hit = _memory.get(key + suffix)
    if hit is not None:
        return hit
    path = _path(key, suffix)
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header = len(_MAGIC) + 32
    if raw[:len(_MAGIC)] == _MAGIC and len(raw) >= header:
        digest, payload = raw[len(_MAGIC):header], raw[header:]
        if hashlib.sha256(payload).digest() == digest:
            _memory[key + suffix] = payload
            return payload
    try:
        path.unlink()
    except OSError:
        pass
    return None


def store(key: str, payload: bytes, suffix: str = ".o"):
    _memory[key + suffix] = payload
    path = _path(key, suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full disk only costs a recompile next time


def clear_memory():
    _memory.clear()
