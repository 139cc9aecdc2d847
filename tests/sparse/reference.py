"""A plain-Python reading of a sparse format's arrays, written from TACO's definitions
with loops and no numpy tricks: the oracle the vectorized checks and conversions of
``tensordsl/sparse`` are compared with.

``read(shape, format, arrays)`` gives the dense tensor the arrays describe, or None
where they break the format's rules (``tensordsl/sparse/validate.py`` lists them).
"""
from __future__ import annotations

import numpy as np

INT32 = (-2**31, 2**31 - 1)


def _ints(a) -> list | None:
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        return None
    values = [int(x) for x in a]
    if any(not INT32[0] <= x <= INT32[1] for x in values):
        return None
    return values


def read(shape, format, arrays: dict):
    """The dense tensor of ``arrays`` (keyed pos{k}, crd{k}, vals), or None if invalid."""
    ndim = format.ndim
    block = format.block or (1,) * ndim
    if len(shape) != ndim or any(s % b for s, b in zip(shape, block)):
        return None
    prefixes = [()]                  # the coordinates above, of each position of a level
    for k, level in enumerate(format.levels[:ndim]):
        extent = shape[format.order[k]] // block[format.order[k]]
        if level.kind == "dense":
            prefixes = [p + (c,) for p in prefixes for c in range(extent)]
            continue
        crd = _ints(arrays[f"crd{k}"])
        if crd is None or any(not 0 <= c < extent for c in crd):
            return None
        if level.kind == "compressed":
            pos = _ints(arrays[f"pos{k}"])
            if pos is None or len(pos) != len(prefixes) + 1 or pos[0] != 0 \
                    or pos[-1] != len(crd) or any(b < a for a, b in zip(pos, pos[1:])):
                return None
            below = []
            for p, prefix in enumerate(prefixes):
                run = crd[pos[p]:pos[p + 1]]
                if level.ordered and any(b < a for a, b in zip(run, run[1:])):
                    return None
                if level.unique and len(set(run)) != len(run):
                    return None
                below += [prefix + (c,) for c in run]
            prefixes = below
        else:   # singleton
            if len(crd) != len(prefixes):
                return None
            if level.ordered and any(prefixes[q] == prefixes[q - 1] and crd[q] < crd[q - 1]
                                     for q in range(1, len(crd))):
                return None
            prefixes = [p + (c,) for p, c in zip(prefixes, crd)]
    vals = np.asarray(arrays["vals"])
    if vals.dtype.kind not in "biuf" or vals.shape != (len(prefixes), *format.block):
        return None
    dense = np.zeros(shape, vals.dtype)
    for prefix, value in zip(prefixes, vals):
        for inside in np.ndindex(*block):
            at = [0] * ndim
            for k, d in enumerate(format.order):
                at[d] = prefix[k] * block[d] + inside[d]
            dense[tuple(at)] += value[inside] if format.block else value
    return dense
