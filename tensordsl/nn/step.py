"""``TrainStep``: forward, loss, gradients and the optimizer's update of one batch as a
single compiled program (``trace.py`` explains the tracing), compiled once per input
shape and reused every batch.

The optimizer takes part through its param groups and state (``optim.py``):
``_hyper(group, step, dtype)`` gives each group's hyperparameters for the step (fed to
the program as a small array), ``traced_update`` the update rule as expressions — the
same rule its own kernel applies — and ``traced_step_done`` takes the new state. So
the program computes exactly what ``loss.backward(); optimizer.step()`` computes, and
the two can be mixed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tensor import Tensor
from .trace import tracing


@dataclass
class _Compiled:
    program: object
    groups: list          # (group, its parameters) in the program's order
    states: list          # (parameter, state name), in the program's order
    holders: list         # tensors and arrays read by the forward, fed each run
    fresh: list           # draw() per run (dropout's masks)
    written: list         # holders whose arrays the program's last outputs replace
    per_run: list         # callables run once per run
    checks: list          # (input index, check) on x or y before each run
    dtype: np.dtype


class TrainStep:
    """``step(x, y)`` = ``loss = loss_fn(model(x), y); loss.backward(); optimizer.step()``
    compiled into one program; returns the loss as a float. ``x`` and ``y`` are numpy
    arrays (``y`` may be class indices); a new shape compiles a new program."""

    def __init__(self, model, loss_fn, optimizer, target: str = "llvm"):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.target = target
        self._compiled: dict = {}

    def __call__(self, x, y) -> float:
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        c = self._get(x, y)
        loss, *rest = c.program(*self._arrays(c, x, y))
        opt = self.optimizer
        params = [p for _, group_params in c.groups for p in group_params]
        for p, value in zip(params, rest):
            p.data = value
        rest = rest[len(params):]
        new_state: dict = {}
        for (p, name), value in zip(c.states, rest):
            new_state.setdefault(p, {})[name] = value
        opt.traced_step_done(params, new_state)
        for holder, value in zip(c.written, rest[len(c.states):]):
            np.copyto(holder.data, value)
        for run in c.per_run:
            run()
        return float(loss.reshape(-1)[0])

    def _arrays(self, c: _Compiled, x, y) -> list:
        """The program's inputs for this step (labels checked, masks drawn)."""
        for index, check in c.checks:
            check((x, y)[index])
        opt = self.optimizer
        hypers = [opt._hyper(group, opt.state[params[0]]["step"] + 1, c.dtype)
                  for group, params in c.groups]
        return [x, y, *(p.data for _, params in c.groups for p in params),
                *(_state(opt, p, name) for p, name in c.states), *hypers,
                *(h.data if isinstance(h, Tensor) else h for h in c.holders),
                *(draw() for draw in c.fresh)]

    def profile(self, x, y, repeat: int = 20) -> list:
        """``[(kernel name, median seconds)]`` of the step's kernels on this batch
        (``Program.profile``); the model and the optimizer are left as they were (a
        dropout mask is drawn)."""
        return self.program(x, y).profile(*self.program_inputs(x, y), repeat=repeat)

    def program_inputs(self, x, y) -> list:
        """The arrays the program (``program(x, y)``) takes for this batch, in its
        order: x, y, the parameters, the optimizer's state and hyperparameters, ...
        (a dropout mask is drawn)."""
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        return self._arrays(self._get(x, y), x, y)

    def program(self, x, y):
        """The compiled ``Program`` for batches shaped like ``x`` and ``y`` (its kernels
        show how the step was cut and fused; ``program.profile`` times them)."""
        return self._get(np.ascontiguousarray(x), np.ascontiguousarray(y)).program

    def _get(self, x, y) -> _Compiled:
        key = (x.shape, x.dtype.str, y.shape, y.dtype.str, self.model.training)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(x, y)
        return compiled

    def _compile(self, x: np.ndarray, y: np.ndarray) -> _Compiled:
        import tensordsl as td
        opt = self.optimizer
        names = {id(p): name for name, p in self.model.named_parameters()}
        groups = [(g, [p for p in g["params"] if p.requires_grad]) for g in opt.param_groups]
        groups = [(g, ps) for g, ps in groups if ps]
        params = [p for _, ps in groups for p in ps]
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
        grads = dict(zip(map(id, params), td.grad(loss.expr, p_in)))
        placeholder = dict(zip(map(id, params), p_in))
        dtype = np.dtype(params[0].dtype)
        state_names = tuple(opt._state_names)
        hypers, state_in, new_params, new_states, states = [], [], [], [], []
        for k, (group, group_params) in enumerate(groups):
            n_hyper = len(opt._hyper(group, 1, dtype))
            h = td.placeholder((n_hyper,), dtype.name, name=f"hyper{k}")
            hypers.append(h)
            for p in group_params:
                ph = placeholder[id(p)]
                mine = [td.placeholder(p.shape, p.dtype.name, name=f"{ph.name}_{name}")
                        for name in state_names]
                new_p, *new = opt.traced_update(group, ph, grads[id(p)], mine, h)
                new_params.append(new_p)
                state_in += mine
                new_states += new
                states += [(p, name) for name in state_names]
        param_ids = set(map(id, params))
        holders = [(holder, ph) for holder, ph in trace.inputs.values()
                   if id(holder) not in param_ids]
        inputs = [xs.expr, ys.expr, *p_in, *state_in, *hypers,
                  *(ph for _, ph in holders), *(ph for ph, _ in trace.fresh)]
        outputs = [loss.expr, *new_params, *new_states, *(e for _, e in trace.written)]
        program = td.build_program(inputs, outputs, target=self.target)
        checks = [((xs.expr, ys.expr).index(t), check) for t, check in trace.checks
                  if t is xs.expr or t is ys.expr]
        return _Compiled(program, groups, states, [h for h, _ in holders],
                         [draw for _, draw in trace.fresh], [h for h, _ in trace.written],
                         list(trace.per_run), checks, dtype)


def _state(opt, p, name: str) -> np.ndarray:
    value = opt.state[p].get(name)
    if value is None:
        return np.zeros(p.shape, p.dtype)
    return np.ascontiguousarray(value, p.dtype).reshape(p.shape)


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
