"""The CPU backend: vector instructions, a real thread runtime, the compile cache."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tensordsl as td
from targets import cache


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
from tests.targets.test_llvm import elementwise
import tensordsl as td
f = td.build(*elementwise(1 << 20, parallel=True))
before = len(os.listdir("/proc/self/task"))
a = np.random.rand(1 << 20).astype("float32"); b = np.zeros_like(a)
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
    a = np.random.rand(1000).astype("float32")
    b = np.zeros_like(a)
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
    a = np.random.rand(999).astype("float32")
    b = np.zeros_like(a)
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


def test_cache_key_changes_with_the_code_generator(monkeypatch):
    from targets.base import Target, get_backend
    from targets.llvm import _codegen_version
    backend = get_backend("llvm")
    before = backend.fingerprint(Target.parse("llvm"))
    monkeypatch.setattr("targets.llvm._codegen_version", lambda: "another-codegen")
    assert backend.fingerprint(Target.parse("llvm")) != before
    assert len(_codegen_version()) == 16


@pytest.mark.parametrize("lanes", [1, 8, 16, 64])
@pytest.mark.parametrize("fn", ["exp", "tanh"])
def test_inline_exp_and_tanh_match_numpy_everywhere(fn, lanes):
    # the vector forms (vscalefps, a rational tanh with a Newton-refined reciprocal on
    # AVX-512) against float64 numpy, special values included
    import numpy as np
    x = np.concatenate([np.linspace(-120, 100, 4086), np.linspace(-1e-3, 1e-3, 64),
                        [np.nan, np.inf, -np.inf, 0.0, 88.7, -87.0, 7.95, -7.95, 1e-30,
                         -1e-30]]).astype("float32")
    X = td.placeholder((x.size,), name="X")
    Y = td.compute((x.size,), lambda i: getattr(td, fn)(X[i]), name="Y")
    s = td.create_schedule(Y.op)
    if lanes > 1:
        s[Y].vectorize(s[Y].split(Y.op.axis[0], factor=lanes)[1])
    y = np.empty_like(x)
    td.build(s, [X, Y])(x, y)
    with np.errstate(all="ignore"):
        ref = getattr(np, fn)(x.astype("float64"))
    normal = np.isfinite(ref) & (np.abs(ref) > 1e-37) & (np.abs(ref) < 3e38)
    assert np.max(np.abs(y[normal] - ref[normal]) / np.abs(ref[normal])) < 5e-7
    overflow = ~normal & (np.abs(ref) >= 3.5e38)
    np.testing.assert_array_equal(y[overflow], np.sign(ref[overflow]) * np.float32(np.inf))
    assert np.isnan(y[np.isnan(x)]).all()
    if fn == "tanh":
        assert y[x == np.inf][0] == 1.0 and y[x == -np.inf][0] == -1.0
    else:
        assert y[x == -np.inf][0] == 0.0
