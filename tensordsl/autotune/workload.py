"""A workload: an operator, the shapes and dtypes of its arrays, and its attributes.

The operator is a name from ``kernels/`` (``td.ops``) or a user's own compute,
``path/to/file.py:function`` called with the workload's values as positional arguments
(the contract of ``userfile.py``): ``Workload("my_op.py:bias_relu", [("value", 512),
("value", 256)])``. It returns its tensors; the file may define ``SPACE``, ``DEFAULT`` and
``schedule(s, outs, config)`` (its own template); without them the auto-scheduler
schedules it.

``Workload.key`` is the canonical JSON text that records are filed under: the same
operator on the same shapes finds the same records from the CLI and from ``td.ops``. A
user's compute is filed under what it computes (``structural.py``) and the shapes of its
inputs, the key ``td.build(tensors)`` looks up; the call itself travels as ``source``.
``grad="x"`` makes the workload the gradient of a user's compute with respect to its
input ``x`` (``userfile.py``); the gradients of an operator are the operator
``<name>_backward`` with the attribute ``wrt`` (``tensordsl/ops_backward.py``).
"""
from __future__ import annotations

import json

import numpy as np

from ..arith.simplify import const_int
from .records import canonical
from .userfile import CONTRACT, ContractError, UserFunction, is_user_spec


class Workload:
    def __init__(self, op: str, args: list, attrs: dict | None = None,
                 scheduler: str = "template", source: str | None = None,
                 grad: str | None = None, head: bool = False):
        if scheduler not in ("template", "auto"):
            raise ValueError(f"scheduler must be 'template' or 'auto', got {scheduler!r}")
        self.scheduler = scheduler
        self.op = op
        self.args = [tuple(a) if a[0] == "value" else ("array", tuple(a[1]), str(a[2]))
                     for a in args]
        self.attrs = dict(attrs or {})
        self.call: UserFunction | None = None
        if is_user_spec(op):
            if any(a[0] != "value" for a in self.args):
                raise ContractError(f"{op}: a user function takes plain values (its sizes), "
                                    f"not arrays; {CONTRACT}")
            self.call = UserFunction(op, [a[1] for a in self.args], self.attrs, grad, head)
        elif grad is not None:
            raise ValueError(f"--grad: for a user's file.py:function; the gradients of "
                             f"{op} are the operator {op}_backward (--attr wrt=NAME)")
        elif op.startswith("compute:"):
            if source is None:
                raise ValueError(f"{op}: the source (path/to/file.py:function and its "
                                 "arguments) of this compute is needed to rebuild it")
            from .carried import CarriedCompute
            self.call = CarriedCompute.from_json(source) if CarriedCompute.carries(source) \
                else UserFunction.from_json(source)
        self.user = self.call is not None
        if self.user:
            # filed under what it computes and its inputs' shapes, as td.build looks it up
            from .structural import structural_key
            self._hand = self.call.call()[0] is not None
            inputs, out = self.call.tensors()
            self.op = structural_key(out, inputs)
            self.args = [("array", tuple(const_int(d) for d in t.shape), t.dtype)
                         for t in inputs]
            self.attrs = {}
            if op.startswith("compute:") and self.op != op:
                raise ValueError(f"{self.call.label} no longer computes what its records "
                                 "were measured for (the file changed)")
        else:
            self.attrs = self._with_defaults(self.attrs)
        self.source = self.call.to_json() if self.user else None

    def _with_defaults(self, attrs: dict) -> dict:
        """Spell out the operator's keyword defaults: ``padding=1`` and ``padding=1,
        groups=1`` are one workload, with one set of records."""
        import inspect
        from tensordsl.ops import _operators
        fn = _operators().get(self.op)
        n_pos = len(self.args)
        if fn is None:
            from tensordsl.ops_backward import forward_name
            forward = forward_name(self.op)
            if forward is None:
                return attrs
            # a gradient: the forward's options, and its args end with the cotangent
            fn, n_pos = _operators()[forward], n_pos - 1
        full = dict(attrs)
        params = list(inspect.signature(fn).parameters.values())
        for k, p in enumerate(params):
            if k < n_pos or p.name == "name" or p.default is inspect.Parameter.empty:
                continue
            if p.name not in full and isinstance(p.default, (int, float, str, bool, tuple)):
                full[p.name] = p.default
        # an option left at a None default is not part of the identity, so adding one
        # to an operator keeps the records filed for it before
        for p in params:
            if p.default is None and full.get(p.name, 0) is None:
                del full[p.name]
        return json.loads(canonical(full))

    # ------------------------------------------------------------ identity
    @property
    def key(self) -> str:
        args = [[a[0], list(a[1]), a[2]] if a[0] == "array" else [a[0], a[1]]
                for a in self.args]
        return canonical({"op": self.op, "args": args, "attrs": self.attrs})

    @classmethod
    def from_key(cls, key: str, scheduler: str = "template",
                 source: str | None = None) -> "Workload":
        """The workload of a record key (a user compute also needs its ``source``; a
        sparse operator's, its matrix: ``sparse_workload.py``)."""
        d = json.loads(key)
        if any(a[0] == "sparse" for a in d["args"]):
            from .sparse_workload import SparseWorkload
            return SparseWorkload.from_key(key, source)
        return cls(d["op"], d["args"], d["attrs"], scheduler, source)

    @classmethod
    def of_compute(cls, inputs: list, out, name: str,
                   derived: str | None = None) -> "Workload":
        """The workload of a compute no file defines (a compiled program's kernel: its
        placeholders ``inputs`` and output ``out``, the last of several), filed where
        ``td.build(tensors)`` looks its records up and measured in the auto-scheduler's
        space, or in the space of ``derived``, the operator table's template that
        schedules it (``"rowwise"``; ``carried.py``)."""
        from .carried import CarriedCompute
        from .structural import structural_key
        shapes = "x".join(str(const_int(d)) for d in out.shape)
        carried = CarriedCompute(inputs, out, f"{name}({shapes})", derived)
        return cls(structural_key(out, inputs), [], source=carried.to_json())

    @classmethod
    def from_arrays(cls, op: str, args, attrs: dict) -> "Workload":
        spec = []
        for a in args:
            if isinstance(a, np.ndarray):
                spec.append(("array", a.shape, a.dtype.name))
            else:
                spec.append(("value", a))
        return cls(op, spec, attrs)

    def __repr__(self):
        if self.user:
            return self.call.label
        shapes = ", ".join("x".join(map(str, a[1])) if a[0] == "array" else repr(a[1])
                           for a in self.args)
        return f"{self.op}({shapes})"

    # ------------------------------------------------------------ definition
    def define(self, target: str = "llvm"):
        """(placeholders, output tensor) of the compute definition; on the CPU with the
        options the CPU templates prefer where the caller left them (``definition_attrs``
        of ``schedules/cpu``: a convolution's form), on ``target="cuda"`` as given."""
        import tensordsl as td
        if self.user:
            return self.call.tensors()
        operands, placeholders = operand_placeholders(self.args)
        from tensordsl.ops import _operators
        from tensordsl.ops_backward import define, forward_name
        forward = forward_name(self.op)
        if forward is not None:
            return define(forward, self.args, self.attrs)
        if self.op not in _operators():
            raise ValueError(f"unknown operator {self.op!r}; expected one of "
                             f"{', '.join(sorted(_operators()))} or path/to/file.py:function")
        attrs = self.attrs
        if target != "cuda":
            from schedules.cpu import definition_attrs
            attrs = definition_attrs(self.op, attrs)
        out = _operators()[self.op](*operands, **attrs)
        return placeholders, out

    # ------------------------------------------------------------ template
    @property
    def template(self) -> str:
        """"auto" (the auto-scheduler), "user" (the file's own ``schedule``), "hand" (the
        user's function returns its schedule), or the name of the operator's template in
        ``schedules/cpu``."""
        if self.scheduler == "auto":
            return "auto"
        if self.user:
            if self._hand:
                return "hand"
            if self.call.derived is not None:
                return self.call.derived
            return "user" if self.call.template() is not None else "auto"
        if self._derived():
            if self._derived_template is None:
                from tensordsl.autodiff.operators import template_of
                self._derived_template = template_of(self.define()[1])
            return self._derived_template
        from schedules.cpu import template_name
        return template_name(self.op)

    _derived_template: str | None = None

    def _derived(self) -> bool:
        """A gradient of an operator (``conv2d_nchw_backward``), or a program's kernel
        carried with its template: the operator table (``autodiff/operators.py``) picks
        the template from what the derived compute is, and knows its knobs."""
        if self.user:
            return self.call.derived is not None
        from tensordsl.ops_backward import forward_name
        return forward_name(self.op) is not None

    def space(self) -> dict:
        """{knob: [values]} the tuner may try."""
        return self._knobs()[0]

    def default_config(self) -> dict:
        """The configuration a build uses without records (the first trial)."""
        return self._knobs()[1]

    def tuned_config(self, target: str = "llvm") -> dict | None:
        """The best record's configuration (``history.best_config``), None without one.
        A gradient that is itself a known operator (``autodiff/operators.py``) without
        records of its own takes that operator's: a matmul's gradients are matmuls."""
        from .history import best_config
        config = best_config(self.key, target, self.template)
        if config is None and self._derived():
            from tensordsl.autodiff.operators import equivalent_keys
            for key in equivalent_keys(self.template, self.define()[1]):
                config = best_config(key, target, self.template)
                if config is not None:
                    break
        return config

    def _knobs(self) -> tuple[dict, dict]:
        template = self.template
        if template == "auto":
            from schedules.cpu.auto import auto_default, auto_space
            out = self.define()[1]
            return auto_space(out), auto_default(out)
        if template == "hand":
            return {}, {}
        if self._derived():
            from tensordsl.autodiff.operators import knobs
            return knobs(template, self.define()[1])
        if self.user:
            return self.call.knobs()
        from schedules.cpu.space import defaults_for, space_for
        return space_for(template), defaults_for(template)

    def schedule(self, config: dict | None = None):
        """(schedule, tensors) for ``config`` (None: the template's defaults)."""
        import tensordsl as td
        template = self.template
        if template == "hand":
            return self.call.call()
        placeholders, out = self.define()
        if template == "auto":
            from schedules.cpu.auto import schedule_auto
            s = td.create_schedule(out.op)
            schedule_auto(s, out, config)
        elif self._derived():
            from tensordsl.autodiff.operators import schedule_derived
            s = schedule_derived(template, out, config)
        elif self.user:
            s = td.create_schedule(out.op)
            self.call.template()(s, [out], dict(self.default_config() if config is None
                                                else config))
        else:
            from schedules.cpu import schedule_for
            s = schedule_for(self.op, out, self.attrs, config)
        # (a compute of several outputs, an optimizer's update, writes them all)
        return s, placeholders + [out.op.output(k) for k in range(out.op.num_outputs)]

    def build(self, config: dict | None = None):
        """(kernel, result shape, result dtype) of ``config``, as a worker measures it;
        for a kernel of several results, a tuple of shapes and a tuple of dtypes
        (``worker.result_arrays``)."""
        from tensordsl.build import load_func
        func, binary, target, shape, dtype = self.compile(config)
        return load_func(func, binary, target), shape, dtype

    def compile(self, config: dict | None = None) -> tuple:
        """``build`` short of loading: (lowered function, binary, target, result shape,
        result dtype), all picklable — what a worker that only builds sends to the one
        that measures (``tensordsl.build.load_func`` makes the kernel of it)."""
        from tensordsl.build import compile_func
        s, tensors = self.schedule(config)
        results = [t for t in tensors if t.op is tensors[-1].op]
        func, binary, target = compile_func(s, tensors)
        # (H - 2 of a known H: a constant)
        shapes = tuple(tuple(const_int(d) for d in t.shape) for t in results)
        dtypes = tuple(t.dtype for t in results)
        if len(results) == 1:
            return func, binary, target, shapes[0], dtypes[0]
        return func, binary, target, shapes, dtypes

    # ------------------------------------------------------------ running
    def arrays(self, seed: int = 0) -> list:
        """Inputs for a run (random, reproducible) and the output, in call order."""
        rng = np.random.default_rng(seed)
        ins = []
        for a in self.args:
            if a[0] == "array":
                ins.append(rng.standard_normal(a[1]).astype(a[2]) if np.dtype(a[2]).kind == "f"
                           else rng.integers(0, 4, a[1]).astype(a[2]))
        return ins

    def flops(self, out_shape) -> float | None:
        """Multiply-adds counted twice, for matmul-like operators; None otherwise."""
        shapes = [a[1] for a in self.args if a[0] == "array"]
        from tensordsl.ops_backward import forward_name
        op = forward_name(self.op) if not self.user else None
        if op is not None:
            # a gradient of a product or a convolution costs as many multiply-adds as
            # its forward: count them over the forward's output (the cotangent's shape);
            # a bias's gradient is only a sum
            if self.attrs.get("wrt") == "bias":
                return None
            out_shape, shapes = shapes[-1], shapes[:-1]
        else:
            op = self.op
        if op in ("matmul", "dense", "batch_matmul") and len(shapes) >= 2:
            k = shapes[0][-1] if not self.attrs.get("transpose_a") else shapes[0][-2]
            return 2.0 * float(np.prod(out_shape)) * k
        if op == "conv2d_nchw" and len(shapes) >= 2:
            f, cg, kh, kw = shapes[1]
            return 2.0 * float(np.prod(out_shape)) * cg * kh * kw
        return None


def operand_placeholders(args) -> tuple[list, list]:
    """(operands, placeholders) for a workload's arguments: an ``("array", shape,
    dtype)`` becomes placeholder ``in<k>``, a ``("value", v)`` stays ``v``."""
    import tensordsl as td
    operands, placeholders = [], []
    for k, a in enumerate(args):
        if a[0] == "array":
            p = td.placeholder(a[1], dtype=a[2], name=f"in{k}")
            placeholders.append(p)
            operands.append(p)
        else:
            operands.append(a[1])
    return operands, placeholders
