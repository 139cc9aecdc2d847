"""The system's C compiler and binutils, as an export uses them.

``cc`` (``$CC`` if set) compiles the generated C and links the shared library; ``ld -r``
joins objects into one relocatable object; ``ar`` makes a static archive. Each failure is
a ``BuildError`` carrying the command and its output.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from ..errors import BuildError


def c_compiler() -> list[str]:
    cc = shlex.split(os.environ.get("CC", "cc"))
    if not shutil.which(cc[0]):
        raise BuildError(f"export needs a C compiler: {cc[0]!r} was not found (install gcc, "
                         "or set CC)")
    return cc


def run(cmd: list[str], what: str) -> None:
    if not shutil.which(cmd[0]):
        raise BuildError(f"export: {what} needs {cmd[0]!r}, which was not found "
                         "(install binutils)")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"export: {what} failed ({shlex.join(cmd)}):\n"
                         f"{proc.stdout}{proc.stderr}")


def compile_c(source_path: str, object_path: str, include_dirs=()) -> None:
    run(c_compiler() + ["-c", "-O2", "-std=c11", "-fPIC", "-fvisibility=hidden",
                        "-Wall", "-Wpointer-arith", "-Werror=implicit-function-declaration",
                        *[f"-I{d}" for d in include_dirs], "-o", object_path, source_path],
        "compiling the C entries")


def join_objects(objects: list[str], out: str) -> None:
    """One relocatable object of ``objects`` (``ld -r``)."""
    run(["ld", "-r", "-o", out, *objects], "joining the objects")


def link_shared(obj: str, out: str, libraries: list[str], library_dirs=()) -> None:
    """A shared library of ``obj``; every symbol it uses must resolve from ``libraries``
    (``--no-undefined``): nothing may come from the process that loads it."""
    run(c_compiler() + ["-shared", "-o", out, obj, "-Wl,--no-undefined",
                        *[f"-L{d}" for d in library_dirs],
                        *[f"-l{lib}" for lib in libraries]],
        "linking the shared library")


def archive(obj: str, out: str) -> None:
    if os.path.exists(out):
        os.remove(out)       # ar adds to an existing archive
    run(["ar", "rcs", out, obj], "making the static archive")
