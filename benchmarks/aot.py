"""The aot suite (issue 18): an exported kernel beside the JIT kernel it was exported from.

Per case, the kernel is built once and exported (``td.export``) to a temporary library;
then, each in its own fresh process, alternating: ``jit`` builds the same kernel (a cache
hit) and calls ``f(*arrays)``; ``ctypes`` loads the library with plain ctypes (no
tensordsl import) and calls the C entry ``tensordsl_<name>`` with the array pointers, as a
C program would; ``loaded`` calls it through ``td.load_module`` (its argument checks
included). Each reports its median after warm-up; ratio = exported (ctypes) time / JIT
time, same run (1.0: the same machine code, as it should be).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .harness import compare, table, update_readme, write_results

THREADS = 2
ROUNDS = 2
COLUMNS = ["case", "jit_ms", "ctypes_ms", "loaded_ms", "ratio", "same_result"]


# ---------------------------------------------------------------- the kernels
def matmul(size: int):
    """td.ops's matmul (the CPU template, packed panels in per-thread workspace)."""
    import tensordsl as td
    from tensordsl.autotune.workload import Workload
    a = np.empty((size, size), np.float32)
    w = Workload.from_arrays("matmul", [a, a], {})
    s, tensors = w.schedule(w.tuned_config("llvm"))
    return td.build(s, tensors, name="matmul")


def bias_tanh(rows: int, cols: int = 1024):
    """tanh(0.5 * (x + bias)): two stages fused by the auto-scheduler."""
    import tensordsl as td
    X = td.placeholder((rows, cols), name="x")
    bias = td.placeholder((cols,), name="bias")
    shifted = td.compute((rows, cols), lambda i, j: X[i, j] + bias[j], name="shifted")
    Y = td.compute((rows, cols), lambda i, j: td.tanh(0.5 * shifted[i, j]), name="y")
    return td.build([X, bias, Y], name="bias_tanh")


def row_norms(rows: int):
    """sqrt(sum_k x[i, k]^2) over a symbolic number of rows (timed at ``rows``)."""
    import tensordsl as td
    n = td.var("n")
    X = td.placeholder((n, 64), name="x")
    k = td.reduce_axis((0, 64), name="k")
    sq = td.compute((n,), lambda i: td.sum(X[i, k] * X[i, k], axis=k), name="sq")
    out = td.compute((n,), lambda i: td.sqrt(sq[i]), name="norms")
    s = td.create_schedule(out.op)
    outer, inner = s[out].split(out.op.axis[0], factor=64)
    s[out].parallel(outer)
    s[sq].compute_at(s[out], inner)
    return td.build(s, [X, out], name="row_norms")


CASES = {
    "matmul": (matmul, {"size": 512}, "matmul 512x512x512 (td.ops template)"),
    "bias_tanh": (bias_tanh, {"rows": 2048}, "tanh(0.5*(x + bias)) 2048x1024, fused"),
    "row_norms": (row_norms, {"rows": 200000}, "row norms n=200000 x 64 (n symbolic)"),
}


def arrays(f, params: dict) -> list:
    """Inputs (random, seeded) and a NaN output in the kernel's argument order; symbolic
    sizes take ``params["rows"]``."""
    rng = np.random.default_rng(0)
    out = []
    for p in f.params:
        shape = tuple(d if isinstance(d, int) else params["rows"] for d in p.dims)
        out.append(np.full(shape, np.nan, p.np_dtype) if p.is_output
                   else rng.standard_normal(shape).astype(p.np_dtype))
    return out


def sizes(f, args) -> list[int]:
    """The C entry's int64_t sizes: each symbolic size from the first array it shapes."""
    bound = {}
    for p, a in zip(f.params, args):
        for d, extent in zip(p.dims, a.shape):
            if d is not None and not isinstance(d, int):
                bound.setdefault(d, extent)
    return [bound[v] for v in f.scalars if v is not f.team_size_var]


# ---------------------------------------------------------------- the suite
def run(quick: bool = False, only: str | None = None) -> list[dict]:
    import tensordsl as td
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    rounds = 1 if quick else ROUNDS
    rows = []
    with tempfile.TemporaryDirectory(prefix="td-aot-bench-") as tmp:
        for name, (builder, params, label) in CASES.items():
            if only and only != name:
                continue
            library = os.path.join(tmp, f"lib{name}.so")
            f = builder(**params)
            td.export([f], library)
            _write_call_spec(f, params, library)
            runs = compare("aot", ["jit", "ctypes", "loaded"], rounds, kernel=name,
                           params=params, library=library, threads=THREADS)
            jit, exported = runs["jit"], runs["ctypes"]
            rows.append({"case": label, "jit_ms": jit["seconds"] * 1e3,
                         "ctypes_ms": exported["seconds"] * 1e3,
                         "loaded_ms": runs["loaded"]["seconds"] * 1e3,
                         "ratio": exported["seconds"] / jit["seconds"],
                         "same_result": jit["checksum"] == exported["checksum"]
                         == runs["loaded"]["checksum"]})
            print(rows[-1])
    path = write_results("aot", rows, {"threads": THREADS})
    text = (f"{THREADS} threads (OMP_NUM_THREADS). jit: `f(*arrays)` of `td.build`; ctypes: "
            "the exported library's C entry called through plain ctypes in a process that "
            "never imports tensordsl; loaded: the same through `td.load_module` (argument "
            "checks included). ratio = ctypes / jit, same run; same_result: the three "
            f"outputs are bit-identical. Best median of {rounds} alternating rounds, each "
            "system in its own process.\n\n" + table(rows, COLUMNS))
    if not only:
        update_readme("cpu-aot", text)
    print(text)
    print(f"written to {path}")
    return rows


def worker(system: str, p: dict) -> dict:
    """One system's timing in this (fresh) process: ``benchmarks/workers.py: aot_*``."""
    import hashlib

    from .harness import timeit
    os.environ["OMP_NUM_THREADS"] = str(p["threads"])
    builder, params, _ = CASES[p["kernel"]]
    if system == "ctypes":
        call, out = _ctypes_call(p)
    else:
        import tensordsl as td
        f = builder(**params) if system == "jit" else \
            next(iter(td.load_module(p["library"]).functions.values()))
        args = arrays(f, params)
        call, out = (lambda: f(*args)), args[-1]
    call()
    checksum = hashlib.sha1(out.tobytes()).hexdigest()
    return {"seconds": timeit(call, repeat=15, min_time=0.3), "checksum": checksum}


def _write_call_spec(f, params: dict, library: str):
    """Beside the library, what the ctypes process needs to call it without tensordsl:
    the symbol, each array's shape, dtype and role, the sizes."""
    import json
    args = arrays(f, params)
    spec = {"symbol": f"tensordsl_{f.entry_name}", "sizes": sizes(f, args),
            "arrays": [{"shape": list(a.shape), "dtype": a.dtype.name, "output": p.is_output}
                       for p, a in zip(f.params, args)]}
    with open(library + ".json", "w") as out:
        json.dump(spec, out)


def _ctypes_call(p: dict):
    """The C entry through ctypes alone, its arguments as ``_write_call_spec`` wrote them
    (the same seeded inputs as ``arrays``)."""
    import ctypes
    import json
    with open(p["library"] + ".json") as spec_file:
        spec = json.load(spec_file)
    rng = np.random.default_rng(0)
    args = []
    for a in spec["arrays"]:
        args.append(np.full(a["shape"], np.nan, a["dtype"]) if a["output"]
                    else rng.standard_normal(a["shape"]).astype(a["dtype"]))
    entry = getattr(ctypes.CDLL(p["library"]), spec["symbol"])
    entry.restype = ctypes.c_int32
    entry.argtypes = [ctypes.c_void_p] * len(args) + [ctypes.c_int64] * len(spec["sizes"])
    pointers = [a.ctypes.data for a in args]

    def call(arrays=args):   # the arrays live as long as the call that uses their memory
        if entry(*pointers, *spec["sizes"]) != 0:
            raise RuntimeError(f"{spec['symbol']} failed")
    return call, args[-1]
