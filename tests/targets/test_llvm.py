"""The CPU backend: vector instructions, a real thread runtime, the compile cache."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tensordsl as td
from targets import cache
from tests.helpers import poisoned


def elementwise(n=1 << 12, vector=True, parallel=False):
    A = td.placeholder((n,), name="A")
    B = td.compute((n,), lambda i: td.maximum(A[i] * 1.5 + 0.5, 0.0), name="B")
    s = td.create_schedule(B.op)
    o, i = s[B].split(B.op.axis[0], factor=16)
    if vector:
        s[B].vectorize(i)
    if parallel:
        s[B].parallel(o)
    return s, [A, B]


def test_vectorize_emits_simd_instructions():
    s, args = elementwise()
    f = td.build(s, args)
    asm = f.get_source("asm")
    assert "<16 x float>" in f.get_source("ll")
    # 16 float lanes: AVX-512 zmm or two AVX ymm registers
    assert any(reg in asm for reg in ("%zmm", "%ymm"))
    assert "vmaxps" in asm


_THREAD_PROBE = """
import os, threading, numpy as np
from tests.helpers import poisoned
from tests.targets.test_llvm import elementwise
import tensordsl as td
f = td.build(*elementwise(1 << 20, parallel=True))
before = len(os.listdir("/proc/self/task"))
a = np.random.default_rng(0).random(1 << 20, dtype="float32"); b = poisoned(a.shape)
f(a, b)
assert np.allclose(b, np.maximum(a * 1.5 + 0.5, 0))
print(before, len(os.listdir("/proc/self/task")), threading.active_count())
"""


def test_parallel_runs_on_the_openmp_team():
    s, args = elementwise(1 << 20, parallel=True)
    assert "GOMP_parallel" in td.build(s, args).get_source("ll")
    # In a fresh process: libgomp starts (and keeps) OS threads that Python never sees.
    env = dict(os.environ, OMP_NUM_THREADS="2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _THREAD_PROBE], env=env, cwd=root,
                         capture_output=True, text=True, check=True).stdout.split()
    before, after, python_threads = map(int, out)
    assert after == before + 1
    assert python_threads == 1


def test_disk_cache_hit_skips_compilation(monkeypatch, tmp_path):
    monkeypatch.setenv("TENSORDSL_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    s, args = elementwise(1000)
    td.build(s, args)
    assert list(tmp_path.rglob("*.o"))
    cache.clear_memory()
    from targets.base import get_backend
    monkeypatch.setattr(get_backend("llvm"), "compile",
                        lambda *a: pytest.fail("compiled despite a cached object"))
    f = td.build(*elementwise(1000))
    a = np.random.default_rng(0).random(1000, dtype="float32")
    b = poisoned(a.shape)
    f(a, b)
    np.testing.assert_allclose(b, np.maximum(a * 1.5 + 0.5, 0), rtol=1e-6)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_entry_is_rebuilt(monkeypatch, tmp_path, damage):
    monkeypatch.setenv("TENSORDSL_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    td.build(*elementwise(999))
    (entry,) = tmp_path.rglob("*.o")
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    else:
        entry.write_bytes(raw[:-100] + bytes(b ^ 0xFF for b in raw[-100:]))
    cache.clear_memory()
    f = td.build(*elementwise(999))
    a = np.random.default_rng(0).random(999, dtype="float32")
    b = poisoned(a.shape)
    f(a, b)
    np.testing.assert_allclose(b, np.maximum(a * 1.5 + 0.5, 0), rtol=1e-6)
    assert entry.read_bytes() == raw  # rewritten whole


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown target 'metal'"):
        td.build(*elementwise(10), target="metal")


def test_thread_binding_needs_cuda():
    s, args = elementwise(64)
    B = args[1]
    s2 = td.create_schedule(B.op)
    o, i = s2[B].split(B.op.axis[0], factor=16)
    s2[B].bind(o, td.thread_axis("blockIdx.x"))
    with pytest.raises(td.BuildError, match="target='cuda'"):
        td.build(s2, args)


@pytest.mark.parametrize("lanes", [1, 8, 16, 64])
@pytest.mark.parametrize("fn", ["exp", "tanh"])
def test_inline_exp_and_tanh_match_numpy_everywhere(fn, lanes):
    # the vector forms (vscalefps, a rational tanh with a Newton-refined reciprocal on
    # AVX-512) against float64 numpy, special values included: every element checked
    x = np.concatenate([np.linspace(-120, 100, 4086), np.linspace(-1e-3, 1e-3, 64),
                        [np.nan, np.inf, -np.inf, 0.0, 88.7, -87.0, 7.95, -7.95, 1e-30,
                         -1e-30]]).astype("float32")
    X = td.placeholder((x.size,), name="X")
    Y = td.compute((x.size,), lambda i: getattr(td, fn)(X[i]), name="Y")
    s = td.create_schedule(Y.op)
    if lanes > 1:
        s[Y].vectorize(s[Y].split(Y.op.axis[0], factor=lanes)[1])
    with np.errstate(all="ignore"):
        ref = getattr(np, fn)(x.astype("float64"))
    y = poisoned(x.shape, unlike=ref)   # not NaN where NaN must come out
    td.build(s, [X, Y])(x, y)
    normal = np.isfinite(ref) & (np.abs(ref) > 1e-37) & (np.abs(ref) < 3e38)
    assert np.max(np.abs(y[normal] - ref[normal]) / np.abs(ref[normal])) < 5e-7
    overflow = ~normal & (np.abs(ref) >= 3.5e38)
    np.testing.assert_array_equal(y[overflow], np.sign(ref[overflow]) * np.float32(np.inf))
    tiny = np.isfinite(ref) & (np.abs(ref) <= 1e-37)       # zero, or a denormal away
    np.testing.assert_allclose(y[tiny], ref[tiny], rtol=0, atol=np.finfo("float32").tiny)
    edge = np.isfinite(ref) & ~normal & ~tiny & ~overflow   # near float32's largest
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(y[edge], ref[edge].astype("float32"), rtol=5e-7)
    assert np.isnan(y[np.isnan(x)]).all()
    assert (normal | overflow | tiny | edge | np.isnan(x)).all()
    if fn == "tanh":
        assert y[x == np.inf][0] == 1.0 and y[x == -np.inf][0] == -1.0
    else:
        assert y[x == -np.inf][0] == 0.0


def _offset_array(n, dtype, offset_bytes):
    """A 1-D array starting ``offset_bytes`` past a 64-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n * itemsize + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset_bytes
    return raw[start:start + n * itemsize].view(dtype)


def streaming(n, dtype, lanes, parallel=True):
    A = td.placeholder((n,), dtype=dtype, name="A")
    B = td.compute((n,), lambda i: A[i] * 3 + A[i], name="B")
    s = td.create_schedule(B.op)
    o, i = s[B].split(B.op.axis[0], factor=lanes)
    s[B].vectorize(i)
    if parallel:
        s[B].parallel(o)
    s[B].pragma(o, "nontemporal")
    return td.build(s, [A, B])


@pytest.mark.parametrize("dtype,lanes", [("float32", 16), ("float32", 8), ("float64", 8),
                                         ("float16", 32), ("int8", 64), ("int32", 4)])
@pytest.mark.parametrize("offset", [0, 16, 4 * 3, 32])
def test_nontemporal_stores_write_the_same_values_at_any_alignment(dtype, lanes, offset):
    n = 1000 + 7  # a guarded vector tail (masked stores never stream)
    f = streaming(n, dtype, lanes)
    rng = np.random.default_rng(offset)
    a = _offset_array(n, dtype, 0)
    a[:] = rng.integers(-20, 20, n).astype(dtype)
    out = _offset_array(n, dtype, offset if offset % np.dtype(dtype).itemsize == 0 else 0)
    out[:] = poisoned(n, dtype)
    f(a, out)
    np.testing.assert_array_equal(out, (a * 3 + a).astype(dtype))


def test_nontemporal_pragma_emits_streaming_stores_and_a_fence():
    asm = streaming(1 << 12, "float32", 16).get_source("asm")
    assert "vmovntps" in asm or "movntps" in asm
    assert "sfence" in asm
    plain = td.build(*elementwise(1 << 12, parallel=True)).get_source("asm")
    assert "movnt" not in plain and "sfence" not in plain


def test_nontemporal_never_applies_to_the_kernels_own_buffers():
    # B is an intermediate (allocated inside the kernel): only C, the argument, streams
    n = 1 << 10
    A = td.placeholder((n,), name="A")
    B = td.compute((n,), lambda i: A[i] + 1.0, name="B")
    C = td.compute((n,), lambda i: B[i] * 2.0, name="C")
    s = td.create_schedule(C.op)
    o, i = s[C].split(C.op.axis[0], factor=16)
    s[C].vectorize(i)
    s[C].pragma(o, "nontemporal")
    s[B].compute_at(s[C], o)
    s[B].vectorize(s[B].op.axis[0])
    f = td.build(s, [A, C])
    stores = [line for line in f.get_source("ll").splitlines() if " store <" in line]
    streamed = [line for line in stores if "!nontemporal" in line]
    # C: one aligned whole vector or four 16-byte pieces; B's store and C's fallback plain
    assert len(streamed) == 5 and len(stores) - len(streamed) == 2
    a = np.random.default_rng(0).standard_normal(n).astype("float32")
    out = poisoned(a.shape)
    f(a, out)
    np.testing.assert_allclose(out, (a + 1) * 2, rtol=1e-6)


@pytest.mark.parametrize("extent", [65, 128, 1092])
def test_a_very_wide_vectorized_loop_runs_as_vectors_of_at_most_64_lanes(extent):
    # (a 1092-lane vector kept LLVM busy for minutes; the fuzzer drew one)
    A = td.placeholder((3, extent), name="A")
    B = td.compute((3, extent), lambda i, j: A[i, j] * 2.0 + A[i, extent - 1 - j], name="B")
    s = td.create_schedule(B.op)
    s[B].vectorize(B.op.axis[1])
    text = str(td.lower(s, [A, B]))
    assert "j.chunk" in text and "x64(" in text and f"x{extent}(" not in text
    a = np.random.default_rng(extent).standard_normal((3, extent)).astype("float32")
    b = poisoned(a.shape)
    td.build(s, [A, B])(a, b)
    np.testing.assert_allclose(b, a * 2 + a[:, ::-1], rtol=1e-6)


@pytest.mark.parametrize("rows", [0, 3, 10])
def test_parallel_body_captures_variables_used_only_in_a_vector_mask(rows):
    # found by the fuzzer: the edge partition of a parallel loop over a symbolic extent
    # masks its vector loads with `... < n0`, and n0 appears nowhere else in the body;
    # the outlined body did not receive it ("variable 'n0' is not defined here")
    n0 = td.var("n0")
    X0 = td.placeholder((n0, 1, 8), name="X0")
    S0 = td.compute((n0, 1, 8), lambda i, j, k: X0[i, j, k] + X0[i, j, k], name="S0")
    s = td.create_schedule(S0.op)
    s.cache_read(X0, "local", [S0])
    fused = s[S0].fuse(S0.op.axis[0], S0.op.axis[1])
    outer, inner = s[S0].split(fused, factor=9)
    s[S0].vectorize(s[S0].fuse(inner, S0.op.axis[2]))
    s[S0].parallel(outer)
    f = td.build(s, [X0, S0])
    x = np.random.default_rng(rows).random((rows, 1, 8), dtype="float32")
    y = np.full_like(x, np.nan)
    f(x, y)
    np.testing.assert_array_equal(y, 2 * x)


@pytest.mark.parametrize("n, dtype", [(64, "float32"), (50, "float32"), (37, "float64"),
                                      (40, "int32")])
def test_vector_reads_at_data_indices_are_gathers(n, dtype):
    """``A[idx[i]]`` over a vectorized ``i``: one masked gather (int32 indices kept 32-bit)
    instead of a load and an insert per lane; lanes past a ragged end read nothing."""
    A = td.placeholder((1000,), dtype, "A")
    idx = td.placeholder((n,), "int32", "idx")
    B = td.compute((n,), lambda i: A[idx[i].astype("int64")] * 2, name="B")
    s = td.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=16)
    s[B].vectorize(inner)
    f = td.build(s, [A, idx, B], check_indices=False)
    assert "llvm.masked.gather" in f.get_source("ll")
    rng = np.random.default_rng(0)
    a = rng.integers(-100, 100, 1000).astype(dtype)
    ix = rng.integers(0, 1000, n).astype("int32")
    out = poisoned((n,), dtype)
    f(a, ix, out)
    np.testing.assert_array_equal(out, a[ix] * 2)


def test_arrays_passed_as_objects_reach_the_kernel_as_their_data():
    # td.ops's repeated calls pass numpy arrays themselves (their data pointer read in
    # machine code): the same results as their addresses, flagged per argument
    n = 37
    A = td.placeholder((n,), "float32", "A")
    B = td.placeholder((n,), "float32", "B")
    C = td.compute((n,), lambda i: A[i] * 2.0 + B[i], name="C")
    f = td.build(td.create_schedule(C.op), [A, B, C])
    rng = np.random.default_rng(0)
    a, b = rng.random(n).astype("float32"), rng.random(n).astype("float32")
    for flags in [(True, True, True), (False, True, True), (True, False, False)]:
        cfunc, trailing = f.bound_call(objects=flags)
        c = poisoned((n,))
        args = [x if flag else x.ctypes.data for x, flag in zip((a, b, c), flags)]
        assert cfunc(*args, *trailing) == 0
        np.testing.assert_array_equal(c, a * 2.0 + b)
    view = rng.random(2 * n).astype("float32")[n:]          # a view: data inside a block
    c = poisoned((n,))
    cfunc, trailing = f.bound_call(objects=(True, True, True))
    cfunc(view, b, c, *trailing)
    np.testing.assert_array_equal(c, view * 2.0 + b)


def test_a_packed_call_reads_its_fixed_arrays_and_sizes_from_one_block():
    # sparse td.ops calls fix a matrix's arrays and sizes in one block of words: the
    # kernel sees each fixed pointer and size in its place among the arrays passed
    n = td.var("n")
    A = td.placeholder((n,), "float32", "A")
    B = td.placeholder((n,), "float32", "B")
    W = td.placeholder((3,), "float32", "W")
    C = td.compute((n,), lambda i: A[i] * W[0] + B[i] * W[2], name="C")
    f = td.build(td.create_schedule(C.op), [A, W, B, C], check_indices=False)
    rng = np.random.default_rng(1)
    a, b, w = (rng.random(k).astype("float32") for k in (29, 29, 3))
    cfunc, block = f.packed_call([a.ctypes.data, w.ctypes.data], {"n": 29},
                                 (False, False, True, True))
    assert list(block) == [a.ctypes.data, w.ctypes.data, 29]
    c = poisoned((29,))
    assert cfunc(block, b, c) == 0
    np.testing.assert_allclose(c, a * w[0] + b * w[2], rtol=1e-6)
    # the fixed words need not come first among the kernel's arguments
    cfunc, block = f.packed_call([w.ctypes.data, b.ctypes.data], {"n": 29},
                                 (True, False, False, True))
    c = poisoned((29,))
    assert cfunc(block, a, c) == 0
    np.testing.assert_allclose(c, a * w[0] + b * w[2], rtol=1e-6)


@pytest.mark.parametrize("lanes", [1, 8])
def test_double_to_half_rounds_once_and_needs_no_libcall(lanes):
    """float64 -> float16 is rounded to nearest (ties to even) as numpy does, bit for
    bit — including values just off a half's midpoint, which rounding through float32
    naively would tie the wrong way — and compiles without __truncdfhf2: on a CPU with
    no double -> half instruction (AMD Zen 4) LLVM called it, the JIT left it
    unresolved, and the kernel crashed."""
    n = td.var("n")
    D = td.placeholder((n,), dtype="float64", name="D")
    H = td.compute((n,), lambda i: D[i].astype("float16"), name="H")
    s = td.create_schedule(H.op)
    if lanes > 1:
        _, inner = s[H].split(H.op.axis[0], factor=lanes)
        s[H].vectorize(inner)
    f = td.build(s, [D, H])
    assert "__truncdfhf2" not in f.get_source("asm")
    ulp = 2.0 ** -10
    edges = [1 + ulp / 2 + 2.0 ** -40, 1 + ulp / 2 - 2.0 ** -40, 1 + ulp / 2,
             1 + 1.5 * ulp, -(1 + ulp / 2 + 2.0 ** -40), 65504.0, 65520.0, 65519.99,
             2.0 ** -24, 2.0 ** -25, 2.0 ** -25 + 2.0 ** -60, 1e-300, -0.0,
             np.inf, -np.inf, 1e300]
    rng = np.random.default_rng(0)
    d = np.concatenate([edges, rng.standard_normal(200) * 10.0 ** rng.integers(-8, 6, 200)])
    got = np.full(d.shape, np.nan, np.float16)
    f(d, got)
    np.testing.assert_array_equal(got.view(np.uint16), d.astype(np.float16).view(np.uint16))
    nan = np.full(3, np.nan, np.float16)
    f(np.array([np.nan, -np.nan, 1.0]), nan)
    assert np.isnan(nan[:2]).all() and nan[2] == 1.0


def test_a_program_entry_runs_its_kernels_in_order_and_stops_at_a_failure():
    import ctypes
    import llvmlite.binding as llvm
    from targets.llvm.compile import new_host_machine
    from targets.llvm.runtime import Kernel, program_entry

    def kernel(name: str, body: list, n_pointers: int, n_scalars: int = 0):
        params = [f"i8* %p{k}" for k in range(n_pointers)] + \
            [f"i64 %s{k}" for k in range(n_scalars)]
        ir = "\n".join([f"define i32 @{name}({', '.join(params)}) {{", *body, "}", ""])
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(ir), new_host_machine())
        engine.finalize_object()
        return Kernel(engine, engine.get_function_address(name), n_pointers, n_scalars)

    # out[i] = value, with i and value fixed (compiled into the entry), then a status
    put = kernel("put", ["  %d = bitcast i8* %p0 to double*",
                         "  %e = getelementptr double, double* %d, i64 %s0",
                         "  %v = sitofp i64 %s1 to double",
                         "  store double %v, double* %e", "  ret i32 0"], 1, 2)
    fail = kernel("fail", ["  ret i32 3"], 1)
    a, b = np.full(2, np.nan), np.full(2, np.nan)
    words = (ctypes.c_int64 * 2)(a.ctypes.data, b.ctypes.data)
    assert program_entry([(put, [0], (0, 5)), (put, [1], (1, 7))])(words) == 0
    np.testing.assert_array_equal(a, [5, np.nan])
    np.testing.assert_array_equal(b, [np.nan, 7])
    # the second kernel fails: the entry answers 2 and the third never runs
    entry = program_entry([(put, [0], (1, 1)), (fail, [1], ()), (put, [1], (0, 9))])
    assert entry(words) == 2
    np.testing.assert_array_equal(a, [5, 1])
    assert np.isnan(b[0])
    with pytest.raises(ValueError, match="kernel 0 takes 3 arguments"):
        program_entry([(put, [0], (1,))])
