"""The sparse operators' GPU templates (schedules/cuda/sparse.py), both splits: the CUDA C
compiled by NVRTC for sm_80 and run by the emulator (targets/cuda/emulate.py, the
threads and blocks in an order drawn from the seed each test names) against scipy.sparse,
on random matrices with empty rows, an empty matrix, one dense row and power-law rows;
outputs start as NaN. The kernels' number of stored entries is symbolic, so one build
per (operator, shape, split, knobs) serves every matrix."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels.sparse as K
import tensordsl as td
from schedules.cuda import schedule_sparse
from schedules.cuda.sparse import SCHEDULES, lanes_for
from targets.cuda import driver
from tensordsl.errors import BuildError, ScheduleError
from tensordsl.nd import aligned_numpy
from tests.helpers import poisoned

OPERATORS = ("spmv", "spmm", "sddmm", "sparse_mul", "sparse_softmax")
PATTERN = ("sddmm", "sparse_mul", "sparse_softmax")
M, N, F = 150, 70, 12           # the matrices' shape, the dense width
# knobs that give several blocks on these small shapes (rows, positions per block)
SMALL = {"threads": 32, "lanes": 8, "columns": 8}


@functools.cache
def _kernel(name, shape, dense, schedule, knobs=(), arch="sm_80", dtype="float32"):
    """The module (``arch`` None: the device's), its sparse components' names, output."""
    A = td.sparse_placeholder(shape, "csr", dtype, name="A")
    dense = [td.placeholder(s, dtype, f"d{k}") for k, s in enumerate(dense)]
    out = getattr(K, name)(A, *dense)
    s = schedule_sparse(name, out, A, {"schedule": schedule, **dict(knobs)})
    target = "cuda" if arch is None else f"cuda -arch={arch}"
    f = td.build(s, [*A.placeholders(), *dense, out], target=target, check_indices=False)
    return f, [t.name.split(".", 1)[1] for t in A.placeholders()], out


def _aligned(a: np.ndarray) -> np.ndarray:
    """A copy on 16 bytes, as device memory is (the emulator checks)."""
    out = aligned_numpy(a.shape, a.dtype)
    out[...] = a
    return out


def _components(Mx) -> dict:
    return {"pos1": Mx.indptr.astype("int32"), "crd1": Mx.indices.astype("int32"),
            "vals": Mx.data,
            "rows1": np.repeat(np.arange(Mx.shape[0], dtype="int32"), np.diff(Mx.indptr))}


def emulate(name, Mx, *dense, schedule="rows", knobs=SMALL, seed=0, dtype="float32"):
    """The operator's result on the emulated GPU, from a NaN-filled output."""
    Mx = sp.csr_matrix(Mx, dtype=dtype)
    Mx.sort_indices()
    f, names, out = _kernel(name, Mx.shape, tuple(d.shape for d in dense), schedule,
                            tuple(sorted(knobs.items())), dtype=dtype)
    shape = (Mx.nnz,) if name in PATTERN else tuple(int(d.value) for d in out.shape)
    result = _aligned(poisoned(shape, dtype))
    comps = _components(Mx)
    f.emulate(*[_aligned(comps[k]) for k in names], *map(_aligned, dense), result, seed=seed)
    return Mx, result


def expected(name, Mx, *dense):
    rows = np.repeat(np.arange(Mx.shape[0]), np.diff(Mx.indptr))
    if name in ("spmv", "spmm"):
        return np.asarray(Mx @ dense[0])
    if name == "sddmm":
        X, Y = dense
        return Mx.data * (X[rows] * Y[Mx.indices]).sum(1)
    if name == "sparse_mul":
        return Mx.data * dense[0][rows, Mx.indices]
    out = np.empty_like(Mx.data)
    for i in range(Mx.shape[0]):
        lo, hi = Mx.indptr[i], Mx.indptr[i + 1]
        if hi > lo:
            e = np.exp(Mx.data[lo:hi] - Mx.data[lo:hi].max())
            out[lo:hi] = e / e.sum()
    return out


def matrix(kind: str, rng, m=M, n=N, density=0.03):
    """A random (m, n) CSR matrix of ``kind``: ``random`` (many empty rows, the first and
    last tenth all empty),
    ``empty`` (no entries), ``dense_row`` (one full row among sparse ones),
    ``power_law`` (row lengths drawn from a Zipf law: a few long rows, many short)."""
    if kind == "empty":
        return sp.csr_matrix((m, n), dtype="float32")
    if kind == "power_law":
        lengths = np.minimum(rng.zipf(1.6, m), n)
        lengths[rng.random(m) < 0.2] = 0
        rows = np.repeat(np.arange(m), lengths)
        cols = np.concatenate([rng.choice(n, k, replace=False) for k in lengths])
        vals = rng.standard_normal(rows.size).astype("float32")
        return sp.csr_matrix((vals, (rows, cols)), shape=(m, n))
    Mx = sp.random(m, n, density=density, format="lil", dtype="float32", random_state=rng)
    Mx[: m // 10, :] = 0       # leading and trailing rows empty: the first and last
    Mx[m - m // 10:, :] = 0    # blocks' shares hold only rows without entries
    if kind == "dense_row":
        Mx[rng.integers(m), :] = rng.standard_normal(n).astype("float32")
    Mx = sp.csr_matrix(Mx)
    Mx.data = rng.standard_normal(Mx.nnz).astype("float32")
    return Mx


def dense_shapes(name, m, n) -> tuple:
    return {"spmv": ((n,),), "spmm": ((n, F),), "sddmm": ((m, F), (n, F)),
            "sparse_mul": ((m, n),), "sparse_softmax": ()}[name]


KINDS = ("random", "empty", "dense_row", "power_law")


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", OPERATORS)
def test_every_template_matches_scipy(name, schedule):
    seed = OPERATORS.index(name) * 10 + SCHEDULES.index(schedule) * 5
    rng = np.random.default_rng(seed)
    for k, kind in enumerate(KINDS):
        Mx = matrix(kind, rng)
        shapes = dense_shapes(name, *Mx.shape)
        dense = [rng.standard_normal(s).astype("float32") for s in shapes]
        Mx, got = emulate(name, Mx, *dense, schedule=schedule, seed=seed + k)
        np.testing.assert_allclose(got, expected(name, Mx, *dense), rtol=1e-5, atol=1e-5,
                                   err_msg=f"{kind} matrix, emulated with seed {seed + k}")


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(OPERATORS), st.sampled_from(SCHEDULES), st.sampled_from(KINDS),
       st.sampled_from([0.01, 0.1, 0.5]), st.integers(0, 2**32 - 1))
def test_random_patterns_in_random_thread_orders(name, schedule, kind, density, seed):
    """Patterns, values and the emulator's order of blocks and threads all drawn from
    ``seed`` (the kernels are built once: the number of entries is symbolic)."""
    rng = np.random.default_rng(seed)
    Mx = matrix(kind, rng, density=density)
    dense = [rng.standard_normal(s).astype("float32") for s in dense_shapes(name, M, N)]
    Mx, got = emulate(name, Mx, *dense, schedule=schedule, seed=seed)
    np.testing.assert_allclose(got, expected(name, Mx, *dense), rtol=1e-5, atol=1e-5,
                               err_msg=f"emulated with seed {seed}")


@pytest.mark.parametrize("name", ["spmv", "spmm", "sparse_softmax"])
def test_the_default_knobs_and_odd_shapes(name):
    """One row per block where the rows are fewer than a block's, a single row, no rows;
    the default knobs (a warp per row, 128 threads)."""
    rng = np.random.default_rng(11)
    for m, n in ((1, 5), (3, 40), (0, 4)):
        Mx = matrix("dense_row" if m else "empty", rng, m, n)
        shapes = dense_shapes(name, *Mx.shape)
        dense = [rng.standard_normal(s).astype("float32") for s in shapes]
        for schedule in SCHEDULES:
            Mx, got = emulate(name, Mx, *dense, schedule=schedule, knobs={}, seed=m)
            np.testing.assert_allclose(got, expected(name, Mx, *dense), rtol=1e-5,
                                       atol=1e-5, err_msg=f"{m}x{n}, {schedule}")


def test_the_nonzero_split_gives_each_block_an_equal_share():
    """On a matrix whose entries sit in a few rows, the balanced blocks still compute
    every row once, in several random orders; and the row split (one block per chunk)
    agrees with it bit for bit: each row is summed in the same order by both."""
    rng = np.random.default_rng(5)
    Mx = matrix("power_law", rng)
    Mx = sp.lil_matrix(Mx)
    Mx[7, :] = 1.0
    Mx[M - 1, : N // 2] = 2.0
    Mx = sp.csr_matrix(Mx)
    x = rng.standard_normal(N).astype("float32")
    results = [emulate("spmv", Mx, x, schedule="nonzeros", seed=s)[1] for s in range(3)]
    for got in results:
        np.testing.assert_allclose(got, Mx @ x, rtol=1e-5, atol=1e-5)
    rows = emulate("spmv", Mx, x, schedule="rows", seed=9)[1]
    np.testing.assert_array_equal(results[0], rows)


def test_sources_compile_for_sm_80_with_nvrtc():
    """Every template's CUDA C compiles (a CUBIN, an ELF image) for sm_80; SpMV reduces a
    row with warp shuffles, and the nonzero split searches pos for each block's share."""
    for name in OPERATORS:
        for schedule in SCHEDULES:
            f, _, _ = _kernel(name, (M, N), dense_shapes(name, M, N), schedule)
            assert f.cubin[:4] == b"\x7fELF", (name, schedule)
            source = f.get_source()
            if name in ("spmv", "sparse_softmax", "sddmm"):
                assert "__shfl_xor_sync" in source, (name, schedule)
            balanced = "gridDim.x" in source and "while (" in source
            assert balanced == (schedule == "nonzeros" and name in ("spmv", "spmm",
                                                                    "sparse_softmax"))


@pytest.mark.parametrize("name", ["spmv", "spmm", "sparse_softmax"])
def test_blocks_of_several_chunks(name):
    """``chunks=3``: each block (each share) runs three chunks of rows in turn."""
    rng = np.random.default_rng(8)
    for schedule in SCHEDULES:
        for kind in ("random", "power_law"):
            Mx = matrix(kind, rng)
            dense = [rng.standard_normal(s).astype("float32") for s in dense_shapes(name, M, N)]
            Mx, got = emulate(name, Mx, *dense, schedule=schedule, knobs={**SMALL, "chunks": 3},
                              seed=13)
            np.testing.assert_allclose(got, expected(name, Mx, *dense), rtol=1e-5,
                                       atol=1e-5, err_msg=f"{kind}, {schedule}")


@pytest.mark.parametrize("name", ["spmv", "sddmm"])
def test_float64(name):
    rng = np.random.default_rng(21)
    Mx = matrix("power_law", rng).astype("float64")
    dense = [rng.standard_normal(s) for s in dense_shapes(name, M, N)]
    for schedule in SCHEDULES:
        Mx, got = emulate(name, Mx, *dense, schedule=schedule, seed=3, dtype="float64")
        np.testing.assert_allclose(got, expected(name, Mx, *dense), rtol=1e-12, atol=1e-12)


def test_the_balanced_block_loop_is_printed():
    A = td.sparse_placeholder((40, 8), "csr", name="A")
    x = td.placeholder((8,), "float32", "x")
    y = K.spmv(A, x)
    s = schedule_sparse("spmv", y, A, {"schedule": "nonzeros", **SMALL})
    text = str(td.lower(s, [*A.placeholders(), x, y]))
    # chunks of 4 rows (32 threads / 8 lanes), each weighing its first row's position
    assert "# blockIdx.x  # balanced by A.pos1[min(i.outer*4, 40)]" in text, text


def test_lanes_follow_the_average_row_length():
    assert [lanes_for(a) for a in (0, 1.5, 3, 4, 9.2, 31, 200)] == [2, 2, 4, 4, 16, 32, 32]
    rng = np.random.default_rng(2)
    Mx = matrix("random", rng)
    x = rng.standard_normal(N).astype("float32")
    lanes = lanes_for(Mx.nnz / M)
    _, got = emulate("spmv", Mx, x, knobs={"threads": 64, "lanes": lanes}, seed=4)
    np.testing.assert_allclose(got, Mx @ x, rtol=1e-5, atol=1e-5)


def test_bad_knobs_and_balance_are_refused():
    A = td.sparse_placeholder((8, 8), "csr", name="A")
    x = td.placeholder((8,), "float32", "x")
    y = K.spmv(A, x)
    with pytest.raises(ValueError, match="lanes must be a power of two"):
        schedule_sparse("spmv", y, A, {"lanes": 12})
    with pytest.raises(ValueError, match="threads must be a multiple of 32"):
        schedule_sparse("spmv", y, A, {"threads": 48})
    with pytest.raises(ValueError, match="no sparse operator 'spmx'"):
        schedule_sparse("spmx", y, A)
    s = td.create_schedule(y.op)
    with pytest.raises(ScheduleError, match="only the blocks"):
        s[y].bind(y.op.axis[0], td.thread_axis("threadIdx.x"), balance=A.pos[1])
    _, inner = s[y].split(y.op.axis[0], factor=2)
    with pytest.raises(ScheduleError, match="outer part of a split"):
        s[y].bind(inner, td.thread_axis("blockIdx.x"), balance=A.pos[1])


def test_a_balanced_block_loop_refuses_shared_stages():
    """The body of a balanced block loop runs once per iteration of the block's share: a
    shared stage inside would need barriers between the iterations."""
    A = td.sparse_placeholder((16, 16), "csr", name="A")
    x = td.placeholder((16,), "float32", "x")
    y = K.spmv(A, x)
    s = td.create_schedule(y.op)
    xs = s.cache_read(x, "shared", [y])
    s[y].bind(y.op.axis[0], td.thread_axis("blockIdx.x"), balance=A.pos[1])
    s[xs].compute_at(s[y], y.op.axis[0])
    (t,) = s[xs].op.axis
    s[xs].bind(t, td.thread_axis("threadIdx.x"))
    with pytest.raises(BuildError, match="shared among the blocks by weight"):
        td.build(s, [*A.placeholders(), x, y], target="cuda -arch=sm_80")


@pytest.mark.gpu
@pytest.mark.skipif(not driver.is_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_on_a_real_gpu(schedule):
    rng = np.random.default_rng(1)
    Mx = matrix("power_law", rng, 4000, 3000)
    Mx.sort_indices()
    for name in ("spmv", "spmm", "sddmm", "sparse_softmax"):
        shapes = dense_shapes(name, *Mx.shape)
        dense = [rng.standard_normal(s).astype("float32") for s in shapes]
        f, names, out = _kernel(name, Mx.shape, shapes, schedule, arch=None)
        shape = (Mx.nnz,) if name in PATTERN else tuple(int(d.value) for d in out.shape)
        comps = _components(Mx)
        result = td.nd.empty(shape, "float32", device="cuda")
        f(*[td.nd.array(comps[k], device="cuda") for k in names],
          *[td.nd.array(d, device="cuda") for d in dense], result)
        np.testing.assert_allclose(result.numpy(), expected(name, Mx, *dense), rtol=1e-4,
                                   atol=1e-4, err_msg=name)
