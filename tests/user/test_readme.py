"""The README is true: each ```python block runs as written (in a fresh interpreter, in
a temporary directory, with this checkout first on the path) and a ``` block that follows
a "prints" line is exactly what the code before it prints.

A block may say ``# needs a CUDA GPU from here on``: without a GPU, the lines before it
run, and the rest is a separate test skipped with that reason.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GPU_MARK = "# needs a CUDA GPU from here on"


def readme_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, expected output or None) of each ```python block."""
    lines = text.splitlines()
    blocks, k = [], 0
    while k < len(lines):
        if lines[k].strip() != "```python":
            k += 1
            continue
        start = k + 1
        end = lines.index("```", start)
        code = "\n".join(lines[start:end]) + "\n"
        expected, k = None, end + 1
        while k < len(lines) and not lines[k].strip():
            k += 1
        if k < len(lines) and lines[k].strip() == "prints":
            k += 1
            while not lines[k].strip():
                k += 1
            assert lines[k].startswith("```"), f"README line {k + 1}: a block after 'prints'"
            out_end = lines.index("```", k + 1)
            expected = "\n".join(lines[k + 1:out_end]) + "\n"
            k = out_end + 1
        blocks.append((start, code, expected))
    return blocks


def _cases():
    for line, code, expected in readme_blocks(README.read_text()):
        if GPU_MARK in code:
            head = code[:code.index(GPU_MARK)]
            yield pytest.param(line, head, expected, False, id=f"line{line}")
            yield pytest.param(line, code, None, True, id=f"line{line}-gpu")
        else:
            yield pytest.param(line, code, expected, False, id=f"line{line}")


def run_snippet(code: str, tmp_path: Path) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault("TENSORDSL_CACHE_DIR", str(tmp_path / "cache"))
    env["PAGER"] = "cat"      # help() prints instead of paging
    script = tmp_path / "snippet.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the snippet failed:\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.parametrize("line, code, expected, needs_gpu", list(_cases()))
def test_readme_snippet_runs_and_prints_what_it_says(line, code, expected, needs_gpu,
                                                     tmp_path):
    if needs_gpu:
        import tensordsl as td
        if not td.nd.is_cuda_available():
            pytest.skip(f"README line {line}: the lines after '{GPU_MARK}' need a CUDA GPU")
    out = run_snippet(code, tmp_path)
    if expected is not None:
        assert out == expected, (f"README line {line}: the block after 'prints' differs "
                                 f"from what the code prints now:\n{out}")


def test_blocks_are_found():
    blocks = readme_blocks(README.read_text())
    assert len(blocks) >= 3
    assert any(expected for _, _, expected in blocks)
    assert re.match(r"```shell\n", README.read_text())   # the set-up commands come first
