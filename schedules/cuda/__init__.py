"""GPU schedule templates: ``schedule_for(op_name, out, attrs=None, config=None)``.

Same contract as the CPU templates (``schedules/cpu``): each schedules the stages of one
operator's compute definition given a config of knobs, bound to CUDA blocks and threads.
Operators without a template of their own get the generic one (``generic.py``).
"""
from __future__ import annotations

import tensordsl as td

from . import conv2d, generic, matmul, rowwise

TEMPLATES = {
    "matmul": matmul.schedule_matmul,
    "dense": matmul.schedule_matmul,
    "batch_matmul": matmul.schedule_matmul,
    "conv2d_nchw": conv2d.schedule_conv2d_nchw,
    "softmax": rowwise.schedule_rowwise,
    "log_softmax": rowwise.schedule_rowwise,
    "layer_norm": rowwise.schedule_rowwise,
}


def schedule_for(name: str, out, attrs: dict | None = None, config: dict | None = None):
    s = td.create_schedule(out.op)
    TEMPLATES.get(name, generic.schedule_generic)(s, out, config)
    return s
