"""The miscompile fuzzer: random programs x random legal schedules, against numpy.

CI runs a fixed, derandomized budget (``CASES`` float and integer programs) plus
``FRESH_CASES`` from a fresh seed, printed in pytest's header so that a failure can be
replayed with ``TENSORDSL_FUZZ_SEED=<seed>``. ``TENSORDSL_FUZZ=long`` runs
``LONG_CASES`` (over 20,000 in all, not derandomized).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import tensordsl as td

from tests.helpers import poisoned

from .programs import int_programs, programs, schedules

LONG = os.environ.get("TENSORDSL_FUZZ") == "long"
CASES = 12000 if LONG else 500
INT_CASES = 6000 if LONG else 200
OOB_CASES = 2500 if LONG else 100
FRESH_CASES = 300
FRESH_SEED = int(os.environ.get("TENSORDSL_FUZZ_SEED") or
                 int.from_bytes(os.urandom(4), "little"))


def _describe(program, s) -> str:
    from tensordsl.ir.printer import Printer
    p = Printer()
    lines = [f"{t.name}{tuple(a.shape)} = " + (" ".join(p.expr(b) for b in t.op.body)
                                                 if hasattr(t.op, "body") else "input")
             for t, a in program.stages]
    return "\n".join(lines + [f"schedule: {step}" for step in s.trace])


def _check(program, s):
    out_t, expected = program.stages[-1]
    args = program.inputs + [out_t]
    try:
        f = td.build(s, args)
    except Exception as err:
        raise AssertionError(f"{type(err).__name__}: {err}\n{_describe(program, s)}") from err
    out = poisoned(expected.shape, expected.dtype, unlike=expected)
    try:
        f(*program.input_arrays, out)
    except Exception as err:
        raise AssertionError(f"{type(err).__name__}: {err}\n{_describe(program, s)}\n"
                             f"{td.lower(s, args)}") from err
    try:
        if expected.dtype.kind == "f":
            scale = max(1.0, float(np.abs(expected).max(initial=0)))
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * scale)
        elif expected.dtype.kind == "b":  # as bytes: the poison byte would read as True
            np.testing.assert_array_equal(out.view(np.uint8), expected.view(np.uint8))
        else:
            np.testing.assert_array_equal(out, expected)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{td.lower(s, args)}") from None


def _settings(cases, derandomize=not LONG):
    return settings(max_examples=cases, deadline=None, derandomize=derandomize,
                    suppress_health_check=list(HealthCheck))


@_settings(CASES)
@given(st.data())
def test_random_program_and_schedule_match_numpy(data):
    program = data.draw(programs())
    _check(program, data.draw(schedules(program)))


@_settings(INT_CASES)
@given(st.data())
def test_random_integer_program_and_schedule_match_numpy(data):
    program = data.draw(int_programs())
    _check(program, data.draw(schedules(program)))


@pytest.mark.skipif(LONG, reason="the long run draws fresh programs everywhere")
@seed(FRESH_SEED)
@_settings(FRESH_CASES, derandomize=False)
@given(st.data())
def test_fresh_seed_programs_match_numpy(data):
    program = data.draw(st.one_of(programs(), int_programs()))
    try:
        _check(program, data.draw(schedules(program)))
    except AssertionError as err:
        raise AssertionError(f"fresh seed {FRESH_SEED} (replay with "
                             f"TENSORDSL_FUZZ_SEED={FRESH_SEED}): {err}") from None


@_settings(OOB_CASES)
@given(st.data())
def test_out_of_bounds_programs_are_refused(data):
    """A stage reading its source shifted past an edge, unguarded, never runs: a
    ``BuildError`` for static extents, a ``ValueError`` before the kernel for symbolic
    ones (the output keeps its poison); a shift that stays inside runs."""
    program = data.draw(programs())
    src_t, src_a = program.stages[-1]
    axis = data.draw(st.integers(0, src_t.ndim - 1))
    off = data.draw(st.sampled_from([-100000, -2, -1, 1, 2, 100000]))
    out_t = td.compute(src_t.shape, lambda *i: src_t[tuple(
        j + off if d == axis else j for d, j in enumerate(i))], name="oob")
    program.stages.append((out_t, src_a))
    s = data.draw(schedules(program))
    args = program.inputs + [out_t]
    static = all(isinstance(d, td.ir.nodes.IntImm) for d in src_t.shape)
    if src_a.size == 0:
        return  # nothing is read: nothing to refuse
    if static:
        with pytest.raises(td.BuildError, match=rf"'oob[.\w]*' reads tensor '{src_t.name}' at "):
            td.build(s, args)
        return
    f = td.build(s, args)
    out = poisoned(src_a.shape, "float32")
    with pytest.raises(ValueError, match=rf"'oob[.\w]*' reads tensor '{src_t.name}' at "):
        f(*program.input_arrays, out)
    assert np.isnan(out).all()
