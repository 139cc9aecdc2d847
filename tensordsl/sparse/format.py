"""Sparse formats as TACO describes them: a list of per-dimension *levels*, stored in a
mode order, each level a way of storing the coordinates of one dimension.

* ``dense``: every coordinate ``0 .. N-1`` is present; nothing stored.
* ``compressed``: the coordinates present under each parent position are the run
  ``crd[pos[q] : pos[q + 1]]`` (``pos`` has one entry more than the parent level has
  positions); CSR's columns.
* ``singleton``: exactly one coordinate per parent position, ``crd[q]``; COO's columns.

A level is *ordered* (coordinates ascending within each run) and *unique* (no
repeats), or not: COO's row level is compressed and not unique (one entry per
nonzero), its column level singleton. Named formats:

    csr   (dense, compressed)               rows, then the columns of each row
    csc   (dense, compressed), order (1, 0) columns, then the rows of each column
    coo   (compressed non-unique, singleton) one (row, column) pair per nonzero
    dcsr  (compressed, compressed)          only the rows that have nonzeros
    bsr   (dense, compressed, dense, dense) blocks of ``block`` = (r, c): CSR of blocks

    td.Format(["dense", "compressed"])                  # CSR
    td.Format([td.Level("compressed", unique=False), "singleton"])   # COO
    td.Format.named("bsr", block=(4, 4))
"""
from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("dense", "compressed", "singleton")


@dataclass(frozen=True)
class Level:
    kind: str
    ordered: bool = True
    unique: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Level: kind must be one of {', '.join(KINDS)}, got "
                             f"{self.kind!r}")

    def __str__(self):
        flags = [f for f, on in (("unordered", not self.ordered),
                                 ("non-unique", not self.unique)) if on]
        return self.kind + (f"({', '.join(flags)})" if flags else "")


@dataclass(frozen=True)
class Format:
    """Levels in storage order; ``order[k]`` is the dimension level ``k`` stores (CSC:
    (1, 0)); ``block`` the block shape of a blocked format (BSR), whose last
    ``len(block)`` levels are dense and index inside a block."""
    levels: tuple
    order: tuple = None
    block: tuple = ()
    name: str = field(default="", compare=False)

    def __init__(self, levels, order=None, block=(), name: str = ""):
        levels = tuple(lv if isinstance(lv, Level) else Level(lv) for lv in levels)
        if not levels:
            raise ValueError("Format: expected at least one level")
        block = tuple(int(b) for b in block)
        outer = len(levels) - len(block)
        order = tuple(range(outer)) if order is None else tuple(int(d) for d in order)
        if sorted(order) != list(range(outer)):
            raise ValueError(f"Format: order must be a permutation of the {outer} "
                             f"dimensions, got {order}")
        if any(lv.kind != "dense" for lv in levels[outer:]):
            raise ValueError("Format: the levels inside a block must be dense")
        if levels[0].kind == "singleton":
            raise ValueError("Format: the first level cannot be singleton (it has no "
                             "parent positions)")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "block", block)
        object.__setattr__(self, "name", name)

    @property
    def ndim(self) -> int:
        return len(self.order)

    @classmethod
    def named(cls, name: str, block=(4, 4)) -> "Format":
        if name == "csr":
            return cls(["dense", "compressed"], name="csr")
        if name == "csc":
            return cls(["dense", "compressed"], order=(1, 0), name="csc")
        if name == "coo":
            return cls([Level("compressed", unique=False), "singleton"], name="coo")
        if name == "dcsr":
            return cls(["compressed", "compressed"], name="dcsr")
        if name == "bsr":
            return cls(["dense", "compressed", "dense", "dense"], block=block, name="bsr")
        raise ValueError(f"format: expected csr, csc, coo, dcsr, bsr or a td.Format, got "
                         f"{name!r}")

    def __str__(self):
        text = self.name or f"Format([{', '.join(map(str, self.levels))}]"
        if not self.name:
            if self.order != tuple(range(self.ndim)):
                text += f", order={self.order}"
            if self.block:
                text += f", block={self.block}"
            text += ")"
        return text


def as_format(format) -> Format:
    """A ``Format`` from a name or a ``Format``."""
    if isinstance(format, Format):
        return format
    if isinstance(format, str):
        return Format.named(format)
    raise TypeError(f"format: expected a name (csr, csc, coo, dcsr, bsr) or a td.Format, "
                    f"got {type(format).__name__}")
