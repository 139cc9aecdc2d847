"""An intermediate copied whole into the output is computed in the output's place
(``lower/forward_copies.py``), and only where that changes nothing the program says."""
import numpy as np
import pytest

import tensordsl as td
from kernels.dense import conv2d_nchw
from schedules.cpu.conv2d import schedule_conv2d_nchw
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import Visitor
from tests.helpers import poisoned


def allocated(func) -> list[str]:
    names = []

    class Allocations(Visitor):
        def visit_Allocate(self, node):
            names.append(node.buffer.name)
            self.generic_visit(node)

    Allocations().visit(func.body)
    return names


def run(s, args, *inputs):
    f = td.build(s, args)
    out = [poisoned(tuple(int(d.value) for d in t.shape)) for t in args[len(inputs):]]
    f(*inputs, *out)
    return out


def test_the_channels_form_of_a_convolution_writes_its_output_directly():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 7, 7)).astype("float32")
    w = rng.standard_normal((32, 8, 3, 3)).astype("float32")
    X, W = td.placeholder(x.shape, name="x"), td.placeholder(w.shape, name="w")
    out = conv2d_nchw(X, W, padding=1, form="channels")
    s = td.create_schedule(out.op)
    schedule_conv2d_nchw(s, out)
    assert "conv2d_nchw.channels" in allocated(td.lower(s, [X, W, out],
                                                        stop_after="simplify_flat"))
    assert "conv2d_nchw.channels" not in allocated(td.lower(s, [X, W, out]))
    (got,) = run(s, [X, W, out], x, w)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    expected = np.einsum("bcyxij,fcij->bfyx", windows, w)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _two_stages(read):
    A = td.placeholder((6, 10), name="A")
    tmp = td.compute((6, 10), lambda i, j: A[i, j] * 2.0 + 1.0, name="tmp")
    out = td.compute((6, 10), lambda i, j: read(tmp, i, j), name="out")
    return A, tmp, out


@pytest.mark.parametrize("split", [False, True])
def test_a_plain_copy_is_forwarded(split):
    A, tmp, out = _two_stages(lambda t, i, j: t[i, j])
    s = td.create_schedule(out.op)
    if split:   # the copy's loops split and vectorized as a schedule would
        s[out].vectorize(s[out].split(out.op.axis[1], factor=4)[1])
    assert "tmp" not in allocated(td.lower(s, [A, out]))
    a = np.random.default_rng(1).standard_normal((6, 10)).astype("float32")
    (got,) = run(s, [A, out], a)
    np.testing.assert_allclose(got, a * 2 + 1, rtol=1e-6)


def test_a_copy_that_moves_elements_is_kept():
    A = td.placeholder((6, 6), name="A")
    tmp = td.compute((6, 6), lambda i, j: A[i, j] + 1.0, name="tmp")
    out = td.compute((6, 6), lambda i, j: tmp[j, i], name="out")
    s = td.create_schedule(out.op)
    assert "tmp" in allocated(td.lower(s, [A, out]))
    a = np.random.default_rng(2).standard_normal((6, 6)).astype("float32")
    (got,) = run(s, [A, out], a)
    np.testing.assert_allclose(got, (a + 1).T, rtol=1e-6)


def test_an_intermediate_read_again_after_the_copy_is_kept():
    # out2 reads tmp after out's copy: tmp stays where it was computed
    A = td.placeholder((8,), name="A")
    tmp = td.compute((8,), lambda i: A[i] * 3.0, name="tmp")
    out = td.compute((8,), lambda i: tmp[i], name="out")
    out2 = td.compute((8,), lambda i: tmp[i] + out[i], name="out2")
    a = np.arange(8, dtype="float32")
    s = td.create_schedule([out.op, out2.op])
    assert "tmp" in allocated(td.lower(s, [A, out, out2]))
    got, got2 = run(s, [A, out, out2], a)
    np.testing.assert_allclose(got, a * 3)
    np.testing.assert_allclose(got2, a * 6)


def test_an_output_of_another_size_or_dtype_is_not_a_copy_target():
    A = td.placeholder((8,), name="A")
    tmp = td.compute((8,), lambda i: A[i] * 3.0, name="tmp")
    half = td.compute((4,), lambda i: tmp[i], name="half")
    cast = td.compute((8,), lambda i: tmp[i].astype("float64"), name="cast")
    for out in (half, cast):
        s = td.create_schedule(out.op)
        assert "tmp" in allocated(td.lower(s, [A, out]))
    a = np.arange(8, dtype="float32")
    s = td.create_schedule(half.op)
    (got,) = run(s, [A, half], a)
    np.testing.assert_allclose(got, a[:4] * 3)
