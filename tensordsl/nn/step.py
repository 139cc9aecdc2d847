"""``TrainStep``: forward, loss, gradients and the optimizer's update of one batch as a
single compiled program (``trace.py`` explains the tracing), compiled once per input
shape and reused every batch.

The optimizer takes part through four methods (``optim.py``): ``hyperparameters(dtype)``
(this step's numbers, an array fed to the program), ``state_names()`` /
``state_value(p, name)`` / ``set_state(p, name, value)`` (its per-parameter buffers), and
``traced_update(p, g, states, h)`` (the update as expressions). So the program computes
exactly what ``loss.backward(); optimizer.step()`` computes, and the two can be mixed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tensor import Tensor
from .trace import tracing


@dataclass
class _Compiled:
    program: object
    params: list           # the Parameters updated, in the program's order
    states: list           # (parameter, state name), in the program's order
    constants: list        # arrays captured while tracing, fed as they were
    hyper_dtype: np.dtype


class TrainStep:
    """``step(x, y)`` = ``loss = loss_fn(model(x), y); loss.backward(); optimizer.step()``
    compiled into one program; returns the loss as a float."""

    def __init__(self, model, loss_fn, optimizer, target: str = "llvm"):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.target = target
        self._compiled: dict = {}

    def __call__(self, x, y) -> float:
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        key = (x.shape, x.dtype.str, y.shape, y.dtype.str, self.model.training)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(x, y)
        opt = self.optimizer
        hyper = opt.hyperparameters(compiled.hyper_dtype)
        arrays = [x, y, *(p.data for p in compiled.params),
                  *(opt.state_value(p, name) for p, name in compiled.states),
                  hyper, *compiled.constants]
        loss, *rest = compiled.program(*arrays)
        for p, value in zip(compiled.params, rest):
            p.data = value
        for (p, name), value in zip(compiled.states, rest[len(compiled.params):]):
            opt.set_state(p, name, value)
        return float(loss.reshape(-1)[0])

    def program(self, x, y):
        """The compiled ``Program`` for batches shaped like ``x`` and ``y`` (its kernels
        show how the step was cut and fused)."""
        x, y = np.asarray(x), np.asarray(y)
        key = (x.shape, x.dtype.str, y.shape, y.dtype.str, self.model.training)
        if key not in self._compiled:
            self._compiled[key] = self._compile(np.ascontiguousarray(x),
                                                np.ascontiguousarray(y))
        return self._compiled[key].program

    def _compile(self, x: np.ndarray, y: np.ndarray) -> _Compiled:
        import tensordsl as td
        opt = self.optimizer
        params = [p for p in opt.params if p.requires_grad]
        names = {id(p): name for name, p in self.model.named_parameters()}
        if not params:
            raise ValueError("TrainStep: the optimizer has no parameters that require a "
                             "gradient")
        with tracing() as trace:
            xs = Tensor.traced(td.placeholder(x.shape, x.dtype.name, name="x"))
            ys = Tensor.traced(td.placeholder(y.shape, y.dtype.name, name="y"))
            p_in = [trace.placeholder(p, _identifier(names.get(id(p), f"param{k}")))
                    for k, p in enumerate(params)]
            loss = self.loss_fn(self.model(xs), ys)
        if not isinstance(loss, Tensor) or loss.expr is None:
            raise TypeError("TrainStep: loss_fn(model(x), y) must return a tensor computed "
                            f"from the model's output, got {type(loss).__name__}")
        if int(np.prod(loss.shape)) != 1:
            raise ValueError(f"TrainStep: the loss must have one element, got shape "
                             f"{loss.shape}")
        grads = td.grad(loss.expr, p_in)
        dtype = np.dtype(params[0].dtype)
        h = td.placeholder((len(opt.hyperparameters(dtype)),), dtype.name, name="hyper")
        state_in, new_params, new_states, states = [], [], [], []
        for p, ph, g in zip(params, p_in, grads):
            mine = {name: td.placeholder(p.shape, p.dtype.name, name=f"{ph.name}_{name}")
                    for name in opt.state_names()}
            new_p, new = opt.traced_update(ph, g, mine, h)
            new_params.append(new_p)
            for name, placeholder in mine.items():
                state_in.append(placeholder)
                new_states.append(new[name])
                states.append((p, name))
        param_ids = {id(p) for p in params}
        constants = [(holder, ph) for holder, ph in trace.inputs.values()
                     if id(holder) not in param_ids]
        inputs = [xs.expr, ys.expr, *p_in, *state_in, h, *(ph for _, ph in constants)]
        program = td.build_program(inputs, [loss.expr, *new_params, *new_states],
                                   target=self.target)
        return _Compiled(program, params, states,
                         [np.ascontiguousarray(h.data if isinstance(h, Tensor) else h)
                          for h, _ in constants], dtype)


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
