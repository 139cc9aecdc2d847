"""CPU schedule templates: ``schedule_for(op_name, out, attrs, config=None)``.

Each template schedules the stages of one operator's compute definition given a config
of knobs; ``default_config`` gives values that suit this machine. Operators without a
template of their own get the generic one for their structure (``generic.py``).
"""
from __future__ import annotations

import tensordsl as td

from . import conv2d, generic, matmul, rowwise

TEMPLATE_NAMES = {
    "matmul": "matmul", "dense": "matmul", "batch_matmul": "matmul",
    "conv2d_nchw": "conv2d", "softmax": "rowwise", "log_softmax": "rowwise",
    "layer_norm": "rowwise",
}

TEMPLATES = {
    "matmul": matmul.schedule_matmul,
    "dense": matmul.schedule_matmul,
    "batch_matmul": matmul.schedule_matmul,
    "conv2d_nchw": conv2d.schedule_conv2d_nchw,
    "softmax": rowwise.schedule_rowwise,
    "log_softmax": rowwise.schedule_rowwise,
    "layer_norm": rowwise.schedule_rowwise,
}


def template_name(op_name: str) -> str:
    """The template an operator is scheduled with (its knob space: ``space.space_for``)."""
    return TEMPLATE_NAMES.get(op_name, "generic")


def schedule_for(name: str, out, attrs: dict | None = None, config: dict | None = None):
    s = td.create_schedule(out.op)
    template = TEMPLATES.get(name, generic.schedule_generic)
    template(s, out, config)
    return s
