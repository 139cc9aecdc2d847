"""The compile cache: in memory per process and on disk, keyed by a hash of the lowered
IR, the target and the toolchain (the backend's fingerprint).

Directory: ``$TENSORDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/tensordsl``, else
``~/.cache/tensordsl``. Each entry carries a checksum of its payload: a corrupt or
truncated file is detected, deleted and rebuilt, never loaded. Writes go to a temporary
file renamed into place, so readers never see half an entry.
"""
from __future__ import annotations

import hashlib
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
