"""td.export / f.export_library / td.load_module: results equal to the JIT's, the same
argument checks, the C entries' own checks (sizes, indices read from data), the header,
and what export refuses."""
from __future__ import annotations

import ctypes
import subprocess
import threading

import numpy as np
import pytest

import tensordsl as td
from tensordsl import cli
from tensordsl.autotune.workload import Workload
from tests.helpers import poisoned


def _matmul(m=256, k=320, n=192):
    """td.ops's matmul: its template packs panels into per-thread workspace."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    w = Workload.from_arrays("matmul", [a, b], {})
    s, tensors = w.schedule(w.tuned_config("llvm"))
    return td.build(s, tensors, name="matmul"), a, b


def _sum_of_squares():
    n = td.var("n")
    A = td.placeholder((n, 64), name="A")
    k = td.reduce_axis((0, 64), name="k")
    B = td.compute((n,), lambda i: td.sum(A[i, k] * A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    outer, _ = s[B].split(B.op.axis[0], factor=8)
    s[B].parallel(outer)
    return td.build(s, [A, B])        # named "main", as td.build names by default


def _gather_and_shift():
    n, m = td.var("n"), td.var("m")
    A = td.placeholder((n,), name="A")
    idx = td.placeholder((m,), dtype="int32", name="idx")
    B = td.compute((m,), lambda i: A[idx[i]] * 2.0, name="B")
    gather = td.build(td.create_schedule(B.op), [A, idx, B], name="gather")
    C = td.compute((m,), lambda i: A[i + 2], name="C")
    shift = td.build(td.create_schedule(C.op), [A, C], name="shift")
    return gather, shift


def test_export_library_and_load_module_match_the_jit(tmp_path):
    f = _sum_of_squares()
    written = f.export_library(tmp_path / "libsumsq.so")
    assert [p.name for p in written] == ["libsumsq.so", "libsumsq.h"]
    lib = td.load_module(tmp_path / "libsumsq.so")
    a = np.random.default_rng(1).standard_normal((101, 64)).astype(np.float32)
    got, jit = poisoned((101,)), poisoned((101,))
    lib(a, got)                       # one kernel: the library is callable
    f(a, jit)
    np.testing.assert_array_equal(got, jit)
    np.testing.assert_allclose(got, (a.astype(np.float64) ** 2).sum(1), rtol=1e-5)
    assert "int32_t tensordsl_main(const float* A, float* B, int64_t n);" in \
        (tmp_path / "libsumsq.h").read_text()


def _message(fn, *args):
    with pytest.raises((TypeError, ValueError)) as err:
        fn(*args)
    return type(err.value), str(err.value)


def test_loaded_functions_check_arguments_as_td_build_does(tmp_path):
    f = _sum_of_squares()
    f.export_library(tmp_path / "lib.so")
    lib = td.load_module(tmp_path / "lib.so")["main"]
    a = np.zeros((10, 64), np.float32)
    cases = [
        (a, np.zeros(9, np.float32)),                    # n bound by A, B disagrees
        (a.astype(np.float64), np.zeros(10, np.float32)),  # dtype
        (a[:, ::2], np.zeros(10, np.float32)),           # shape, then not contiguous
        (a, np.zeros(10, np.float32)[None]),             # ndim
        (a,),                                            # count
        (a, a[0, :10]),                                  # output overlaps an input
    ]
    for args in cases:
        assert _message(lib, *args) == _message(f, *args)


def test_workspace_per_thread_and_concurrent_calls(tmp_path):
    f, a, b = _matmul()
    assert f.workspace_bytes and f.team_size_var is not None   # what this test is about
    td.export([f], tmp_path / "libmm.so")
    lib = td.load_module(tmp_path / "libmm.so")
    jit = poisoned((a.shape[0], b.shape[1]))
    f(a, b, jit)
    outs = [poisoned(jit.shape) for _ in range(4)]
    threads = [threading.Thread(target=lib.matmul, args=(a, b, out)) for out in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outs:
        np.testing.assert_array_equal(out, jit)
    np.testing.assert_allclose(jit, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_indices_read_from_data_and_sizes_are_checked(tmp_path):
    gather, shift = _gather_and_shift()
    td.export({"gather": gather, "shift": shift}, tmp_path / "libg.so")
    lib = td.load_module(tmp_path / "libg.so")
    a = np.arange(10, dtype=np.float32)
    idx = np.array([1, 5, 9], np.int32)
    out = poisoned((3,))
    lib.gather(a, idx, out)
    np.testing.assert_array_equal(out, 2 * a[idx])
    idx[1] = 12
    assert _message(lib.gather, a, idx, out) == _message(gather, a, idx, out)
    assert "at index 12" in _message(lib.gather, a, idx, out)[1]
    # C callers: the sizes are checked before the kernel runs
    entry = ctypes.CDLL(str(tmp_path / "libg.so")).tensordsl_shift
    entry.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2
    c = poisoned((9,))
    assert entry(a.ctypes.data, c.ctypes.data, 10, 9) == 3      # reads A[10]
    assert np.isnan(c).all()
    assert entry(a.ctypes.data, c.ctypes.data, -1, 0) == 3
    assert entry(a.ctypes.data, c.ctypes.data, 10, 8) == 0
    np.testing.assert_array_equal(c[:8], a[2:])
    assert _message(lib.shift, a, c) == _message(shift, a, c)


def test_object_and_archive_outputs_link_into_a_c_program(tmp_path):
    f = _sum_of_squares()
    td.export({"sumsq": f}, tmp_path / "libs.o")
    td.export({"sumsq": f}, tmp_path / "libs.a", header=False)
    (tmp_path / "main.c").write_text(
        '#include "libs.h"\n#include <stdio.h>\n'
        "int main(void) {\n"
        "    float a[3 * 64], b[3] = {-1, -1, -1};\n"
        "    for (int i = 0; i < 3 * 64; i++) a[i] = (float)(i / 64 + 1);\n"
        "    if (tensordsl_sumsq(a, b, 3) != TD_STATUS_OK) return 1;\n"
        '    printf("%g %g %g\\n", b[0], b[1], b[2]);\n'
        "    return 0;\n}\n")
    for lib in ("libs.o", "libs.a"):
        binary = tmp_path / f"prog_{lib}"
        subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-I", str(tmp_path),
                        str(tmp_path / "main.c"), str(tmp_path / lib), "-lgomp", "-o",
                        str(binary)], check=True)
        out = subprocess.run([str(binary)], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["64", "256", "576"]


def test_headers_of_two_libraries_compile_together_as_c_and_cpp(tmp_path):
    gather, shift = _gather_and_shift()
    td.export([gather], tmp_path / "liba.so")
    td.export([shift], tmp_path / "libb.so")
    (tmp_path / "both.c").write_text('#include "liba.h"\n#include "libb.h"\n'
                                     "int main(void) { return 0; }\n")
    for compiler, std in (("cc", "-std=c11"), ("c++", "-std=c++17")):
        subprocess.run([compiler, std, "-Wall", "-Wextra", "-Werror", "-x",
                        "c" if compiler == "cc" else "c++", "-fsyntax-only",
                        str(tmp_path / "both.c")], check=True, cwd=tmp_path)
    header = (tmp_path / "liba.h").read_text()
    assert "void tensordsl_gather_index_error(int64_t* code, int64_t* index);" in header
    assert "OMP_NUM_THREADS" in header and "row-major" in header


def test_what_export_refuses(tmp_path):
    f = _sum_of_squares()
    with pytest.raises(ValueError, match="must end in .so, .a or .o"):
        td.export([f], tmp_path / "lib.dll")
    with pytest.raises(ValueError, match="two kernels are named 'main'"):
        td.export([f, _sum_of_squares()], tmp_path / "lib.so")
    with pytest.raises(ValueError, match="C identifier"):
        td.export({"not-a-name": f}, tmp_path / "lib.so")
    with pytest.raises(TypeError, match="expected a function td.build returned"):
        td.export({"k": lambda: 0}, tmp_path / "lib.so")

    td.register_func("aot_test_double", lambda x, y: np.multiply(x, 2, out=y),
                     override=True)
    A = td.placeholder((8,), name="A")
    B = td.extern((8,), [A], lambda ins, outs: td.call_packed("aot_test_double", ins[0],
                                                              outs[0]), name="B")
    packed = td.build(td.create_schedule(B.op), [A, B], name="packed")
    with pytest.raises(td.BuildError, match="calls a Python function"):
        packed.export_library(tmp_path / "libp.so")
    with pytest.raises(ValueError, match="not written by td.export"):
        td.load_module(_libm_path())


def _libm_path() -> str:
    import ctypes.util
    import os
    name = ctypes.util.find_library("m")
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib"):
        if name and os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    pytest.fail("libm not found")


def test_cli_export_operator_and_user_file(tmp_path, capsys):
    assert cli.main(["export", "matmul", "--shape", "40,24,16", "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / f"libmatmul.{k}")
                                               for k in ("so", "a", "h")]
    lib = td.load_module(tmp_path / "libmatmul.so")
    a = np.ones((40, 16), np.float32)
    b = np.full((16, 24), 2.0, np.float32)
    c = poisoned((40, 24))
    lib.matmul(a, b, c)
    np.testing.assert_array_equal(c, np.full((40, 24), 32.0, np.float32))

    user = tmp_path / "mine.py"
    user.write_text("import tensordsl as td\n\n"
                    "def scaled(n):\n"
                    "    A = td.placeholder((n,), name='A')\n"
                    "    return [A, td.compute((n,), lambda i: A[i] * 3.0, name='B')]\n")
    assert cli.main(["export", f"{user}:scaled", "--shape", "12", "-o",
                     str(tmp_path / "u")]) == 0
    capsys.readouterr()
    x = np.arange(12, dtype=np.float32)
    y = poisoned((12,))
    td.load_module(tmp_path / "u" / "libscaled.so").scaled(x, y)
    np.testing.assert_array_equal(y, 3 * x)
    assert cli.main(["export", "matmul", "--shape", "4,4,4", "-o", str(tmp_path),
                     "--name", "9lives"]) == 2
    assert "--name: expected a C identifier" in capsys.readouterr().err


def test_kernels_with_one_build_name_exported_under_two_names(tmp_path):
    def scale(c):
        A = td.placeholder((16,), name="A")
        B = td.compute((16,), lambda i: A[i] * c, name="B")
        return td.build(td.create_schedule(B.op), [A, B])     # both named "main"

    td.export({"twice": scale(2.0), "thrice": scale(3.0)}, tmp_path / "libs.so")
    lib = td.load_module(tmp_path / "libs.so")
    a = np.arange(16, dtype=np.float32)
    for name, factor in (("twice", 2), ("thrice", 3)):
        out = poisoned((16,))
        lib[name](a, out)
        np.testing.assert_array_equal(out, factor * a)
    with pytest.raises(TypeError, match="holds 2 kernels"):
        lib(a, poisoned((16,)))
    with pytest.raises(KeyError, match="no kernel 'main'"):
        lib["main"]


def test_dtypes_and_libm_calls(tmp_path):
    """float16 and bool in their C types, float64 math through libm (exp, erf): the same
    bytes as the JIT kernels."""
    n = td.var("n")
    A = td.placeholder((n,), dtype="float16", name="A")
    D = td.placeholder((n,), dtype="float64", name="D")
    half = td.compute((n,), lambda i: (A[i].astype("float64") * D[i]).astype("float16"),
                      name="H")
    positive = td.compute((n,), lambda i: A[i] > td.const(0, "float16"), name="P")
    math = td.compute((n,), lambda i: td.exp(D[i]) + td.erf(D[i]), name="M")
    funcs = {}
    for name, out, ins in (("half", half, [A, D]), ("positive", positive, [A]),
                           ("math", math, [D])):
        s = td.create_schedule(out.op)
        _, inner = s[out].split(out.op.axis[0], factor=8)
        s[out].vectorize(inner)
        funcs[name] = td.build(s, ins + [out], name=name)
    td.export(funcs, tmp_path / "libdt.so")
    header = (tmp_path / "libdt.h").read_text()
    assert "int32_t tensordsl_half(const uint16_t* A, const double* D, uint16_t* H, " \
           "int64_t n);" in header
    assert "int32_t tensordsl_positive(const uint16_t* A, uint8_t* P, int64_t n);" in header
    lib = td.load_module(tmp_path / "libdt.so")
    a = (np.arange(37) - 18).astype(np.float16)
    d = np.linspace(-2, 2, 37)
    for name, args, dtype in (("half", [a, d], np.float16), ("positive", [a], np.bool_),
                              ("math", [d], np.float64)):
        got, jit = poisoned((37,), dtype), poisoned((37,), dtype)
        lib[name](*args, got)
        funcs[name](*args, jit)
        np.testing.assert_array_equal(got.view(np.uint8), jit.view(np.uint8), err_msg=name)
    erf = np.vectorize(__import__("math").erf)
    np.testing.assert_allclose(got, np.exp(d) + erf(d), rtol=1e-14)
