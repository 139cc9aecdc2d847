"""A measuring process: ``python -m tensordsl.autotune.worker [--nice N]``.

Reads one JSON request per line on stdin — ``{"workload": key, "config": {...},
"repeat": n, "min_time": s}`` (``"build_only": true``: compile into the disk cache and
answer ``{"status": "built"}``) — builds that schedule, runs it on reproducible random
inputs, checks the output against the template's default schedule (computed once per
workload in this process), times it (``repeat`` runs at least, then until ``min_time``
or ``MAX_RUNS`` runs), and answers one JSON line on stdout:
``{"status": "ok", "seconds": median, "build_seconds": ...}`` or ``{"status": "error" |
"wrong", "error": text}``. A candidate that crashes the process or never answers is
caught by the parent (``measure.Runner``), which starts a fresh worker.

The process keeps the last ``KEPT`` kernels it built, and each workload's default and
fastest few: a candidate it compiled (``build_only``) and then measures, or a
configuration measured again in a confirming round, is timed without being lowered and
loaded a second time (about 70 ms a kernel, as long as timing a small one). A build
for another process (``"ship": true``) answers the compiled kernel itself
(``"artifact"``: the lowered function and the object, pickled); a measurement given it
(``"artifact"`` in the request) loads it instead of lowering again, if it was compiled
by the same toolchain for the same CPU.
"""
from __future__ import annotations

import base64
import json
import os
import pickle
import sys
import time
import traceback
from collections import OrderedDict

import numpy as np

KEPT = 128
# per workload, the fastest configurations it measured are kept past KEPT (with its
# default): the confirming rounds at the end of a job measure exactly these again
# (``tuner.CONFIRM_TOP``), long after a job's hundreds of candidates pushed them out
PINNED = 4
# a candidate is timed for min_time, or this many runs if sooner: a kernel of a few
# microseconds has a steady median long before 50 ms, and a whole model's small kernels
# (an optimizer's updates, a bias gradient) would otherwise take most of a job's time
MAX_RUNS = 2000


class Kernels:
    """The kernels this process built lately, by workload and configuration: the
    ``size`` used last, and beyond them each workload's default and ``pinned`` fastest
    (``timed``), up to ``2 * size`` kernels in all."""

    def __init__(self, size: int = KEPT, pinned: int = PINNED):
        self.size, self.pinned, self.built = size, pinned, OrderedDict()
        self.times: dict = {}       # workload -> {config: seconds measured}
        self.defaults: dict = {}    # workload -> its default configuration

    @staticmethod
    def _names(workload, config: dict) -> tuple:
        from .records import canonical
        return (workload.key, workload.scheduler, workload.source), canonical(config)

    def build(self, workload, config: dict, artifact: str | None = None):
        """``workload.build(config)``, from memory when it was built here lately, else
        from ``artifact`` (``ship``) when it suits this machine."""
        ident, name = self._names(workload, config)
        key = (ident, name)
        if key in self.built:
            self.built.move_to_end(key)
            return self.built[key]
        if ident not in self.defaults and hasattr(workload, "default_config"):
            self.defaults[ident] = self._names(workload, workload.default_config())[1]
        built = self.built[key] = unship(artifact) or workload.build(config)
        self._evict()
        return built

    def timed(self, workload, config: dict, seconds: float):
        """``config`` of ``workload`` ran in ``seconds`` (its fastest few are kept)."""
        ident, name = self._names(workload, config)
        self.times.setdefault(ident, {})[name] = seconds

    def _kept(self) -> set:
        kept = {(ident, name) for ident, name in self.defaults.items()}
        for ident, times in self.times.items():
            kept.update((ident, name) for name in sorted(times, key=times.get)[:self.pinned])
        return kept

    def _evict(self):
        if len(self.built) <= self.size:
            return
        kept = self._kept()
        for key in [k for k in self.built if k not in kept]:
            if len(self.built) <= self.size:
                return
            del self.built[key]
        while len(self.built) > 2 * self.size:    # (many workloads' kept ones)
            self.built.popitem(last=False)


def ship(workload, config: dict) -> str:
    """``config``'s kernel compiled for another process: the text of ``artifact``."""
    from targets.base import get_backend
    func, binary, target, shape, dtype = workload.compile(config)
    fingerprint = get_backend(target.kind).fingerprint(target)
    return base64.b64encode(pickle.dumps((fingerprint, func, binary, target, shape,
                                          dtype))).decode()


def unship(artifact: str | None):
    """(kernel, shape, dtype) of ``ship``'s text, or None when there is none, or it was
    compiled for another CPU or by another toolchain than this process's."""
    if not artifact:
        return None
    from targets.base import get_backend
    from tensordsl.build import load_func
    fingerprint, func, binary, target, shape, dtype = pickle.loads(base64.b64decode(artifact))
    if get_backend(target.kind).fingerprint(target) != fingerprint:
        return None
    return load_func(func, binary, target), shape, dtype


def _run(workload, config, repeat: int, min_time: float, references: dict,
         kernels: Kernels | None = None, artifact: str | None = None) -> dict:
    t0 = time.perf_counter()
    kernels = Kernels() if kernels is None else kernels
    f, shape, dtype = kernels.build(workload, config, artifact)
    build = time.perf_counter() - t0
    ins = workload.arrays(seed=0)
    outs = result_arrays(shape, dtype)
    f(*ins, *outs)
    refs = references.get(workload.key)
    if refs is None:
        if config:
            refs = result_arrays(shape, dtype)
            workload.build(None)[0](*ins, *refs)
        else:
            refs = [out.copy() for out in outs]
        references[workload.key] = refs
    for out, ref in zip(outs, refs):
        scale = max(1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0)
        if out.shape != ref.shape or not np.allclose(out, ref, rtol=1e-3,
                                                      atol=1e-3 * scale, equal_nan=True):
            bad = np.nanmax(np.abs(out - ref)) if out.size else 0.0
            return {"status": "wrong", "build_seconds": build,
                    "error": f"differs from the default schedule by {bad:.3g}"}
    call = direct_call(f, [*ins, *outs])
    for _ in range(2):
        call()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start < min_time
                                  and len(times) < MAX_RUNS):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    from tensordsl.runtime import packed
    packed.raise_pending()   # (what a packed function called by the kernel raised)
    flops = workload.flops(shape) if len(outs) == 1 else None
    med = float(np.median(times))
    kernels.timed(workload, config, med)
    return {"status": "ok", "seconds": med, "build_seconds": build,
            "gflops": flops / med / 1e9 if flops else None}


def _run_kernel(req: dict, references: dict) -> dict:
    """A kernel compiled by the parent (an AutoTVM template's configuration: the
    template lives in the parent's script, which this process cannot import), run on
    reproducible random inputs, its outputs checked against the reference kernel's
    (``req["reference"]``, run once per ``req["key"]``), then timed: ``repeat`` costs,
    each the mean of ``number`` runs."""
    try:
        arrays = _kernel_arrays(req["args"])
        outputs = [k for k, (_, _, out) in enumerate(req["args"]) if out]
        if req["key"] not in references:
            ref = _load_kernel(req["reference"])
            ref_arrays = _kernel_arrays(req["args"])
            ref(*ref_arrays)
            references[req["key"]] = [ref_arrays[k] for k in outputs]
        f = _load_kernel(req["kernel"])
        f(*arrays)
        for k, ref in zip(outputs, references[req["key"]]):
            out = arrays[k]
            scale = max(1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0)
            if not np.allclose(out, ref, rtol=1e-3, atol=1e-3 * scale, equal_nan=True):
                bad = np.nanmax(np.abs(out - ref)) if out.size else 0.0
                return {"status": "wrong",
                        "error": f"differs from the fallback configuration by {bad:.3g}"}
        call = direct_call(f, arrays)
        call()
        costs = []
        for _ in range(int(req.get("repeat", 1))):
            number = int(req.get("number", 1))
            t = time.perf_counter()
            for _ in range(number):
                call()
            costs.append((time.perf_counter() - t) / number)
        return {"status": "ok", "costs": costs}
    except Exception as err:
        return {"status": "error", "error": f"{type(err).__name__}: {err}".strip()[:2000]}


def _load_kernel(text: str):
    from tensordsl.build import load_func
    return load_func(*pickle.loads(base64.b64decode(text)))


def _kernel_arrays(args: list) -> list:
    """Inputs random (seeded: every kernel of a task sees the same), outputs NaN."""
    rng = np.random.default_rng(0)
    out = []
    for shape, dtype, is_output in args:
        kind = np.dtype(dtype).kind
        if is_output:
            out.append(np.full(shape, np.nan if kind == "f" else 0, dtype))
        elif kind == "f":
            out.append(rng.uniform(-1, 1, shape).astype(dtype))
        elif kind == "b":
            out.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            out.append(rng.integers(-8, 8, shape).astype(dtype))
    return out


def direct_call(f, arrays: list):
    """A call of kernel ``f`` on ``arrays`` (already checked by a first call) as a
    compiled program makes it: straight through its entry point where it has one
    (``Module.bound_call``), so that a kernel of a few microseconds is timed without the
    ~20 us of checking the arrays from Python, which would swamp the differences
    between its schedules."""
    bound = f.bound_call() if hasattr(f, "bound_call") else None
    if bound is None:
        return lambda: f(*arrays)
    cfunc, trailing = bound
    pointers = [a.ctypes.data for a in arrays]

    def call():
        if cfunc(*pointers, *trailing):
            raise MemoryError("a temporary buffer of the kernel could not be allocated")
    return call


def result_arrays(shape, dtype) -> list:
    """The kernel's results, NaN until it writes them: one of ``shape`` and ``dtype``, or
    one per entry where a kernel of several results gives tuples of each
    (``Workload.build``)."""
    if isinstance(dtype, tuple):
        return [np.full(sh, np.nan, dt) for sh, dt in zip(shape, dtype)]
    return [np.full(shape, np.nan, dtype)]


def _build(workload, config, kernels: Kernels, shipped: bool) -> dict:
    """Compile only (builds run in parallel, measurements one at a time). The object
    lands in the disk cache, and: ``shipped``, in the answer (``ship``), for the process
    that measures; else in ``kernels``, where this process finds it to measure it."""
    t0 = time.perf_counter()
    reply = {"status": "built"}
    if shipped and hasattr(workload, "compile"):   # (a sparse kernel is several: not sent)
        reply["artifact"] = ship(workload, config)
    else:
        kernels.build(workload, config)
    return {**reply, "build_seconds": time.perf_counter() - t0}


def main() -> int:
    from .workload import Workload
    if sys.argv[1:2] == ["--nice"]:   # (set here: a parent's preexec_fn is unsafe with threads)
        os.nice(int(sys.argv[2]))
    references: dict = {}
    kernels = Kernels()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            if req.get("kind") == "kernel":
                sys.stdout.write(json.dumps(_run_kernel(req, references)) + "\n")
                sys.stdout.flush()
                continue
            workload = Workload.from_key(req["workload"], req.get("scheduler", "template"),
                                         req.get("source"))
            if req.get("build_only"):
                reply = _build(workload, req.get("config") or {}, kernels,
                               bool(req.get("ship")))
            else:
                reply = _run(workload, req.get("config") or {}, int(req.get("repeat", 5)),
                             float(req.get("min_time", 0.05)), references, kernels,
                             req.get("artifact"))
        except Exception as err:  # a candidate's failure is a result, not the end
            reply = {"status": "error",
                     "error": f"{type(err).__name__}: {err}".strip()[:2000],
                     "trace": traceback.format_exc()[-2000:]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
