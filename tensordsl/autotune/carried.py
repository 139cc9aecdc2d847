"""A compute carried by value: a kernel of a compiled program, which no file defines.

``tensordsl tune-model`` tunes every kernel of a compiled training step that reads
records. Its matrix products are ``matmul`` workloads; its elementwise kernels (an
activation, its gradient, the optimizer's updates) are computes the program cut out of
the step and builds with ``td.build(tensors)``: the auto-scheduler, with the records filed
under what they compute (``structural.py``). To be measured in another process (a
``measure.Runner``, a Dask worker), such a compute travels as its IR, pickled, in the
workload's ``source``:

    w = Workload.of_compute(inputs, out, "relu")     # op: compute:<hash>, template "auto"

It plays the part of a user's function (``userfile.UserFunction``) for ``Workload``: the
tensors, no template of its own (so the auto-scheduler's space), a label for listings.
"""
from __future__ import annotations

import base64
import json
import pickle


class CarriedCompute:
    """(inputs, output) of a compute, with a ``label`` (``relu(256x256)``)."""

    grad = None

    def __init__(self, inputs: list, out, label: str):
        self.inputs, self.out, self.label = list(inputs), out, label

    def to_json(self) -> str:
        pickled = base64.b64encode(pickle.dumps((self.inputs, self.out))).decode()
        return json.dumps({"compute": pickled, "label": self.label}, sort_keys=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "CarriedCompute":
        d = json.loads(text)
        inputs, out = pickle.loads(base64.b64decode(d["compute"]))
        return cls(inputs, out, d["label"])

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
