"""``tensordsl tune-layers FILE.py:NAME``: a model's layers, named in a Python file, as
the workloads ``td.ops`` files its records under.

``NAME`` is a list, or a function returning one, of the model's ``td.ops`` calls, each
``(operator, arrays, options)`` — the arrays may be unfilled (``np.empty``): only their
shapes and dtypes count — or of ``Workload``s. A function that returns None instead runs
the model's ``td.ops`` calls itself: each kernel it runs is noted
(``autotune.collect``, forward and gradients alike).

    # mymodel.py
    def layers():
        x = np.empty((8, 64, 56, 56), np.float32)
        return [("conv2d_nchw", [x, np.empty((64, 64, 3, 3), np.float32)], {"padding": 1}),
                ("relu", [x], {})]

A file inside a package (``benchmarks/models.py``) is imported as the package's module,
so its relative imports work. A call listed twice is one workload of weight 2 (the task
scheduler's time share counts it twice).

A workload-list file (``kernels.json``: ``save(path, workloads)`` writes one, for
example of what ``td.autotune.collect()`` noted) is the other form:
``[{"key": ..., "source": ..., "weight": n}, ...]``.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def load(spec: str):
    """The object ``NAME`` of ``path/to/file.py:NAME``, or the workloads of a
    workload-list file ``path/to/kernels.json``."""
    if spec.endswith(".json"):
        return _load_list(spec)
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        raise ValueError(f"layers: expected path/to/file.py:NAME or a workload list "
                         f"path/to/file.json, got {spec!r}")
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


def save(path, workloads: list, weights: list | None = None):
    """Write a workload-list file of ``workloads`` (each of weight 1 unless given)."""
    weights = weights or [1] * len(workloads)
    items = [{"key": w.key, "scheduler": w.scheduler, "source": w.source, "weight": n}
             for w, n in zip(workloads, weights)]
    Path(path).write_text(json.dumps(items, indent=1) + "\n")


def _load_list(spec: str) -> list:
    """(workload, weight) pairs of a workload-list file."""
    from .workload import Workload
    file = Path(spec)
    if not file.is_file():
        raise ValueError(f"layers: no such file: {str(file.resolve())!r}")
    try:
        items = json.loads(file.read_text())
        return [(Workload.from_key(d["key"], d.get("scheduler", "template"), d.get("source")),
                 int(d.get("weight", 1))) for d in items]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"layers: {file.name}: expected a list of {{\"key\": workload key, "
                         f"\"weight\": n}} (layers.save writes one), got an error: "
                         f"{err}") from None


def workloads(obj) -> list:
    """The distinct workloads of ``obj`` (see the module docstring), in order."""
    return [w for w, _ in weighted(obj)]


def weighted(obj) -> list[tuple[object, int]]:
    """(workload, how often it occurs) of ``obj``'s distinct workloads, in order."""
    from .collect import collect
    from .workload import Workload
    if callable(obj):
        with collect() as ran:
            listed = obj()
        items = ran if listed is None else listed
    else:
        items = obj
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"layers: expected a list of td.ops calls (operator, arrays, "
                         f"options) or workloads, got {type(items).__name__}")
    found: dict = {}
    for k, item in enumerate(items):
        w, n = item if _is_weighted(item) else (item, 1)
        w = w if isinstance(w, Workload) else _call_workload(k, w)
        w, count = found.get(w.key, (w, 0))
        found[w.key] = (w, count + n)
    if not found:
        raise ValueError("layers: no td.ops call to tune (an empty list, or a function "
                         "that ran none)")
    return list(found.values())


def _is_weighted(item) -> bool:
    """A (workload, weight) pair of a workload-list file."""
    from .workload import Workload
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Workload)


def _call_workload(k: int, item):
    """The workload ``td.ops.<operator>(*arrays, **options)`` looks its record up by."""
    from .. import ops
    if not (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str)
            and isinstance(item[2], dict)):
        raise ValueError(f"layers: item {k}: expected (operator, arrays, options), got "
                         f"{item!r:.80}")
    operator, arrays, options = item
    return ops.call_workload(operator, arrays, options, f"layers: item {k}")[0]
