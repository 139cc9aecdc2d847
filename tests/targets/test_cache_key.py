"""The compile cache never serves code compiled by an older version of a module the code
generator depends on: each test copies the source tree, changes one such module, and
builds in both trees against one cache directory."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CUDA_BUILD = """
import hashlib
import tensordsl as td
A = td.placeholder((256,), name="A")
B = td.compute((256,), lambda i: A[i], name="B")  # a copy: float4 when aligned
s = td.create_schedule(B.op)
bx, rest = s[B].split(B.op.axis[0], factor=64)
tx, v = s[B].split(rest, factor=4)
s[B].bind(bx, td.thread_axis("blockIdx.x"))
s[B].bind(tx, td.thread_axis("threadIdx.x"))
s[B].vectorize(v)
f = td.build(s, [A, B], target="cuda -arch=sm_80")
print("float4" in f.get_source(), hashlib.sha256(f.cubin).hexdigest())
"""

LLVM_FINGERPRINT = """
from targets.base import Target, get_backend
print(get_backend("llvm").fingerprint(Target.parse("llvm")))
"""


def _tree(tmp_path: Path, name: str, edit=None) -> Path:
    root = tmp_path / name
    for package in ("tensordsl", "targets", "kernels", "schedules"):
        shutil.copytree(REPO / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        edit(root)
    return root


def _run(root: Path, script: str, cache: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(root), TENSORDSL_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def _never_a_multiple(root: Path):
    # facts.py sits outside targets/cuda, but decides whether CUDA codegen emits float4
    path = root / "tensordsl" / "arith" / "facts.py"
    text = path.read_text()
    text = text.replace('    """Whether ``e`` is certainly a multiple of ``k``."""\n',
                        '    """Whether ``e`` is certainly a multiple of ``k``."""\n'
                        '    return False\n', 1)
    path.write_text(text)


def test_cuda_binary_follows_a_changed_module_the_code_generator_imports(tmp_path):
    cache = tmp_path / "cache"
    original = _run(_tree(tmp_path, "original"), CUDA_BUILD, cache).split()
    changed = _run(_tree(tmp_path, "changed", _never_a_multiple), CUDA_BUILD, cache).split()
    assert original[0] == "True" and changed[0] == "False"  # the source did change
    assert original[1] != changed[1]  # and the cubin was compiled anew, not reused


def _touch_dtype_module(root: Path):
    # tensordsl/ir/dtype.py is imported by the LLVM code generator, outside its folder
    path = root / "tensordsl" / "ir" / "dtype.py"
    path.write_text(path.read_text() + "\n\ndef _a_new_helper():\n    return 1\n")


def test_llvm_key_follows_a_changed_module_the_code_generator_imports(tmp_path):
    cache = tmp_path / "cache"
    original = _run(_tree(tmp_path, "original"), LLVM_FINGERPRINT, cache)
    same = _run(_tree(tmp_path, "same"), LLVM_FINGERPRINT, cache)
    changed = _run(_tree(tmp_path, "changed", _touch_dtype_module), LLVM_FINGERPRINT, cache)
    assert original == same
    assert original != changed
