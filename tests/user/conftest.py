"""The user's side: files written to a temporary directory, the command line run as a
user runs it (``python -m tensordsl.cli`` in a fresh process, from that directory)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def write(tmp_path):
    """``write("my_op.py", source)``: a user's file in the test's directory; its path."""
    def write_file(name: str, source: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path
    return write_file


@pytest.fixture
def tensordsl(tmp_path):
    """``tensordsl("tune", "my_op.py:f", ..., cache=dir)``: the CLI's exit code, standard
    output and standard error (``cache``: the cache directory it sees)."""
    def run(*argv, cache=None, timeout=600):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if cache is not None:
            env["TENSORDSL_CACHE_DIR"] = str(cache)
        out = subprocess.run([sys.executable, "-m", "tensordsl.cli", *map(str, argv)],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=timeout)
        return out.returncode, out.stdout, out.stderr
    return run
