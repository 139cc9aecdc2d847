"""A user's file, ``path/to/file.py:function``: the one contract that ``tensordsl tune``,
``show``, ``bench`` and ``td.build`` share (TVM's template convention).

    # my_op.py
    import tensordsl as td

    SPACE = {"factor": [4, 8, 16]}          # optional: the knobs tune may try
    DEFAULT = {"factor": 8}                 # optional: what a build uses without records
                                            # (a knob it leaves out: its first value)

    def bias_relu(m, n):                    # tensordsl tune my_op.py:bias_relu --shape 512,256
        A = td.placeholder((m, n), name="A")          # calls bias_relu(512, 256)
        b = td.placeholder((n,), name="b")
        R = td.compute((m, n), lambda i, j: td.max(A[i, j] + b[j], 0.0), name="R")
        return [A, b, R]                    # the inputs, then the output

    def schedule(s, outs, config):          # optional: the file's own template
        (R,) = outs
        o, i = s[R].split(R.op.axis[1], factor=config["factor"])
        s[R].vectorize(i)

The function is called with the sizes of every ``--shape`` in order as positional
arguments, then the values of ``--args``; ``--attr name=value`` passes as a keyword. It
returns its tensors (placeholders first, the output last), or a ``(schedule, tensors)``
pair: a hand schedule, shown, built and timed as it is, with nothing to tune. Without
``schedule`` in the file the auto-scheduler schedules the compute (``tensordsl tune
--auto`` asks for it even when there is one).

``--grad NAME`` works on the gradient of the output instead: ``td.grad(out, x)`` for the
input placeholder named ``NAME`` (the cotangent ones: the kernel's inputs are the
function's), or with ``--head`` ``td.vjp(out, [x])`` (the cotangent a placeholder, the
last input). It is scheduled by the auto-scheduler (the file's ``schedule`` is the
forward's) and filed, like any compute, under what it computes: ``td.build([*inputs,
td.grad(out, x)])`` in a program finds the records ``tensordsl tune file.py:fn --grad x``
made.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
from pathlib import Path

from ..arith.simplify import const_int

CONTRACT = ("a user function is called with the --shape sizes as positional arguments "
            "(then --args; --attr as keywords) and returns its tensors, the inputs first "
            "and the output last, or a (schedule, tensors) pair; a file's own template is "
            "schedule(s, outs, config) (README, Autotuning)")


class ContractError(ValueError):
    """A user file that does not follow the contract; the message states it."""


def is_user_spec(op: str) -> bool:
    return ".py:" in op or op.endswith(".py")


class UserFunction:
    """``UserFunction("my_op.py:bias_relu", (512, 256))``: the call of a user's function.

    >>> schedule, tensors = UserFunction("my_op.py:bias_relu", (512, 256)).call()
    """

    derived = None   # (no template of the operator table: its own, or the auto-scheduler)

    def __init__(self, spec: str, args=(), kwargs: dict | None = None,
                 grad: str | None = None, head: bool = False):
        path, sep, name = spec.rpartition(":")
        if not sep or not path.endswith(".py") or not name.isidentifier():
            raise ContractError(f"expected path/to/file.py:function, got {spec!r}")
        self.path = Path(path).resolve()
        self.name = name
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.grad, self.head = grad, bool(head and grad)
        self._module = None

    # ------------------------------------------------------------ identity
    @property
    def label(self) -> str:
        """``my_op.py:bias_relu(512, 256)``: how records of this call are listed."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        grad = "" if not self.grad else f" --grad {self.grad}{' --head' if self.head else ''}"
        return f"{self.path.name}:{self.name}({', '.join(parts)}){grad}"

    @property
    def sha(self) -> str:
        """A hash of the file's text: records of an older version of the file differ."""
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        except OSError:
            raise ContractError(f"no such file: {str(self.path)!r}") from None

    def to_json(self) -> str:
        d = {"file": str(self.path), "function": self.name, "args": list(self.args),
             "kwargs": self.kwargs, "sha": self.sha}
        if self.grad:
            d.update(grad=self.grad, head=self.head)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "UserFunction":
        d = json.loads(text)
        return cls(f"{d['file']}:{d['function']}", d["args"], d["kwargs"], d.get("grad"),
                   d.get("head", False))

    # ------------------------------------------------------------ the file
    @property
    def module(self):
        """The file, executed once per ``UserFunction``."""
        if self._module is None:
            if not self.path.is_file():
                raise ContractError(f"no such file: {str(self.path)!r}")
            spec = importlib.util.spec_from_file_location(f"tensordsl_user_{self.path.stem}",
                                                          self.path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._module = module
        return self._module

    def _function(self, name: str):
        fn = getattr(self.module, name, None)
        if fn is None:
            raise ContractError(f"{self.path.name} has no function {name!r}")
        if not callable(fn):
            raise ContractError(f"{self.path.name}:{name} is a {type(fn).__name__}, "
                                "not a function")
        return fn

    def call(self):
        """``(schedule or None, tensors)``, checked against the contract."""
        from ..schedule.schedule import Schedule
        from ..te.tensor import Tensor
        fn = self._function(self.name)
        try:
            inspect.signature(fn).bind(*self.args, **self.kwargs)
        except TypeError as err:
            raise ContractError(f"{self.label}: {err}; {CONTRACT}") from None
        except ValueError:
            pass   # a builtin without a signature: let the call decide
        result = fn(*self.args, **self.kwargs)
        schedule = None
        if (isinstance(result, tuple) and len(result) == 2 and
                isinstance(result[0], Schedule)):
            schedule, result = result
            if self.grad:
                schedule = None   # the forward's hand schedule says nothing of its gradient
        if isinstance(result, Tensor):
            raise ContractError(f"{self.label} returned one tensor; return the inputs "
                                f"and the output, [A, ..., out]; {CONTRACT}")
        if not isinstance(result, (list, tuple)) or len(result) < 1 or \
                not all(isinstance(t, Tensor) for t in result):
            raise ContractError(f"{self.label} returned {_describe(result)}; {CONTRACT}")
        if self.grad:
            return None, self._gradient(list(result))
        return schedule, list(result)

    def _gradient(self, tensors: list) -> list:
        """``[*inputs, grad]`` (``--head``: ``[*inputs, head, grad]``) of the output with
        respect to the input placeholder named ``self.grad``."""
        from .. import autodiff
        *inputs, out = tensors
        found = [t for t in inputs if t.op.name == self.grad]
        if len(found) != 1:
            names = ", ".join(repr(t.op.name) for t in inputs)
            raise ContractError(f"{self.label}: --grad {self.grad!r} must name one input "
                                f"placeholder (the inputs are {names})")
        if self.head:
            (g,), head = autodiff.vjp(out, [found[0]])
            return inputs + [head, g]
        return inputs + [autodiff.grad(out, found[0])]

    def tensors(self):
        """(placeholders, output) of a call that the tuner can measure."""
        from ..te.tensor import ComputeOp, PlaceholderOp
        _, tensors = self.call()
        *inputs, out = tensors
        if not isinstance(out.op, ComputeOp) or \
                not all(isinstance(t.op, PlaceholderOp) for t in inputs):
            kinds = ", ".join(type(t.op).__name__ for t in tensors)
            raise ContractError(f"{self.label} returned tensors of kinds ({kinds}); to be "
                                "tuned or measured, every tensor but the last must be a "
                                "td.placeholder and the last a td.compute")
        for t in tensors:
            if not all(const_int(d) is not None for d in t.shape):
                raise ContractError(f"{self.label}: tensor {t.op.name!r} has a symbolic "
                                    f"shape {t.shape}; give its sizes as arguments")
        return inputs, out

    # ------------------------------------------------------------ its template
    def template(self):
        """The file's ``schedule(s, outs, config)``, or None (always, for a gradient)."""
        if self.grad:
            return None
        fn = getattr(self.module, "schedule", None)
        if fn is None or fn is getattr(self.module, self.name, None):
            return None
        try:
            inspect.signature(fn).bind(None, [], {})
        except TypeError:
            raise ContractError(f"{self.path.name}:schedule{inspect.signature(fn)} does not "
                                "take (s, outs, config): the schedule, the list of output "
                                "tensors and the configuration (a dict of SPACE's knobs)"
                                ) from None
        return fn

    def knobs(self) -> tuple[dict, dict]:
        """(SPACE, DEFAULT) of the file, each checked to be a dict."""
        if self.grad:
            return {}, {}
        found = []
        for name in ("SPACE", "DEFAULT"):
            value = getattr(self.module, name, {})
            if not isinstance(value, dict):
                raise ContractError(f"{self.path.name}: {name} must be a dict (SPACE: "
                                    "{knob: [values]}, DEFAULT: {knob: value}), got "
                                    f"{type(value).__name__}")
            found.append(dict(value))
        space, default = found
        for knob, values in space.items():   # a knob DEFAULT leaves out: its first value
            if knob not in default and values:
                default[knob] = list(values)[0]
        return space, default


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        kinds = ", ".join(type(v).__name__ for v in value[:4])
        return f"a {type(value).__name__} of ({kinds}{', ...' if len(value) > 4 else ''})"
    return f"a {type(value).__name__}"
