"""The interface every backend implements, and the registry ``td.build`` uses.

A backend renders a lowered ``PrimFunc`` to source (``codegen``), compiles source to a
loadable binary (``compile``; never renders), and loads a binary into a callable
(``load``). ``fingerprint`` names everything besides the IR that decides the binary
(toolchain versions, CPU), so the compile cache can key on it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol


@dataclass(frozen=True)
class Target:
    kind: str            # "llvm" or "cuda"
    options: tuple = ()  # (key, value) pairs, e.g. (("arch", "sm_90"),)

    @staticmethod
    def parse(spec) -> "Target":
        if isinstance(spec, Target):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"target: expected a name such as 'llvm' or 'cuda', got {spec!r}")
        kind, *opts = spec.split()
        options = []
        for o in opts:
            key, _, value = o.lstrip("-").partition("=")
            options.append((key, value))
        return Target(kind, tuple(sorted(options)))

    def __str__(self):
        return " ".join([self.kind] + [f"-{k}={v}" for k, v in self.options])


class Backend(Protocol):
    name: str

    def fingerprint(self, target: Target) -> str: ...
    def cache_key(self, func, target: Target, source: Callable[[], Any]) -> str: ...
    def codegen(self, func, target: Target) -> Any: ...
    def compile(self, source, target: Target) -> bytes: ...
    def load(self, binary: bytes, func, target: Target) -> Callable: ...
    def source_text(self, source, kind: str) -> str: ...


_BACKENDS: dict[str, Backend] = {}
_MODULES = {"llvm": "targets.llvm", "cuda": "targets.cuda"}


def register_backend(name: str, backend: Backend):
    _BACKENDS[name] = backend


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS and name in _MODULES:
        importlib.import_module(_MODULES[name])
    backend = _BACKENDS.get(name)
    if backend is None:
        raise ValueError(f"target: unknown target {name!r}; available: "
                         f"{', '.join(sorted(set(_MODULES) | set(_BACKENDS)))}")
    return backend
