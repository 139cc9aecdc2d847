"""examples/aot: the exported library called from C and C++ programs built with the system
compilers, their outputs against numpy and, bit for bit, against the JIT kernels; and the
library's dynamic symbols (nothing from Python)."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import poisoned

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "aot"


def _example_module():
    spec = importlib.util.spec_from_file_location("aot_export_kernels",
                                                  EXAMPLES / "export_kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def input_values(count: int, seed: int) -> np.ndarray:
    """main.c's input_value, in float32 arithmetic as C does it."""
    k = ((np.arange(count, dtype=np.int64) * 37 + seed * 11) % 101).astype(np.float32)
    return k / np.float32(50) - np.float32(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    example = _example_module()
    out = tmp_path_factory.mktemp("aot")
    written = example.export(out)
    assert {p.name for p in written} == {"libaot_example.so", "libaot_example.a",
                                         "libaot_example.h"}
    return example, out


def _inputs(example):
    M, N, K, D, rows = example.M, example.N, example.K, example.D, 37
    return {
        "matmul": (input_values(M * K, 1).reshape(M, K), input_values(K * N, 2).reshape(K, N)),
        "bias_tanh": (input_values(M * N, 3).reshape(M, N), input_values(N, 4)),
        "row_norms": (input_values(rows * D, 5).reshape(rows, D),),
    }


def _numpy(name, args):
    if name == "matmul":
        return args[0].astype(np.float64) @ args[1]
    if name == "bias_tanh":
        return np.tanh(0.5 * (args[0].astype(np.float64) + args[1]))
    return np.sqrt((args[0].astype(np.float64) ** 2).sum(axis=1))


def _check_results(example, results: Path):
    """Each kernel's output file: equal to the JIT kernel's result on the same inputs, and
    close to numpy's (float64) result."""
    builders = {"matmul": example.build_matmul, "bias_tanh": example.build_bias_tanh,
                "row_norms": example.build_row_norms}
    for name, args in _inputs(example).items():
        expected = _numpy(name, args)
        got = np.fromfile(results / f"{name}.f32", np.float32).reshape(expected.shape)
        jit = poisoned(expected.shape)
        builders[name]()(*args, jit)
        np.testing.assert_array_equal(got, jit, err_msg=f"{name}: exported != JIT")
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5, err_msg=name)


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_c_program_against_the_shared_library(exported, tmp_path):
    example, out = exported
    binary = tmp_path / "aot_main"
    _run(["cc", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", out,
          EXAMPLES / "main.c", "-L", out, "-laot_example", f"-Wl,-rpath,{out}", "-o", binary])
    results = tmp_path / "results"
    results.mkdir()
    assert "ok:" in _run([binary, results])
    _check_results(example, results)


def test_c_program_against_the_static_archive(exported, tmp_path):
    example, out = exported
    binary = tmp_path / "aot_static"
    _run(["cc", "-O2", "-std=c11", "-I", out, EXAMPLES / "main.c",
          out / "libaot_example.a", "-lgomp", "-lm", "-o", binary])
    results = tmp_path / "results"
    results.mkdir()
    # one thread: the kernels' parallel loops must give the same results on any team
    _run([binary, results], env={"OMP_NUM_THREADS": "1"})
    _check_results(example, results)


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler (c++) here")
def test_cpp_program_with_raii_wrapper(exported, tmp_path):
    example, out = exported
    binary = tmp_path / "aot_main_cpp"
    _run(["c++", "-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", out,
          EXAMPLES / "main.cpp", "-L", out, "-laot_example", f"-Wl,-rpath,{out}", "-o", binary])
    results = tmp_path / "results"
    results.mkdir()
    assert "ok (C++)" in _run([binary, results])
    _check_results(example, results)


def test_library_references_no_python_symbol(exported):
    _, out = exported
    symbols = _run(["nm", "-D", out / "libaot_example.so"]).split("\n")
    undefined = {line.split()[-1].split("@")[0] for line in symbols
                 if line.split()[:1] == ["U"] or line.split()[-2:-1] == ["U"]}
    assert undefined, "nm -D listed no undefined symbols: the parsing is wrong"
    assert not [s for s in undefined if s.startswith(("Py", "_Py", "tensordsl"))], undefined
    defined = {line.split()[-1] for line in symbols if line.split()[-2:-1] in (["T"], ["V"])}
    assert defined == {"tensordsl_matmul", "tensordsl_bias_tanh", "tensordsl_row_norms",
                       "tensordsl_module_info"}
    # what the library needs, from the system only: libc, libgomp (libm is inlined here)
    needed = _run(["readelf", "-d", out / "libaot_example.so"])
    assert "libgomp" in needed and "python" not in needed.lower()
