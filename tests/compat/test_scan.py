"""TVM's "Scan and Recurrent Kernel" tutorial (scan.py): a cumulative sum, a scan whose
cell has two stages, and a scan with two states. The tutorial binds the cumulative
sum's columns to GPU threads; here they run on the CPU (a scan's loop is not inside a
kernel on our GPU backend, see the README), split and vectorized instead."""
import numpy as np

import tensordsl as td
from tests.helpers import poisoned

ROWS, COLS, COLS2 = 9, 70, 5


def _x():
    return np.random.default_rng(0).uniform(size=(ROWS, COLS)).astype("float32")


def test_cumulative_sum():
    m = td.var("m")
    n = td.var("n")
    X = td.placeholder((m, n), name="X")
    s_state = td.placeholder((m, n))
    s_init = td.compute((1, n), lambda _, i: X[0, i])
    s_update = td.compute((m, n), lambda t, i: s_state[t - 1, i] + X[t, i])
    s_scan = td.scan(s_init, s_update, s_state, inputs=[X])

    s = td.create_schedule(s_scan.op)
    num_thread = 16   # TVM: 256 threads; bind(xo, blockIdx.x), bind(xi, threadIdx.x)
    xo, xi = s[s_init].split(s_init.op.axis[1], factor=num_thread)
    s[s_init].vectorize(xi)
    xo, xi = s[s_update].split(s_update.op.axis[1], factor=num_thread)
    s[s_update].vectorize(xi)
    print(td.lower(s, [X, s_scan], simple_mode=True))

    fscan = td.build(s, [X, s_scan], "llvm", name="myscan")
    a = _x()
    b = poisoned((ROWS, COLS))
    fscan(a, b)
    np.testing.assert_allclose(b, np.cumsum(a, axis=0), rtol=1e-5)


def test_multi_stage_scan_cell():
    m = td.var("m")
    n = td.var("n")
    X = td.placeholder((m, n), name="X")
    s_state = td.placeholder((m, n))
    s_init = td.compute((1, n), lambda _, i: X[0, i])
    s_update_s1 = td.compute((m, n), lambda t, i: s_state[t - 1, i] * 2, name="s1")
    s_update_s2 = td.compute((m, n), lambda t, i: s_update_s1[t, i] + X[t, i], name="s2")
    s_scan = td.scan(s_init, s_update_s2, s_state, inputs=[X])

    s = td.create_schedule(s_scan.op)
    xo, xi = s[s_update_s2].split(s_update_s2.op.axis[1], factor=32)
    s[s_update_s1].compute_at(s[s_update_s2], xo)
    print(td.lower(s, [X, s_scan], simple_mode=True))

    f = td.build(s, [X, s_scan], "llvm")
    a = _x()
    b = poisoned((ROWS, COLS))
    f(a, b)
    want = a.copy()
    for t in range(1, ROWS):
        want[t] = want[t - 1] * 2 + a[t]
    np.testing.assert_allclose(b, want, rtol=1e-5)


def test_multiple_states():
    m = td.var("m")
    n = td.var("n")
    l = td.var("l")  # noqa: E741 (the tutorial's name)
    X = td.placeholder((m, n), name="X")
    s_state1 = td.placeholder((m, n))
    s_state2 = td.placeholder((m, l))
    s_init1 = td.compute((1, n), lambda _, i: X[0, i])
    s_init2 = td.compute((1, l), lambda _, i: 0.0)
    s_update1 = td.compute((m, n), lambda t, i: s_state1[t - 1, i] + X[t, i])
    s_update2 = td.compute((m, l), lambda t, i: s_state2[t - 1, i] + s_state1[t - 1, 0])
    s_scan1, s_scan2 = td.scan([s_init1, s_init2], [s_update1, s_update2],
                               [s_state1, s_state2])
    s = td.create_schedule(s_scan1.op)
    print(td.lower(s, [X, s_scan1, s_scan2], simple_mode=True))

    f = td.build(s, [X, s_scan1, s_scan2], "llvm")
    a = _x()
    b1, b2 = poisoned((ROWS, COLS)), poisoned((ROWS, COLS2))
    f(a, b1, b2)
    want1 = np.cumsum(a, axis=0)
    want2 = np.zeros((ROWS, COLS2), "float32")
    for t in range(1, ROWS):
        want2[t] = want2[t - 1] + want1[t - 1, 0]
    np.testing.assert_allclose(b1, want1, rtol=1e-5)
    np.testing.assert_allclose(b2, want2, rtol=1e-5)
