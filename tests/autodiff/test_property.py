"""Random differentiable programs: gradients, JVPs and HVPs against central differences
in float64.

A program is a chain of stages over one to three float64 inputs: elementwise
expressions over intrinsics on safe domains (and kinks: abs, max, min), binary
expressions of two earlier stages of one shape (a tensor with several consumers),
shifted, strided and reversed reads, windows reduced over a reduce axis (``x[s*i + k]``),
sums and maxima over an axis, broadcasts of a lower-rank tensor, transposes. Shapes are
drawn from small extents that are multiples of nothing in particular. No numpy twin is
needed: finite differences of the forward are the reference.

CI runs ``CASES`` derandomized examples; ``TENSORDSL_FUZZ=long`` runs ``LONG_CASES``
fresh ones (as tests/property does).
"""
from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensordsl as td

from tests.helpers import poisoned
from tests.property.programs import schedules

from .fd import Kernel, assert_close, check_grad, check_hvp, check_jvp, placeholders, static_shape

LONG = os.environ.get("TENSORDSL_FUZZ") == "long"
CASES = 600 if LONG else 60
HVP_CASES = 200 if LONG else 20
SCHEDULE_CASES = 600 if LONG else 30
PROGRAM_CASES = 300 if LONG else 15

EXTENTS = [1, 2, 3, 4, 5, 6, 7, 9, 11]


def _unary(name, v):
    """Differentiable on every value a stage can hold (no log or sqrt of a negative)."""
    return {
        "tanh": lambda: td.tanh(v),
        "sigmoid": lambda: td.sigmoid(v),
        "erf": lambda: td.erf(v),
        "exp_tanh": lambda: td.exp(td.tanh(v)),
        "log1p_sq": lambda: td.log(1.0 + v * v),
        "sqrt1p_sq": lambda: td.sqrt(1.0 + v * v),
        "square": lambda: v * v,
        "scale": lambda: v * -1.5,
        "abs": lambda: td.abs(v),
        "relu": lambda: td.maximum(v, 0.0),
        "clamp": lambda: td.minimum(td.maximum(v, -0.5), 0.75),
        "pow": lambda: td.pow(1.0 + v * v, 1.5),
    }[name]()


UNARY = ["tanh", "sigmoid", "erf", "exp_tanh", "log1p_sq", "sqrt1p_sq", "square", "scale",
         "abs", "relu", "clamp", "pow"]


def _binary(name, a, b):
    return {
        "add": lambda: a + b,
        "sub": lambda: a - b,
        "mul": lambda: a * b,
        "div": lambda: a / (2.0 + b * b),
        "max": lambda: td.maximum(a, b),
        "min": lambda: td.minimum(a, b),
        "select": lambda: td.select(a > b, a * b, a - b),
        "pow": lambda: td.pow(1.0 + a * a, td.tanh(b)),
    }[name]()


BINARY = ["add", "sub", "mul", "div", "max", "min", "select", "pow"]


class Program:
    def __init__(self, rng):
        self.rng = rng       # draws the index tensors' values
        self.inputs = []     # float64 placeholders, the xs
        self.indices = {}    # int32 placeholder -> its fixed values (read, not differentiated)
        self.stages = []     # tensors, inputs first
        self.log = []        # what each stage is, for a failure's message

    def add(self, t, what):
        self.stages.append(t)
        self.log.append(f"{t.name}{static_shape(t)} = {what}")
        return t

    def describe(self):
        return "\n".join(self.log)


def _pick(draw, p: Program, want=None):
    pool = [t for t in p.stages if want is None or want(t)]
    return pool[draw(st.integers(0, len(pool) - 1))] if pool else None


@st.composite
def programs(draw):
    p = Program(np.random.default_rng(draw(st.integers(0, 2**31))))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.sampled_from(EXTENTS), min_size=ndim, max_size=ndim)))
    for k in range(draw(st.integers(1, 2))):
        x = td.placeholder(shape, dtype="float64", name=f"X{k}")
        p.inputs.append(x)
        p.add(x, "input")
    if ndim >= 2 and draw(st.booleans()):   # a lower-rank input, to broadcast
        v = td.placeholder(shape[1:], dtype="float64", name="V")
        p.inputs.append(v)
        p.add(v, "input")
    for k in range(draw(st.integers(1, 5))):
        _stage(draw, p, f"S{k}")
    return p


def _stage(draw, p: Program, name):
    kind = draw(st.sampled_from(["unary", "binary", "binary", "shift", "stride", "window",
                                 "reduce", "broadcast", "transpose", "guarded_shift",
                                 "gather", "masked_sum"]))
    src = _pick(draw, p)
    shape = static_shape(src)
    nd = len(shape)
    axis = draw(st.integers(0, nd - 1))
    n = shape[axis]

    def along(idx, e):
        return tuple(e if d == axis else i for d, i in enumerate(idx))

    def replaced(extent):
        return tuple(extent if d == axis else s for d, s in enumerate(shape))

    if kind == "unary":
        u = draw(st.sampled_from(UNARY))
        return p.add(td.compute(shape, lambda *i: _unary(u, src[i]), name=name),
                     f"{u}({src.name})")
    if kind == "binary":
        other = _pick(draw, p, lambda t: static_shape(t) == shape)
        b = draw(st.sampled_from(BINARY))
        return p.add(td.compute(shape, lambda *i: _binary(b, src[i], other[i]), name=name),
                     f"{b}({src.name}, {other.name})")
    if kind == "shift" and n >= 2:
        off = draw(st.integers(1, n - 1))
        t = td.compute(replaced(n - off), lambda *i: src[along(i, i[axis] + off)] * 1.25, name=name)
        return p.add(t, f"{src.name}[axis {axis}: i + {off}] * 1.25")
    if kind == "stride" and n >= 2:
        s = draw(st.integers(2, 3))
        o = draw(st.integers(0, min(s, n) - 1))
        reverse = draw(st.booleans())
        extent = (n - o - 1) // s + 1

        def at(i):
            j = i[axis]
            return along(i, (n - 1 - o - s * j) if reverse else (s * j + o))
        t = td.compute(replaced(extent), lambda *i: src[at(i)], name=name)
        return p.add(t, f"{src.name}[axis {axis}: {'n-1-' if reverse else ''}{s}*i + {o}]")
    if kind == "window" and n >= 2:
        width = draw(st.integers(2, min(n, 4)))
        s = draw(st.integers(1, 2))
        extent = (n - width) // s + 1
        k = td.reduce_axis((0, width), f"k{name}")
        t = td.compute(replaced(extent), lambda *i: td.sum(
            src[along(i, s * i[axis] + k)] * (k.var.astype("float64") * 0.5 - 0.25), axis=k),
            name=name)
        return p.add(t, f"sum_k {src.name}[axis {axis}: {s}*i + k] * (k/2 - 1/4), k < {width}")
    if kind == "reduce" and nd >= 2:
        reducer = draw(st.sampled_from(["sum", "max", "min"]))
        r = td.reduce_axis((0, n), f"r{name}")
        out_shape = tuple(e for d, e in enumerate(shape) if d != axis)

        def f(*i):
            full = list(i)
            full.insert(axis, r)
            return getattr(td, reducer)(src[tuple(full)], axis=r)
        return p.add(td.compute(out_shape, f, name=name),
                     f"{reducer} of {src.name} over axis {axis}")
    if kind == "broadcast" and nd >= 2:
        low = _pick(draw, p, lambda t: static_shape(t) == shape[1:])
        if low is None:
            r = td.reduce_axis((0, shape[-1]), f"b{name}")
            low = p.add(td.compute(shape[:-1], lambda *i: td.sum(src[i + (r,)], axis=r),
                                   name=f"{name}red"), f"sum of {src.name} over its last axis")
            t = td.compute(shape, lambda *i: src[i] * low[i[:-1]], name=name)
            return p.add(t, f"{src.name} * {low.name}[broadcast over the last axis]")
        t = td.compute(shape, lambda *i: src[i] - td.tanh(low[i[1:]]), name=name)
        return p.add(t, f"{src.name} - tanh({low.name}[broadcast over axis 0])")
    if kind == "transpose" and nd >= 2:
        t = td.compute(shape[::-1], lambda *i: src[i[::-1]], name=name)
        return p.add(t, f"transpose({src.name})")
    if kind == "guarded_shift" and n >= 2:
        off = draw(st.sampled_from([-2, -1, 1, 2]))

        def g(*i):
            j = i[axis] + off
            inside = (j < n) if off > 0 else (j >= 0)
            return src[i] + td.if_then_else(inside, src[along(i, j)] * src[i], 0.0)
        return p.add(td.compute(shape, g, name=name),
                     f"{src.name} + (i + {off} inside ? {src.name}[i + {off}] * {src.name} : 0)")
    if kind == "gather":
        # read through data (no gather form: accumulated), with repeats and misses
        extent = draw(st.integers(1, 9))
        idx = td.placeholder((extent,), dtype="int32", name=f"I{name}")
        p.indices[idx] = p.rng.integers(0, n, extent).astype("int32")
        t = td.compute(replaced(extent), lambda *i: src[along(i, idx[i[axis]])] * 0.5, name=name)
        return p.add(t, f"{src.name}[axis {axis}: {idx.name}[i]] * 0.5, "
                        f"{idx.name} = {p.indices[idx].tolist()}")
    if kind == "masked_sum" and nd >= 2:
        # a sum whose condition reads data: the adjoint is masked the same way
        r = td.reduce_axis((0, n), f"m{name}")
        out_shape = tuple(e for d, e in enumerate(shape) if d != axis)

        def masked(*i):
            full = list(i)
            full.insert(axis, r)
            v = src[tuple(full)]
            return td.sum(v * v, axis=r, where=td.abs(v) > 0.3)
        return p.add(td.compute(out_shape, masked, name=name),
                     f"sum of {src.name}^2 over axis {axis} where |{src.name}| > 0.3")
    u = draw(st.sampled_from(UNARY))   # a kind that does not fit this source
    return p.add(td.compute(shape, lambda *i: _unary(u, src[i]), name=name), f"{u}({src.name})")


def _settings(cases):
    return settings(max_examples=cases, deadline=None, derandomize=not LONG,
                    suppress_health_check=list(HealthCheck))


def _values(draw, p):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    values = {x: rng.uniform(-1.5, 1.5, static_shape(x)) for x in p.inputs}
    return rng, {**values, **p.indices}


def _described(p, fn, more: str = ""):
    try:
        fn()
    except Exception as err:
        raise AssertionError(f"{type(err).__name__}: {err}\nprogram:\n{p.describe()}"
                             f"{more}") from err


@_settings(CASES)
@given(st.data())
def test_random_program_gradient_and_jvp(data):
    p = data.draw(programs())
    y = p.stages[-1]
    rng, values = _values(data.draw, p)

    def checks():
        check_grad(y, p.inputs, values, rng)
        check_jvp(y, p.inputs, values, rng)
    _described(p, checks)


@_settings(HVP_CASES)
@given(st.data())
def test_random_program_hvp(data):
    p = data.draw(programs())
    y = p.stages[-1]
    rng, values = _values(data.draw, p)
    x = p.inputs[data.draw(st.integers(0, len(p.inputs) - 1))]
    _described(p, lambda: check_hvp(y, x, values, rng, head="random"))


@_settings(SCHEDULE_CASES)
@given(st.data())
def test_random_schedules_of_derived_kernels(data):
    """A derived adjoint under a random legal schedule (the fuzzer's, tests/property)
    computes what it computes under the default schedule."""
    p = data.draw(programs())
    y = p.stages[-1]
    rng, values = _values(data.draw, p)
    x = p.inputs[data.draw(st.integers(0, len(p.inputs) - 1))]
    (adjoint,), head_t = td.vjp(y, [x])
    values[head_t] = rng.standard_normal(static_shape(y))
    s = data.draw(schedules(_Stages(adjoint)))
    args = [*placeholders(adjoint), adjoint]

    def check():
        expected = Kernel(adjoint, "default")(values)
        got = poisoned(expected.shape, expected.dtype)
        td.build(s, args)(*[values[a] for a in args[:-1]], got)
        assert_close(got, expected, f"adjoint of {x.name}", rtol=1e-10)
    _described(p, check, "\nschedule of the adjoint of " + x.name + ":\n"
               + "\n".join(str(step) for step in s.trace))


class _Stages:
    """What tests/property/programs.schedules reads of a program: its last stage."""

    def __init__(self, out):
        self.stages = [(out, None)]


@_settings(PROGRAM_CASES)
@given(st.data())
def test_derived_tensors_as_one_program(data):
    """Every adjoint and the tangent of a random program as one ``td.build_program`` (cut
    into kernels, each auto-scheduled) computes what the default schedule does."""
    p = data.draw(programs())
    y = p.stages[-1]
    rng, values = _values(data.draw, p)
    adjoints, head_t = td.vjp(y, p.inputs)
    ty, tangents = td.jvp(y, p.inputs)
    values[head_t] = rng.standard_normal(static_shape(y))
    values.update({t: rng.standard_normal(static_shape(t)) for t in tangents})
    outputs = [*adjoints, ty]
    inputs = placeholders(*outputs)

    def check():
        program = td.build_program(inputs, outputs)
        for out, got in zip(outputs, program(*[values[t] for t in inputs])):
            assert_close(got, Kernel(out, "default")(values), f"{out.name} as a program",
                         rtol=1e-10)
    _described(p, check)
