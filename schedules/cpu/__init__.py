"""CPU schedule templates: ``schedule_for(op_name, out, attrs, config=None)``.

Each template schedules the stages of one operator's compute definition given a config
of knobs; ``default_config`` gives values that suit this machine. Operators without a
template of their own get the generic one for their structure (``generic.py``).
"""
from __future__ import annotations

from .. import TEMPLATE_NAMES, schedule_with, template_name  # noqa: F401 (re-exported)
from . import capsule, conv2d, generic, matmul, rowwise

# options of an operator's definition that suit these templates, where the caller left
# them: a convolution's form (``kernels.dense.conv2d_nchw``)
PREFERRED_ATTRS = {"conv2d_nchw": {"form": "auto"}}


def definition_attrs(op: str, attrs: dict) -> dict:
    """``attrs`` with ``PREFERRED_ATTRS`` of ``op`` where not given."""
    preferred = PREFERRED_ATTRS.get(op)
    return {**preferred, **attrs} if preferred else attrs


TEMPLATES = {
    "matmul": matmul.schedule_matmul,
    "conv2d": conv2d.schedule_conv2d_nchw,
    "rowwise": rowwise.schedule_rowwise,
    "generic": generic.schedule_generic,
    "capsule_routing": capsule.schedule_capsule_routing,
}


def schedule_for(name: str, out, attrs: dict | None = None, config: dict | None = None):
    return schedule_with(TEMPLATES, name, out, config)
