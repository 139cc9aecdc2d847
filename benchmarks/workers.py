"""What each benchmark process runs: ``python -m benchmarks.workers CASE SYSTEM PARAMS``.
Prints one JSON line with the median seconds (and anything else worth keeping)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

from .harness import timeit


def matmul_numpy(p):
    M, N, K = p["M"], p["N"], p["K"]
    a = np.random.rand(M, K).astype("float32")
    b = np.random.rand(K, N).astype("float32")
    c = np.empty((M, N), "float32")
    return {"seconds": timeit(lambda: np.matmul(a, b, out=c))}


def matmul_tensordsl(p):
    import tensordsl as td
    from schedules.examples import tutorial_matmul
    M, N, K = p["M"], p["N"], p["K"]
    f = td.build(*tutorial_matmul(M, N, K))
    a = np.random.rand(M, K).astype("float32")
    b = np.random.rand(K, N).astype("float32")
    c = np.empty((M, N), "float32")
    f(a, b, c)
    err = float(np.abs(c - a @ b).max())
    return {"seconds": timeit(lambda: f(a, b, c)), "max_error": err}


def build_tensordsl(p):
    """Median wall time of td.build (lower + optimize + JIT), never hitting the cache."""
    os.environ["TENSORDSL_CACHE_DIR"] = tempfile.mkdtemp(prefix="td-bench-")
    import tensordsl as td
    from targets import cache
    from schedules.examples import tutorial_matmul
    td.build(*tutorial_matmul(64, 64, 64))  # load LLVM and libgomp once, as any session would
    times = []
    for k in range(p.get("repeat", 9)):
        os.environ["TENSORDSL_CACHE_DIR"] = tempfile.mkdtemp(prefix="td-bench-")
        cache.clear_memory()
        sched = tutorial_matmul(p["M"], p["N"], p["K"])
        t = time.perf_counter()
        td.build(*sched)
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times))}


def fused_numpy(p):
    x = np.random.rand(p["n"]).astype("float32") - 0.5
    return {"seconds": timeit(lambda: np.maximum(1.5 * x + 0.5, 0), repeat=9)}


def fused_tensordsl(p):
    import tensordsl as td
    from schedules.examples import fused_relu_affine
    f = td.build(*fused_relu_affine(p["n"]))
    x = np.random.rand(p["n"]).astype("float32") - 0.5
    y = np.empty_like(x)
    f(x, y)
    assert np.abs(y - np.maximum(1.5 * x + 0.5, 0)).max() < 1e-6  # FMA rounding only
    return {"seconds": timeit(lambda: f(x, y), repeat=9)}


def triad_tensordsl(p):
    import tensordsl as td
    from schedules.examples import triad
    f = td.build(*triad(p["n"]))
    b, c = np.random.rand(p["n"]).astype("float32"), np.random.rand(p["n"]).astype("float32")
    a = np.empty_like(b)
    sec = timeit(lambda: f(b, c, a), repeat=9)
    return {"seconds": sec, "gbytes_per_s": 3 * 4 * p["n"] / sec / 1e9}


def _op(system_fn, p):
    fn = system_fn(p["op"], p["params"], **p.get("options", {}))
    return {"seconds": timeit(fn, repeat=p.get("repeat", 15), min_time=0.2)}


def op_tensordsl(p):
    from . import dense_ops
    return _op(dense_ops.tensordsl_fn, p)


def op_numpy(p):
    from . import dense_ops
    return _op(dense_ops.numpy_fn, p)


def op_torch(p):
    from . import dense_ops
    return _op(dense_ops.torch_fn, p)


def _threads(p):
    """The thread count of the autodiff suite, for every runtime in this process."""
    n = int(p.get("threads", 2))
    os.environ["OMP_NUM_THREADS"] = str(n)
    return n


def grad_tensordsl(p):
    from . import autodiff_ops
    _threads(p)
    fn = autodiff_ops.tensordsl_fn(p["op"], p["part"], p["params"])
    return {"seconds": timeit(fn, repeat=p.get("repeat", 15), min_time=0.3)}


def grad_torch(p):
    import torch
    from . import autodiff_ops
    torch.set_num_threads(_threads(p))
    fn = autodiff_ops.torch_fn(p["op"], p["part"], p["params"])
    return {"seconds": timeit(fn, repeat=p.get("repeat", 15), min_time=0.3),
            "threads": torch.get_num_threads()}


def gradcheck_torch(p):
    from . import autodiff_ops
    _threads(p)
    return {"seconds": 0.0, "error": autodiff_ops.check(p["op"], p["params"])}


def nn_tensordsl(p):
    from . import nn_ops
    _threads(p)
    fn = nn_ops.tensordsl_fn(p["model"], p["part"], p["params"])
    return {"seconds": timeit(fn, repeat=p.get("repeat", 30), warmup=5, min_time=0.5)}


def nn_torch(p):
    import torch
    from . import nn_ops
    torch.set_num_threads(_threads(p))
    fn = nn_ops.torch_fn(p["model"], p["part"], p["params"])
    return {"seconds": timeit(fn, repeat=p.get("repeat", 30), warmup=5, min_time=0.5),
            "threads": torch.get_num_threads()}


def nncheck_torch(p):
    import torch
    from . import nn_ops
    torch.set_num_threads(_threads(p))
    return {"seconds": 0.0, "error": nn_ops.check(p["model"], p["params"])}


def _capsule(system: str, p: dict) -> dict:
    from . import capsule_ops
    threads = _threads(p)
    if system in ("torch", "torchcompile"):
        import torch
        torch.set_num_threads(threads)
        fn = capsule_ops.torch_fn(p["part"], p["params"], compiled=system == "torchcompile")
    else:
        fn = getattr(capsule_ops, f"{system}_fn")(p["part"], p["params"])
    return {"seconds": timeit(fn, repeat=p.get("repeat", 10), warmup=3, min_time=0.5)}


def capsule_tensordsl(p):
    return _capsule("tensordsl", p)


def capsule_numpy(p):
    return _capsule("numpy", p)


def capsule_torch(p):
    return _capsule("torch", p)


def capsule_torchcompile(p):
    return _capsule("torchcompile", p)


def capsulecheck_torch(p):
    import torch
    from . import capsule_ops
    torch.set_num_threads(_threads(p))
    return {"seconds": 0.0, "error": capsule_ops.check(p["params"])}


def _capsnet(system: str, p: dict) -> dict:
    """One CapsNet training step (``capsnet_ops``). A ``torch.compile`` that fails is a
    result, not a crash: its reason comes back under ``fails`` (seconds infinite)."""
    from . import capsnet_ops
    threads = _threads(p)
    if system == "tensordsl":
        fn = capsnet_ops.tensordsl_fn(p["params"])
    else:
        import torch
        torch.set_num_threads(threads)
        compiled = system == "torchcompile"
        fn = capsnet_ops.torch_fn(p["params"], compiled=compiled)
        try:
            fn()                    # torch.compile compiles on the first call
        except Exception as e:      # whatever the compiler raises is the row's result
            if not compiled:
                raise
            first = (str(e).strip().splitlines() or [""])[0].replace("|", "/")
            return {"seconds": float("inf"), "fails": f"{type(e).__name__}: {first}"[:120]}
    return {"seconds": timeit(fn, repeat=p.get("repeat", 10), warmup=3, min_time=0.5)}


def capsnet_tensordsl(p):
    return _capsnet("tensordsl", p)


def capsnet_torch(p):
    return _capsnet("torch", p)


def capsnet_torchcompile(p):
    return _capsnet("torchcompile", p)


def capsnetcheck_torch(p):
    import torch
    from . import capsnet_ops
    torch.set_num_threads(_threads(p))
    return {"seconds": 0.0, "error": capsnet_ops.check(p["params"])}


def _layers(system: str, p: dict) -> dict:
    """A model's layers (``model_ops``), one after another in this process: each
    layer's median seconds (None where this system has no such operation); ours also
    says which layers compiled with a record (``options["records"]`` False: none read)."""
    import contextlib
    from . import model_ops
    threads = _threads(p)
    options = dict(p.get("options", {}))
    records = options.pop("records", True)
    context = contextlib.nullcontext()
    if system == "torch":
        import torch
        torch.set_num_threads(threads)
    elif system == "tensordsl" and not records:
        from tensordsl.autotune import defaults_only
        context = defaults_only()
    seconds, tuned = [], []
    with context:
        for kind, params in p["layers"]:
            fn = getattr(model_ops, f"{system}_fn")(kind, params, **options)
            seconds.append(None if fn is None else
                           timeit(fn, repeat=p.get("repeat", 10), warmup=2, min_time=0.2))
            if system == "tensordsl":
                tuned.append(model_ops.tuned(kind, params))
    return {"seconds": seconds, "tuned": tuned}


def layers_tensordsl(p):
    return _layers("tensordsl", p)


def layers_torch(p):
    return _layers("torch", p)


def layers_numpy(p):
    return _layers("numpy", p)


def layercheck_torch(p):
    import torch
    from . import model_ops
    torch.set_num_threads(_threads(p))
    return {"seconds": 0.0,
            "errors": [model_ops.check(kind, params) for kind, params in p["layers"]]}


def _sparse(system: str, p: dict) -> dict:
    from . import sparse_ops
    _threads(p)
    applied = None
    if system == "tensordsl":
        fn, applied = sparse_ops.tensordsl_fn(p["op"], p["params"], p.get("options"))
    else:
        if system == "torch":
            import torch
            torch.set_num_threads(int(p.get("threads", 2)))
        fn = getattr(sparse_ops, f"{system}_fn")(p["op"], p["params"])
    return {"seconds": timeit(fn, repeat=p.get("repeat", 15), min_time=0.2),
            "applied": applied}


def sparse_tensordsl(p):
    return _sparse("tensordsl", p)


def sparse_scipy(p):
    return _sparse("scipy", p)


def sparse_numpy(p):
    return _sparse("numpy", p)


def sparse_torch(p):
    return _sparse("torch", p)


def sparsecheck_any(p):
    """One side's result against scipy's in float64 (``p["side"]``: tensordsl, scipy, ...)."""
    from . import sparse_ops
    _threads(p)
    r = sparse_ops.check(p["op"], p["params"], p["side"], p.get("options"))
    return {"seconds": 0.0, **r}


def aot_jit(p):
    from . import aot
    return aot.worker("jit", p)


def aot_ctypes(p):
    from . import aot
    return aot.worker("ctypes", p)


def aot_loaded(p):
    from . import aot
    return aot.worker("loaded", p)


def peak_llvm(p):
    from .peak import fma_peak_gflops
    return {"seconds": 0.0, "gflops": fma_peak_gflops()}


if __name__ == "__main__":
    case, system, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(globals()[f"{case}_{system}"](params)))
