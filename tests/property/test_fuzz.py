"""The miscompile fuzzer: random programs x random legal schedules, against numpy.

CI runs a fixed budget (500 cases); ``TENSORDSL_FUZZ=long`` runs many more.
"""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensordsl as td

from .programs import programs, schedules

LONG = os.environ.get("TENSORDSL_FUZZ") == "long"
CASES = 3000 if LONG else 500


@settings(max_examples=CASES, deadline=None, derandomize=not LONG,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_program_and_schedule_match_numpy(data):
    program = data.draw(programs())
    s = data.draw(schedules(program))
    out_t, expected = program.stages[-1]
    f = td.build(s, program.inputs + [out_t])
    out = np.full(expected.shape, np.nan, dtype="float32")
    f(*program.input_arrays, out)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    try:
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * scale)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{td.lower(s, program.inputs + [out_t])}") from None
