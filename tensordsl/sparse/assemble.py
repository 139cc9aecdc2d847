"""A format's arrays from coordinates, and coordinates from a format's arrays: TACO's
assembly and iteration, level by level, in vectorized numpy.

Every level turns the positions of its parent into its own (``format.py``):

    dense N       position p*N + c for each parent position p and coordinate c < N
    compressed    one position per stored coordinate; pos[p]..pos[p+1] are those under p
    singleton     the parent's positions, one coordinate each

``pack`` sorts the entries in storage order, numbers each level's positions, and sums
the values that land on one position of the last level (duplicates, for a format whose
levels are all unique). Below the first non-unique level (COO's rows) every entry
keeps a position of its own, so a COO array keeps its duplicates. ``unpack`` walks
the levels the other way and lists every stored value with its coordinates (the
zeros a dense level stores too).

    pack(coords, values, (3, 4), Format.named("csr"))   # coords: (ndim, n) ints
    # {"pos1": ..., "crd1": ..., "vals": ...}           # component_names' order
"""
from __future__ import annotations

import numpy as np

from .format import Format

#: pos and crd are int32 (``tensor.py``): no extent, nor number of entries, may exceed this
INT32_MAX = 2**31 - 1


def outer_levels(format: Format) -> tuple:
    """The levels that store coordinates of the tensor (all but a block's dense ones)."""
    return format.levels[:format.ndim]


def block_shape(format: Format) -> tuple:
    """Each dimension's block extent (1 everywhere for a format without blocks)."""
    return format.block or (1,) * format.ndim


def level_extents(shape, format: Format) -> list:
    """The number of coordinates of each outer level, in storage order: the extent of
    the dimension it stores, counted in blocks for a blocked format."""
    block = block_shape(format)
    return [shape[d] // block[d] for d in format.order]


def component_names(format: Format) -> list:
    """The names of the arrays a format stores, in a kernel's argument order (that of
    ``SparseTensor.placeholders()``): each level's ``pos{k}`` then ``crd{k}``, then
    ``vals``."""
    names = []
    for k, level in enumerate(outer_levels(format)):
        if level.kind == "compressed":
            names += [f"pos{k}", f"crd{k}"]
        elif level.kind == "singleton":
            names.append(f"crd{k}")
    return names + ["vals"]


def check_shape(shape, format: Format) -> None:
    """Refuse a shape the format cannot describe (ndim, block divisibility, int32
    coordinates)."""
    if len(shape) != format.ndim:
        raise ValueError(f"shape {shape} has {len(shape)} dimensions, format {format} "
                         f"has {format.ndim}")
    if format.block and (len(format.block) != format.ndim or min(format.block) < 1):
        raise ValueError(f"format {format}: the block {format.block} needs a positive "
                         f"extent for each of the {format.ndim} dimensions")
    for d, (extent, b) in enumerate(zip(shape, block_shape(format))):
        if extent < 0:
            raise ValueError(f"shape {shape}: dimension {d} is negative")
        if extent > INT32_MAX:
            raise ValueError(f"shape {shape}: dimension {d} ({extent}) does not fit the "
                             f"int32 coordinates of a sparse array")
        if extent % b:
            raise ValueError(f"shape {shape}: dimension {d} ({extent}) is not a multiple "
                             f"of the block {format.block}")


def _offsets(counts: np.ndarray) -> np.ndarray:
    """A pos array from the number of coordinates under each parent position."""
    pos = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=pos[1:])
    return pos


def pack(coords: np.ndarray, values: np.ndarray, shape, format: Format) -> dict:
    """The arrays of ``format`` holding ``values`` at ``coords`` (one column per entry,
    one row per dimension, in dimension order), by ``component_names``; pos and crd are
    int64 here (``SparseArray`` stores them as int32 once validated)."""
    check_shape(shape, format)
    ndim, n = coords.shape
    block = block_shape(format)
    coords = coords.astype(np.int64, copy=False)
    stored = [coords[d] // block[d] for d in format.order]      # storage order
    if n:
        # stable: duplicates keep their input order (a COO array keeps them in it)
        perm = np.lexsort(stored[::-1])
        stored, coords, values = [c[perm] for c in stored], coords[:, perm], values[perm]
    levels = outer_levels(format)
    first_non_unique = next((k for k, lv in enumerate(levels) if not lv.unique), len(levels))
    arrays = {}
    parent = np.zeros(n, np.int64)          # each entry's position in the level above
    positions = 1
    for k, (level, extent, c) in enumerate(zip(levels, level_extents(shape, format), stored)):
        if level.kind == "dense":
            parent = parent * extent + c
            positions *= extent
            continue
        new = np.ones(n, bool)              # entries that open a position of this level
        if k < first_non_unique and n:
            new[1:] = (parent[1:] != parent[:-1]) | (c[1:] != c[:-1])
        counts = np.bincount(parent[new], minlength=positions)
        arrays[f"crd{k}"] = c[new]
        if level.kind == "compressed":
            arrays[f"pos{k}"] = _offsets(counts)
            parent = np.cumsum(new) - 1
            positions = int(np.count_nonzero(new))
        else:   # singleton: the parent's positions, exactly one coordinate each
            wrong = np.flatnonzero(counts != 1)
            if len(wrong):
                raise ValueError(f"format {format} cannot hold these coordinates: its "
                                 f"singleton level {k} stores exactly one coordinate per "
                                 f"position of level {k - 1}, position {wrong[0]} has "
                                 f"{counts[wrong[0]]}")
    vals = np.zeros((positions, *format.block), values.dtype)
    inside = tuple(coords[d] % block[d] for d in range(ndim)) if format.block else ()
    # entries sorted: a duplicate sits next to its twin
    duplicates = n > 1 and bool((coords[:, 1:] == coords[:, :-1]).all(axis=0).any())
    if duplicates:
        np.add.at(vals, (parent, *inside), values)
    else:
        vals[(parent, *inside)] = values
    arrays["vals"] = vals
    return {name: arrays[name] for name in component_names(format)}


def unpack(arrays: dict, shape, format: Format) -> tuple:
    """Every stored value with its coordinates: ``(coords, values)``, ``coords`` of shape
    (ndim, number of values) in dimension order, in storage order of the entries."""
    stored = []         # per level so far: the coordinate of each position of this level
    positions = 1
    for k, (level, extent) in enumerate(zip(outer_levels(format),
                                            level_extents(shape, format))):
        if level.kind == "dense":
            stored = [np.repeat(c, extent) for c in stored]
            stored.append(np.tile(np.arange(extent, dtype=np.int64), positions))
            positions *= extent
            continue
        crd = np.asarray(arrays[f"crd{k}"], np.int64)
        if level.kind == "compressed":
            counts = np.diff(np.asarray(arrays[f"pos{k}"], np.int64))
            parent = np.repeat(np.arange(positions), counts)
            stored = [c[parent] for c in stored]
        stored.append(crd)
        positions = len(crd)
    vals = np.asarray(arrays["vals"])
    block = block_shape(format)
    inside = np.indices(block).reshape(format.ndim, -1)    # offsets within one block
    coords = np.empty((format.ndim, positions * inside.shape[1]), np.int64)
    for k, d in enumerate(format.order):
        coords[d] = (stored[k][:, None] * block[d] + inside[d][None, :]).ravel()
    return coords, vals.reshape(-1)
