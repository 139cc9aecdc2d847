"""Data types as strings: ``"float32"`` for a scalar, ``"float32x8"`` for an 8-lane vector.

Strings keep the IR printable and hashable; these helpers are the only place that
parses them.
"""
from __future__ import annotations

from functools import lru_cache

SCALAR_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8",
    "float16", "bfloat16", "float32", "float64",
)

#: dtype of loop variables, shape variables and every index computation.
INDEX_DTYPE = "int64"


@lru_cache(maxsize=None)
def _split(dtype: str) -> tuple[str, int]:
    if dtype in SCALAR_DTYPES:
        return dtype, 1
    base, sep, lanes = dtype.rpartition("x")
    if sep and base in SCALAR_DTYPES and lanes.isdigit() and int(lanes) > 1:
        return base, int(lanes)
    raise TypeError(f"dtype: expected one of {', '.join(SCALAR_DTYPES)} "
                    f"(optionally with lanes, e.g. 'float32x8'), got {dtype!r}")


def normalize(dtype) -> str:
    """Accept a dtype string or a numpy dtype/type; return the canonical string."""
    if not isinstance(dtype, str):
        import numpy as np
        try:
            dtype = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"dtype: expected a dtype name, got {dtype!r}") from None
    _split(dtype)
    return dtype


def element(dtype: str) -> str:
    return _split(dtype)[0]


def lanes(dtype: str) -> int:
    return _split(dtype)[1]


def with_lanes(dtype: str, n: int) -> str:
    base = element(dtype)
    return base if n == 1 else f"{base}x{n}"


def is_float(dtype: str) -> bool:
    return element(dtype) in ("float16", "bfloat16", "float32", "float64")


def is_int(dtype: str) -> bool:
    return element(dtype) in ("int8", "int16", "int32", "int64", "uint8")


def is_unsigned(dtype: str) -> bool:
    return element(dtype) == "uint8"


def is_bool(dtype: str) -> bool:
    return element(dtype) == "bool"


def bits(dtype: str) -> int:
    base = element(dtype)
    if base == "bool":
        return 8  # stored as one byte, like numpy
    return int("".join(ch for ch in base if ch.isdigit()))


def numpy_name(dtype: str) -> str:
    """The numpy dtype name that stores this element type."""
    base = element(dtype)
    if base == "bfloat16":
        raise TypeError("bfloat16 has no numpy dtype; pass its bits as uint16 arrays")
    return base


def promote(a: str, b: str) -> str:
    """The common type of a binary operation (like numpy, but a float wins over any int)."""
    if a == b:
        return a
    ea, eb = element(a), element(b)
    rank = {"bool": 0, "uint8": 1, "int8": 1, "int16": 2, "int32": 3, "int64": 4,
            "bfloat16": 5, "float16": 5, "float32": 6, "float64": 7}
    base = ea if rank[ea] >= rank[eb] else eb
    return with_lanes(base, max(lanes(a), lanes(b)))
