"""``tensordsl tune-layers FILE.py:NAME``: a model's layers, named in a Python file, as
the workloads ``td.ops`` files its records under.

``NAME`` is a list, or a function returning one, of the model's ``td.ops`` calls, each
``(operator, arrays, options)`` — the arrays may be unfilled (``np.empty``): only their
shapes and dtypes count — or of ``Workload``s. A function that returns None instead runs
the model's ``td.ops`` calls itself: each kernel it runs is noted
(``nn.tune_model.record_kernels``, forward and gradients alike).

    # mymodel.py
    def layers():
        x = np.empty((8, 64, 56, 56), np.float32)
        return [("conv2d_nchw", [x, np.empty((64, 64, 3, 3), np.float32)], {"padding": 1}),
                ("relu", [x], {})]

A file inside a package (``benchmarks/models.py``) is imported as the package's module,
so its relative imports work.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path



def load(spec: str):
    """The object ``NAME`` of ``path/to/file.py:NAME``."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        raise ValueError(f"layers: expected path/to/file.py:NAME, got {spec!r}")
    file = Path(path).resolve()
    if not file.is_file():
        raise ValueError(f"layers: no such file: {str(file)!r}")
    module = importlib.import_module(_module_name(file))
    if not hasattr(module, name):
        raise ValueError(f"layers: {file.name} has no {name!r}")
    return getattr(module, name)


def _module_name(file: Path) -> str:
    """``file``'s dotted name from the first folder above its packages, which goes on
    ``sys.path``."""
    parts, top = [file.stem], file.parent
    while (top / "__init__.py").is_file():
        parts.insert(0, top.name)
        top = top.parent
    if str(top) not in sys.path:
        sys.path.insert(0, str(top))
    return ".".join(parts)


def workloads(obj) -> list:
    """The distinct workloads of ``obj`` (see the module docstring), in order."""
    from ..nn.tune_model import record_kernels
    from .workload import Workload
    if callable(obj):
        with record_kernels() as ran:
            listed = obj()
        items = ran if listed is None else listed
    else:
        items = obj
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"layers: expected a list of td.ops calls (operator, arrays, "
                         f"options) or workloads, got {type(items).__name__}")
    found, keys = [], set()
    for k, item in enumerate(items):
        w = item if isinstance(item, Workload) else _call_workload(k, item)
        if w.key not in keys:
            keys.add(w.key)
            found.append(w)
    if not found:
        raise ValueError("layers: no td.ops call to tune (an empty list, or a function "
                         "that ran none)")
    return found


def _call_workload(k: int, item):
    """The workload ``td.ops.<operator>(*arrays, **options)`` looks its record up by."""
    from .. import ops
    if not (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str)
            and isinstance(item[2], dict)):
        raise ValueError(f"layers: item {k}: expected (operator, arrays, options), got "
                         f"{item!r:.80}")
    operator, arrays, options = item
    return ops.call_workload(operator, arrays, options, f"layers: item {k}")[0]
