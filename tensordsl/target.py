"""``td.target.Target``: a compilation target as a context (TVM ``tvm.target.Target``).

    with td.target.Target("llvm"):
        f = td.build(s, args)            # built for the target of the innermost block

``td.build`` and ``td.lower`` without a ``target`` use the innermost enclosing one, else
``"llvm"``.
"""
from __future__ import annotations

from targets.base import Target as _Parsed

_CURRENT: list = []


class Target:
    """A target by name (``"llvm"``, ``"cuda"``, ``"cuda -arch=sm_80"``)."""

    def __init__(self, target):
        self.parsed = _Parsed.parse(str(target) if isinstance(target, Target) else target)
        self.kind = self.parsed.kind

    @staticmethod
    def current(allow_none: bool = True):
        """The innermost enclosing target (None outside any, or an error where
        ``allow_none`` is false)."""
        if _CURRENT:
            return _CURRENT[-1]
        if not allow_none:
            raise ValueError("Target.current: no enclosing 'with td.target.Target(...)'")
        return None

    def __enter__(self):
        _CURRENT.append(self)
        return self

    def __exit__(self, *exc):
        _CURRENT.pop()

    def __str__(self):
        return str(self.parsed)

    def __repr__(self):
        return f"Target({str(self)!r})"


def resolve(target):
    """``target`` as ``td.build`` takes it: given, else the enclosing one, else llvm."""
    if target is None:
        current = Target.current()
        return str(current) if current is not None else "llvm"
    return str(target) if isinstance(target, Target) else target
