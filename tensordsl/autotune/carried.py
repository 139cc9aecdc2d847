"""A compute carried by value: a kernel of a compiled program, which no file defines.

``tensordsl tune-model`` tunes every kernel of a compiled training step that reads
records. Its matrix products are ``matmul`` workloads; its elementwise kernels (an
activation, its gradient, the optimizer's updates) are computes the program cut out of
the step and builds with ``td.build(tensors)``: the auto-scheduler, with the records filed
under what they compute (``structural.py``); a row-wise reduction (a loss's maximum)
is scheduled by its template in the operator table (``autodiff/operators.py``), with
that template's knobs. To be measured in another process (a ``measure.Runner``, a Dask
worker), such a compute travels as its IR, pickled, in the workload's ``source``:

    w = Workload.of_compute(inputs, out, "relu")     # op: compute:<hash>, template "auto"
    w = Workload.of_compute(inputs, m, "max", derived="rowwise")

A kernel of several outputs (an optimizer's update: the parameter and its momentum) is
carried by its last output: the operation holds them all, and the kernel writes them all.

It plays the part of a user's function (``userfile.UserFunction``) for ``Workload``: the
tensors, no schedule function of its own, a label for listings.
"""
from __future__ import annotations

import base64
import json
import pickle


class CarriedCompute:
    """(inputs, output) of a compute, with a ``label`` (``relu(256x256)``)."""

    grad = None

    def __init__(self, inputs: list, out, label: str, derived: str | None = None):
        self.inputs, self.out, self.label = list(inputs), out, label
        # the operator table's template that schedules it; None: the auto-scheduler
        self.derived = derived

    def to_json(self) -> str:
        pickled = base64.b64encode(pickle.dumps((self.inputs, self.out))).decode()
        d = {"compute": pickled, "label": self.label}
        if self.derived is not None:
            d["derived"] = self.derived
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "CarriedCompute":
        d = json.loads(text)
        inputs, out = pickle.loads(base64.b64decode(d["compute"]))
        return cls(inputs, out, d["label"], d.get("derived"))

    @staticmethod
    def carries(source: str) -> bool:
        """Whether ``source`` (a workload's) is a carried compute's, not a file's."""
        try:
            return "compute" in json.loads(source)
        except (TypeError, ValueError):
            return False

    def call(self):
        """``(None, tensors)``: no schedule of its own (``UserFunction.call``)."""
        return None, [*self.inputs, self.out]

    def tensors(self):
        return self.inputs, self.out

    def template(self):
        return None

    def knobs(self) -> tuple[dict, dict]:
        return {}, {}
