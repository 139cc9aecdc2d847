"""GPU schedule templates: ``schedule_for(op_name, out, attrs=None, config=None)``.

Same contract as the CPU templates (``schedules/cpu``): each schedules the stages of one
operator's compute definition given a config of knobs, bound to CUDA blocks and threads.
Operators without a template of their own get the generic one (``generic.py``).
"""
from __future__ import annotations

from .. import schedule_with
from . import capsule, conv2d, generic, matmul, rowwise, sparse

TEMPLATES = {
    "matmul": matmul.schedule_matmul,
    "conv2d": conv2d.schedule_conv2d_nchw,
    "rowwise": rowwise.schedule_rowwise,
    "generic": generic.schedule_generic,
    "capsule_routing": capsule.schedule_capsule_routing,
}


# operators with a GPU template of their own, scheduled whatever their template name
# (``schedules.template_name``) is on the CPU: gradients (``td.ops.<name>_backward`` on
# device arrays) a forward's template also schedules, which the CPU schedules by the
# operator table (``autodiff/operators.py``), and NHWC convolution, whose implicit-GEMM
# form the CPU's generic template runs as it is
OWN_TEMPLATES = {"capsule_routing_backward": capsule.schedule_capsule_routing,
                 "conv2d_nhwc": conv2d.schedule_conv2d_nhwc}


def schedule_for(name: str, out, attrs: dict | None = None, config: dict | None = None):
    if name in OWN_TEMPLATES:
        from tensordsl.schedule.schedule import create_schedule
        s = create_schedule(out.op)
        OWN_TEMPLATES[name](s, out, config)
        return s
    return schedule_with(TEMPLATES, name, out, config)


SPARSE_TEMPLATES = sparse.TEMPLATES


def schedule_sparse(name: str, out, A, config: dict | None = None):
    """A fresh schedule of sparse operator ``name``'s output ``out`` (``kernels/sparse.py``)
    over the CSR operand ``A``, by its GPU template (``config``: ``sparse.DEFAULT``'s
    knobs, ``schedule="rows"`` or ``"nonzeros"``)."""
    from tensordsl.schedule.schedule import create_schedule
    if name not in SPARSE_TEMPLATES:
        raise ValueError(f"schedule_sparse: no sparse operator {name!r}; expected one of "
                         f"{', '.join(SPARSE_TEMPLATES)}")
    s = create_schedule(out.op)
    SPARSE_TEMPLATES[name](s, out, A, config)
    return s
