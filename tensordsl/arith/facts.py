"""Cheap structural facts about index expressions (no bounds needed)."""
from __future__ import annotations

from ..ir import nodes as n


def multiple_of(e, k: int) -> bool:
    """Whether ``e`` is certainly a multiple of ``k``."""
    if isinstance(e, n.IntImm):
        return e.value % k == 0
    if isinstance(e, (n.Add, n.Sub)):
        return multiple_of(e.a, k) and multiple_of(e.b, k)
    if isinstance(e, n.Mul):
        return multiple_of(e.a, k) or multiple_of(e.b, k)
    if isinstance(e, n.FloorMod):
        return multiple_of(e.a, k) and multiple_of(e.b, k)
    if isinstance(e, n.Call) and e.name == "bitwise_xor" and k & (k - 1) == 0:
        # (a swizzled offset: the low bits of both are zero, so are the result's)
        return multiple_of(e.args[0], k) and multiple_of(e.args[1], k)
    return False
