"""The knobs of each CPU template and the values a tuner may try.

``space_for(template_name)`` gives ``{knob: [values]}``; every combination is legal (a
template treats a knob that does not apply to a shape as a no-op), some are slow. The
sparse operators' templates are named after their operators (``spmm``; their spaces
live beside them in ``sparse.py``).
"""
from __future__ import annotations

from .target import num_threads, vector_lanes


def defaults_for(template: str) -> dict:
    """The template's default configuration, spelled out (the first trial of a tuning)."""
    from . import sparse
    if template in sparse.TEMPLATES:
        return sparse.default_config(template)
    if template == "matmul":
        from .matmul import default_config
        return default_config()
    if template == "conv2d":
        return {}  # mr, nr, fb, yb, tb, pb, nv: chosen per shape unless tuned
    if template == "rowwise":
        return {"lanes": vector_lanes(32), "prefetch": 1}  # stream: chosen per shape
    return {}


def space_for(template: str) -> dict:
    from . import sparse
    if template in sparse.TEMPLATES:
        return sparse.space(template)
    lanes = vector_lanes(32)
    vectors = [lanes, 2 * lanes, 4 * lanes]
    threads = num_threads()
    if template == "matmul":
        return {"mr": [4, 6, 8, 12], "nr": vectors, "mc": [12, 24, 36, 48, 72, 96, 144],
                "kc": [64, 128, 192, 256, 384, 512], "ku": [1, 2, 4],
                "parts": sorted({threads, 2 * threads}), "transpose": [False, True],
                "row_split": [False, True]}
    if template == "conv2d":
        return {"mr": [4, 6, 8, 12], "nr": vectors, "fb": [2, 4, 8], "yb": [1, 2, 4],
                "pack": [False, True], "tb": [1, 2, 4], "pb": [4, 6, 8, 12], "nv": [1, 2, 4]}
    if template == "rowwise":
        return {"lanes": [8, 16] if lanes >= 16 else [4, 8], "prefetch": [0, 1, 2],
                "stream": [False, True]}
    if template == "generic":
        return {"stream": [False, True]}
    return {}
