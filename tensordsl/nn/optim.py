"""Optimizers with PyTorch's update rules whose updates are generated kernels: ``SGD``
(momentum, dampening, Nesterov, weight decay), ``Adam`` (weight decay as an L2 term of
the gradient) and ``AdamW`` (decoupled weight decay).

**One kernel per class of parameters.** A class is the parameters of one param group
with one dtype and one step count (those that got a gradient together: usually all of
them). As in PyTorch's fused and foreach optimizers, a class lives in flat buffers: its
parameters' ``.data`` are views into one flat array (each slice starting 64 bytes
aligned), its per-parameter state (``momentum_buffer``; ``exp_avg``, ``exp_avg_sq``)
views into one flat array per name, and the gradients are copied into one flat array.
One elementwise kernel, a multi-output compute over the flat arrays, reads them all once
and writes the new parameters and state in the same pass. The hyperparameters (learning
rate, betas, the bias corrections of the step, ...) are a small array argument, so the
kernel is compiled once per (rule, dtype, flat size) and serves every step.

The kernel writes new arrays (its arguments are declared not to alias, so it may not
update in place); the parameters and the state then view those: the buffers swap each
step. A parameter whose ``.data`` was replaced since (``load_state_dict``, a user) is
copied into its slot first.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .tensor import no_grad

_ALIGN_BYTES = 64


# ------------------------------------------------------------------ update kernels


def _sgd_update(p, g, b, h, nesterov: bool):
    """h = (lr, momentum, 1 - dampening, weight_decay, nesterov's momentum): on a
    parameter's first step momentum 0 and 1 - dampening = 1, so that the buffer starts
    as the direction itself, as PyTorch's does."""
    d = g + h[3] * p
    if b is None:
        return p - h[0] * d
    new_b = h[1] * b + h[2] * d
    step = d + h[4] * new_b if nesterov else new_b
    return p - h[0] * step, new_b


def _adam_update(p, g, m, v, h):
    """h = (1 - beta1, beta1, beta2, 1 - beta2, eps, l2, decay, step_size, sqrt(bias
    correction 2)): Adam has l2 = weight_decay and decay 1, AdamW l2 = 0 and decay
    1 - lr * weight_decay (exact no-ops where unused: p * 1 and g + 0 * p)."""
    import tensordsl as td
    grad = g + h[5] * p
    # PyTorch's lerp: m + w (g - m) for a weight below 1/2, g - (g - m)(1 - w) above
    new_m = td.if_then_else(h[0] < 0.5, m + h[0] * (grad - m), grad - (grad - m) * h[1])
    new_v = v * h[2] + h[3] * grad * grad
    denom = td.sqrt(new_v) / h[8] + h[4]
    return p * h[6] - h[7] * (new_m / denom), new_m, new_v


_RULES = {"sgd": (_sgd_update, 5), "adam": (_adam_update, 9)}


@functools.cache
def _kernel(rule: str, dtype: str, size: int, n_state: int, nesterov: bool = False):
    """``f(p, g, *state, hyper) -> (p', *state')`` over flat arrays of ``size``."""
    import tensordsl as td
    from schedules.cpu.generic import schedule_generic
    update, n_hyper = _RULES[rule]
    p = td.placeholder((size,), dtype, "p")
    g = td.placeholder((size,), dtype, "g")
    state = [td.placeholder((size,), dtype, f"s{k}") for k in range(n_state)]
    h = td.placeholder((n_hyper,), dtype, "hyper")

    def body(i):
        values = [s[i] for s in state]
        if rule == "sgd":
            return update(p[i], g[i], values[0] if values else None, h, nesterov)
        return update(p[i], g[i], *values, h)

    outs = td.compute((size,), body, name=f"{rule}_update")
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    s = td.create_schedule(outs[0].op)
    schedule_generic(s, outs[0])
    f = td.build(s, [p, g, *state, h, *outs], name=f"{rule}_update",
                 target="llvm")

    def run(*arrays):
        from tensordsl.nd import aligned_numpy
        results = [aligned_numpy((size,), dtype) for _ in outs]
        f(*arrays, *results)
        return results

    return run


# ------------------------------------------------------------------ flat classes


class _Flat:
    """The flat buffers of one class: ``p``, ``g`` and one array per state name; each
    parameter's slice starts at a multiple of 64 bytes (the rest of a slice is zeros,
    which every rule keeps zero)."""

    def __init__(self, params, dtype, names, state):
        self.params, self.dtype, self.names = params, np.dtype(dtype), names
        align = max(1, _ALIGN_BYTES // self.dtype.itemsize)
        self.offsets, offset = [], 0
        for p in params:
            self.offsets.append(offset)
            offset += -(-p.data.size // align) * align
        self.size = offset
        from tensordsl.nd import aligned_numpy
        self.p = aligned_numpy((self.size,), self.dtype)
        self.g = aligned_numpy((self.size,), self.dtype)
        self.state = {}
        for a in (self.p, self.g):
            a[...] = 0
        for name in names:
            flat = aligned_numpy((self.size,), self.dtype)
            flat[...] = 0
            for p, o in zip(params, self.offsets):
                old = state[p].get(name)
                if old is not None:
                    flat[o:o + p.data.size] = np.asarray(old).reshape(-1)
            self.state[name] = flat
        for p, o in zip(params, self.offsets):
            self.p[o:o + p.data.size] = p.data.reshape(-1)
        self._view(state)

    def _slice(self, flat, p, o):
        return flat[o:o + p.data.size].reshape(p.shape)

    def _view(self, state):
        """Point the parameters' data and their state at the current buffers."""
        for p, o in zip(self.params, self.offsets):
            p.data = self._slice(self.p, p, o)
            for name in self.names:
                state[p][name] = self._slice(self.state[name], p, o)

    def gather(self):
        """Copy parameters replaced since the last step into their slots, and the
        gradients into ``g``."""
        base, item = self.p.ctypes.data, self.dtype.itemsize
        for p, o in zip(self.params, self.offsets):
            n = p.data.size
            if p.data.ctypes.data != base + o * item or p.data.dtype != self.dtype:
                self.p[o:o + n] = np.asarray(p.data, self.dtype).reshape(-1)
                p.data = self.p[o:o + n].reshape(p.shape)
            np.copyto(self.g[o:o + n], np.asarray(p.grad).reshape(-1), casting="same_kind")

    def swap(self, results, state):
        self.p, *new_state = results
        self.state = dict(zip(self.names, new_state))
        self._view(state)


class Optimizer:
    """PyTorch's ``Optimizer`` shape: ``param_groups`` (dicts of ``params`` and
    hyperparameters; change ``group["lr"]`` between steps freely), ``state`` (per
    parameter: ``step`` and the rule's arrays), ``zero_grad``, ``step``,
    ``state_dict``/``load_state_dict``."""

    _state_names: tuple = ()

    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        for group in groups:
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise TypeError(f"{type(self).__name__}: unknown hyperparameters "
                                f"{sorted(unknown)} in a param group")
            self.param_groups.append({**defaults, **group, "params": list(group["params"])})
        self.state: dict = {p: {"step": 0} for g in self.param_groups for p in g["params"]}
        self._flats: dict = {}    # (group, dtype, parameter ids) -> _Flat
        self._flat_of: dict = {}  # parameter id -> its key in _flats

    def zero_grad(self, set_to_none: bool = True):
        """Gradients to None (PyTorch's default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def _hyper(self, group: dict, step: int, dtype) -> np.ndarray:
        raise NotImplementedError

    def _kernel(self, group: dict, dtype, size: int):
        raise NotImplementedError

    @no_grad()
    def step(self):
        for index, group in enumerate(self.param_groups):
            classes: dict = {}
            for p in group["params"]:
                if p.grad is not None:
                    classes.setdefault((p.dtype.name, self.state[p]["step"]), []).append(p)
            for (dtype, done), params in classes.items():
                flat = self._flat(index, dtype, params)
                flat.gather()
                kernel = self._kernel(group, dtype, flat.size)
                results = kernel(flat.p, flat.g, *(flat.state[n] for n in flat.names),
                                 self._hyper(group, done + 1, dtype))
                flat.swap(results, self.state)
                for p in params:
                    self.state[p]["step"] = done + 1

    def _flat(self, index: int, dtype: str, params) -> _Flat:
        key = (index, dtype, tuple(id(p) for p in params))
        flat = self._flats.get(key)
        if flat is None:
            # a parameter belongs to one class at a time: older classes holding any of
            # these are dropped (their other parameters keep their arrays)
            for p in params:
                self._flats.pop(self._flat_of.get(id(p)), None)
            flat = self._flats[key] = _Flat(params, dtype, self._state_names, self.state)
            for p in params:
                self._flat_of[id(p)] = key
        return flat

    # ------------------------------------------- the traced step (nn.TrainStep)
    def _update(self, group: dict, p, g, state: list, h):
        """One element's update: ``p'`` or ``(p', *state')`` from expressions of the
        parameter, its gradient, its state and the hyperparameters ``h``."""
        raise NotImplementedError

    def traced_update(self, group: dict, p, g, state: list, h) -> list:
        """``[p', *state']`` of the parameter placeholder ``p`` for the gradient ``g`` (a
        tensor expression), as one compute of ``p``'s shape: the rule ``step``'s kernel
        applies, for ``nn.TrainStep``, which feeds ``h = _hyper(group, step, dtype)``."""
        import tensordsl as td

        def body(*i):
            return self._update(group, p[i], g[i], [s[i] for s in state], h)

        outs = td.compute(p.shape, body, name=f"{p.name}.{type(self).__name__.lower()}")
        return list(outs) if isinstance(outs, (list, tuple)) else [outs]

    def traced_step_done(self, params, new_state: dict):
        """After a traced step: ``new_state`` (parameter -> {name: array}) is the state,
        each step count advances, and the flat classes are rebuilt on the next
        ``step()`` (their buffers no longer hold the state)."""
        for p in params:
            self.state[p].update(new_state.get(p, {}))
            self.state[p]["step"] += 1
        self._flats, self._flat_of = {}, {}

    def state_dict(self) -> dict:
        """PyTorch's layout: ``{"state": {index: {"step": ..., name: array}},
        "param_groups": [{hyperparameters..., "params": [indices]}]}``, parameters
        numbered in group order."""
        state, groups, k = {}, [], 0
        for group in self.param_groups:
            indices = []
            for p in group["params"]:
                entry = self.state[p]
                if entry["step"]:
                    state[k] = {"step": np.float32(entry["step"]),
                                **{n: np.array(entry[n]) for n in self._state_names
                                   if n in entry}}
                indices.append(k)
                k += 1
            groups.append({**{h: v for h, v in group.items() if h != "params"},
                           "params": indices})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"])
                                                   for g in self.param_groups]:
            raise ValueError("load_state_dict: the saved param groups do not match this "
                             "optimizer's (number of groups or of parameters per group)")
        params = [p for g in self.param_groups for p in g["params"]]
        for group, saved in zip(self.param_groups, groups):
            group.update({h: v for h, v in saved.items() if h != "params"})
        self.state = {p: {"step": 0} for p in params}
        for k, entry in state_dict["state"].items():
            p = params[int(k)]
            self.state[p] = {"step": int(entry["step"]),
                             **{n: np.array(entry[n], p.dtype).reshape(p.shape)
                                for n in self._state_names if n in entry}}
        self._flats, self._flat_of = {}, {}


def _check(what: str, name: str, value, low: float = 0.0, high: float | None = None):
    if not isinstance(value, (int, float)) or value < low or (high is not None and
                                                              value >= high):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{what}: {name} must be a number {bound}, got {value!r}")


class SGD(Optimizer):
    """``torch.optim.SGD``: ``d = g + weight_decay * p``; with momentum ``b = momentum *
    b + (1 - dampening) * d`` (``b = d`` on the first step), ``d = b`` (Nesterov: ``d +
    momentum * b``); ``p -= lr * d``."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        _check("SGD", "lr", lr)
        _check("SGD", "momentum", momentum)
        _check("SGD", "weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))
        self._state_names = ("momentum_buffer",) if any(
            g["momentum"] for g in self.param_groups) else ()

    def _kernel(self, group, dtype, size):
        return _kernel("sgd", dtype, size, len(self._state_names),
                       bool(group["nesterov"]))

    def _update(self, group, p, g, state, h):
        return _sgd_update(p, g, state[0] if state else None, h, bool(group["nesterov"]))

    def _hyper(self, group, step, dtype):
        first = step == 1
        return np.array([group["lr"], 0.0 if first else group["momentum"],
                         1.0 if first else 1.0 - group["dampening"], group["weight_decay"],
                         group["momentum"]], dtype)


class Adam(Optimizer):
    """``torch.optim.Adam`` (amsgrad off): ``g += weight_decay * p``; ``m = lerp(m, g,
    1 - beta1)``, ``v = beta2 * v + (1 - beta2) g^2``; ``p -= lr / (1 - beta1^t) * m /
    (sqrt(v) / sqrt(1 - beta2^t) + eps)``."""

    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        name = type(self).__name__
        _check(name, "lr", lr)
        _check(name, "eps", eps)
        _check(name, "weight_decay", weight_decay)
        for k, beta in enumerate(betas):
            _check(name, f"betas[{k}]", beta, 0.0, 1.0)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _kernel(self, group, dtype, size):
        return _kernel("adam", dtype, size, 2)

    def _update(self, group, p, g, state, h):
        return _adam_update(p, g, *state, h)

    def _hyper(self, group, step, dtype):
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        l2, decay = (0.0, 1.0 - lr * wd) if self._decoupled else (wd, 1.0)
        # the bias corrections in double precision, as PyTorch computes them
        step_size = lr / (1.0 - beta1 ** step)
        return np.array([1.0 - beta1, beta1, beta2, 1.0 - beta2, group["eps"], l2, decay,
                         step_size, math.sqrt(1.0 - beta2 ** step)], dtype)


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay, ``p *= 1 - lr *
    weight_decay`` before the update (the gradient is left alone); weight_decay 0.01 by
    default."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
