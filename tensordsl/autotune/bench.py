"""``tensordsl bench OP --shape ...``: our operator beside the library a user would call.

Each system runs in a fresh process (two runtimes' thread pools in one process slow each
other down), with ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` removed from its environment;
each reports the median of its timed calls after warm-up, and the ratio is taken between
numbers of the same run. A user's ``file.py:function`` is timed alone, built as
``td.build`` builds it (its best record, else its ``DEFAULT``).
"""
from __future__ import annotations

import json
import subprocess
import sys

from .measure import ROOT, reference_env

# what a user would otherwise call: (library, expression over a0, a1, ... and the attrs)
REFERENCES = {
    "matmul": ("numpy", "np.matmul(a0.T if attrs.get('transpose_a') else a0, "
                        "a1.T if attrs.get('transpose_b') else a1)"),
    "batch_matmul": ("numpy", "np.matmul(a0, a1)"),
    "dense": ("numpy", "a0 @ a1.T + (a2 if len(arrays) > 2 else 0)"),
    "add": ("numpy", "np.add(a0, a1)"), "subtract": ("numpy", "np.subtract(a0, a1)"),
    "multiply": ("numpy", "np.multiply(a0, a1)"), "divide": ("numpy", "np.divide(a0, a1)"),
    "maximum": ("numpy", "np.maximum(a0, a1)"), "minimum": ("numpy", "np.minimum(a0, a1)"),
    "relu": ("numpy", "np.maximum(a0, 0)"),
    "reduce_sum": ("numpy", "a0.sum(axis=attrs.get('axis'))"),
    "reduce_mean": ("numpy", "a0.mean(axis=attrs.get('axis'))"),
    "reduce_max": ("numpy", "a0.max(axis=attrs.get('axis'))"),
    "softmax": ("torch", "torch.softmax(t0, attrs.get('axis', -1))"),
    "log_softmax": ("torch", "torch.log_softmax(t0, attrs.get('axis', -1))"),
    "gelu": ("torch", "F.gelu(t0)"),
    "layer_norm": ("torch", "F.layer_norm(t0, t1.shape, t1, t2)"),
    "conv2d_nchw": ("torch", "F.conv2d(t0, t1, stride=attrs.get('stride', 1), "
                             "padding=attrs.get('padding', 0), "
                             "dilation=attrs.get('dilation', 1), groups=attrs.get('groups', 1))"),
    "max_pool2d": ("torch", "F.max_pool2d(t0, attrs['kernel_size'], attrs.get('stride'), "
                            "attrs.get('padding', 0))"),
    "avg_pool2d": ("torch", "F.avg_pool2d(t0, attrs['kernel_size'], attrs.get('stride'), "
                            "attrs.get('padding', 0))"),
}

_PRELUDE = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from tensordsl.autotune.workload import Workload
w = Workload.from_key({key!r}, "template", {source!r})
arrays = w.arrays(seed=0)
attrs = dict(w.attrs)
def timeit(fn):
    for _ in range(3):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < 15 or time.perf_counter() - start < 0.2:
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return float(np.median(times))
"""

_OURS = """
import tensordsl as td
values = [a[1] for a in w.args if a[0] == "value"]
call = lambda: td.ops.call(w.op, *arrays, **attrs)
print(json.dumps({{"seconds": timeit(call)}}))
"""

_OURS_USER = """
import tensordsl as td
from tensordsl.arith.simplify import const_int
s, tensors = w.schedule(w.tuned_config())
f = td.build(s, tensors)
out = np.empty([const_int(d) for d in tensors[-1].shape], tensors[-1].dtype)
print(json.dumps({{"seconds": timeit(lambda: f(*arrays, out))}}))
"""

_NUMPY = """
for k, a in enumerate(arrays):
    globals()[f"a{{k}}"] = a
print(json.dumps({{"seconds": timeit(lambda: {expr})}}))
"""

_TORCH = """
import torch
import torch.nn.functional as F
for k, a in enumerate(arrays):
    globals()[f"t{{k}}"] = torch.from_numpy(a)
with torch.no_grad():
    print(json.dumps({{"seconds": timeit(lambda: {expr})}}))
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=reference_env(), cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(workload, rounds: int = 2) -> dict:
    """{"ours": seconds, "<library>": seconds, "library": name} (best of ``rounds``
    alternating runs), or an "error" entry for a system that could not run."""
    lib, expr = REFERENCES.get(workload.op, (None, None))
    prelude = _PRELUDE.format(root=str(ROOT), key=workload.key, source=workload.source)
    systems = {"tensordsl": prelude + (_OURS_USER if workload.user else _OURS).format()}
    if lib == "numpy":
        systems["numpy"] = prelude + _NUMPY.format(expr=expr)
    elif lib == "torch":
        systems["torch"] = prelude + _TORCH.format(expr=expr)
    best: dict = {}
    for _ in range(rounds):
        for name, code in systems.items():
            r = _run(code)
            if "error" in r:
                best[name] = r
            elif name not in best or "error" in best[name] or \
                    r["seconds"] < best[name]["seconds"]:
                best[name] = r
    return best
