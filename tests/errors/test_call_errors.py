"""Bad arguments to a compiled function raise a clear error, never reach the kernel."""
import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned


@pytest.fixture(scope="module")
def add():
    n = td.var("n")
    A = td.placeholder((n, 8), name="A")
    B = td.placeholder((n, 8), name="B")
    C = td.compute((n, 8), lambda i, j: A[i, j] + B[i, j], name="C")
    return td.build(td.create_schedule(C.op), [A, B, C])


def arrays(n=4):
    """Inputs A and B, and the output C poisoned: NaN until the kernel writes it."""
    rng = np.random.default_rng(n)
    return [rng.standard_normal((n, 8)).astype("float32") for _ in range(2)] + [poisoned((n, 8))]


def assert_kernel_never_ran(c):
    assert np.isnan(c).all(), "the kernel wrote the output before the arguments were checked"


def test_wrong_argument_count(add):
    with pytest.raises(TypeError, match=r"takes 3 arrays \(A, B, C\), got 2"):
        add(*arrays()[:2])


def test_not_an_array(add):
    a, b, c = arrays()
    with pytest.raises(TypeError, match="argument 'B': expected a numpy.ndarray.*got list"):
        add(a, [1.0], c)
    assert_kernel_never_ran(c)


def test_wrong_dtype(add):
    a, b, c = arrays()
    with pytest.raises(TypeError, match="argument 'A': expected dtype float32, got float64"):
        add(a.astype("float64"), b, c)
    assert_kernel_never_ran(c)


def test_wrong_rank(add):
    a, b, c = arrays()
    with pytest.raises(ValueError, match="argument 'C': expected 2 dimensions"):
        add(a, b, c.reshape(-1))
    assert_kernel_never_ran(c)


def test_wrong_fixed_extent(add):
    a, b, c = arrays()
    with pytest.raises(ValueError, match=r"argument 'A': expected shape \(4, 8\), got \(4, 7\)"):
        add(a[:, :7].copy(), b, c)
    assert_kernel_never_ran(c)


def test_inconsistent_symbolic_size(add):
    a, b, c = arrays()
    with pytest.raises(ValueError, match="argument 'B': dimension 0 is n = 4.*got 5"):
        add(a, np.ones((5, 8), "float32"), c)
    assert_kernel_never_ran(c)


def test_non_contiguous(add):
    a, b, c = arrays()
    with pytest.raises(ValueError, match="argument 'A': expected a C-contiguous array"):
        add(np.ones((8, 8), "float32")[::2], b, c)
    assert_kernel_never_ran(c)


def test_misaligned(add):
    raw = np.zeros(4 * 8 * 4 + 1, np.uint8)
    a = raw[1:].view("float32").reshape(4, 8)
    _, b, c = arrays()
    with pytest.raises(ValueError, match="argument 'A': data pointer is not aligned"):
        add(a, b, c)
    assert_kernel_never_ran(c)


def test_output_aliasing_an_input(add):
    a, b, c = arrays()
    before = a.copy()
    with pytest.raises(ValueError, match="argument 'C' is an output and overlaps argument 'A'"):
        add(a, b, a)
    np.testing.assert_array_equal(a, before)


def test_read_only_output(add):
    a, b, c = arrays()
    c.flags.writeable = False
    with pytest.raises(ValueError, match="argument 'C': it is an output.*read-only"):
        add(a, b, c)
    assert_kernel_never_ran(c)


def test_inputs_may_alias_each_other(add):
    a, _, c = arrays()
    add(a, a, c)
    np.testing.assert_array_equal(c, 2 * a)


def test_zero_sized(add):
    # n = 0: no iteration runs, so nothing is written, not even where the empty output
    # starts (it lies at the start of a larger poisoned block)
    a, b, _ = arrays(0)
    block = poisoned((2, 8))
    c = block[:0]
    add(a, b, c)
    assert c.shape == (0, 8) and np.isnan(block).all()
    # and n is bound afresh at the next call
    a, b, c = arrays(3)
    add(a, b, c)
    np.testing.assert_array_equal(c, a + b)
