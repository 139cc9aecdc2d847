"""CUDA C -> CUBIN (or PTX) with NVRTC, through cuda-python's ``cuda.bindings.nvrtc``.

The NVRTC shared library comes from the ``nvidia-cuda-nvrtc`` wheel (``cuda-python[all]``),
so compiling needs neither a GPU nor a CUDA install. CUBIN for the exact architecture is
what we load: NVRTC's PTX may be newer than what an installed driver or ``ptxas`` accepts.
"""
from __future__ import annotations

import functools
import re

from tensordsl.errors import BuildError

_ARCH = re.compile(r"^sm_(\d{2,3})[a-z]?$")


def check_arch(arch: str) -> str:
    if not isinstance(arch, str) or not _ARCH.match(arch):
        raise ValueError(f"arch: expected a real GPU architecture such as 'sm_80' or "
                         f"'sm_90', got {arch!r}")
    return arch


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:  # pragma: no cover - a packaging error, shown to the user
        raise BuildError("the CUDA backend needs cuda-python: pip install 'cuda-python[all]'") \
            from e
    return nvrtc


def _check(result, what: str, nvrtc, prog=None):
    err = result[0] if isinstance(result, tuple) else result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        log = program_log(prog, nvrtc) if prog is not None else ""
        raise BuildError(f"NVRTC {what} failed ({err.name}):\n{log}")


def program_log(prog, nvrtc) -> str:
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS or size <= 1:
        return ""
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.rstrip(b"\0").decode(errors="replace")


@functools.lru_cache(maxsize=None)
def version() -> str:
    try:
        nvrtc = _nvrtc()
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as e:  # noqa: BLE001 - the library may be missing entirely
        raise BuildError(f"NVRTC is not available ({e}); pip install 'cuda-python[all]'") \
            from None
    return f"{major}.{minor}"


def header_options() -> list[str]:
    """Where NVRTC finds the CUDA headers (cuda_fp16.h, mma.h): the set bundled with
    NVRTC >= 13.3, installed once into the cache, else a CUDA toolkit's include folder."""
    import os
    from pathlib import Path
    major, minor = map(int, version().split("."))
    if (major, minor) >= (13, 3):
        from targets import cache
        return [f"--use-bundled-headers={cache.cache_dir() / f'nvrtc-headers-{version()}'}"]
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_fp16.h").exists():
            return [f"--include-path={Path(root) / 'include'}"]
    raise BuildError(f"NVRTC {version()} has no bundled CUDA headers and no CUDA toolkit was "
                     "found (set CUDA_HOME); float16/bfloat16 and tensor-core kernels need "
                     "cuda_fp16.h and mma.h")


def compile_source(source: str, arch: str, output: str = "cubin",
                   name: str = "tensordsl.cu") -> bytes:
    """Compile ``source`` for ``arch`` (``sm_80``); ``output`` is ``"cubin"`` or ``"ptx"``."""
    check_arch(arch)
    version()
    nvrtc = _nvrtc()
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(err, "program creation", nvrtc)
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17",
                b"--fmad=true", b"-default-device"]
        if "#include <" in source:
            opts += [o.encode() for o in header_options()]
        _check(nvrtc.nvrtcCompileProgram(prog, len(opts), opts), "compilation", nvrtc, prog)
        if output == "cubin":
            err, size = nvrtc.nvrtcGetCUBINSize(prog)
            _check(err, "CUBIN size", nvrtc, prog)
            if size == 0:
                raise BuildError(f"NVRTC produced no CUBIN for {arch}")
            buf = b" " * size
            _check(nvrtc.nvrtcGetCUBIN(prog, buf), "CUBIN", nvrtc, prog)
            return bytes(buf)
        if output == "ptx":
            err, size = nvrtc.nvrtcGetPTXSize(prog)
            _check(err, "PTX size", nvrtc, prog)
            buf = b" " * size
            _check(nvrtc.nvrtcGetPTX(prog, buf), "PTX", nvrtc, prog)
            return bytes(buf).rstrip(b"\0")
        raise ValueError(f"output: expected 'cubin' or 'ptx', got {output!r}")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
