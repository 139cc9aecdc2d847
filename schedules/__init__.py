"""Schedule templates per operator and target, and shipped tuned records.

Which template schedules an operator is the same on every target (``template_name``);
each target (``cpu/``, ``cuda/``) maps template names to its own scheduling functions.
"""
from __future__ import annotations

TEMPLATE_NAMES = {
    "matmul": "matmul", "dense": "matmul", "batch_matmul": "matmul",
    "conv2d_nchw": "conv2d", "softmax": "rowwise", "log_softmax": "rowwise",
    "layer_norm": "rowwise", "capsule_routing": "capsule_routing",
}


def template_name(op_name: str) -> str:
    """The template an operator is scheduled with (its CPU knob space: ``cpu.space``)."""
    return TEMPLATE_NAMES.get(op_name, "generic")


def schedule_with(templates: dict, name: str, out, config: dict | None = None):
    """A fresh schedule of ``out`` by the target's template for operator ``name``."""
    import tensordsl as td
    s = td.create_schedule(out.op)
    # (a template a target does not have: its generic one)
    templates.get(template_name(name), templates["generic"])(s, out, config)
    return s
