"""Ahead-of-time export: built functions as a C library and header (``td.export``,
``f.export_library``), and back into Python (``td.load_module``).

Files: ``abi.py`` (the C interface and the header), ``c_expr.py`` (size expressions in
C), ``cpu_entry.py`` (the C entry around each CPU kernel), ``cuda_launcher.py`` (the
CUBIN and a driver-API launcher for GPU kernels), ``toolchain.py`` (cc, ld, ar),
``library.py`` (writing a library), ``load.py`` (reading one back).
"""
from .library import export
from .load import load_module

__all__ = ["export", "load_module"]
