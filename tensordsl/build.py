"""``td.build``: lower a schedule, compile it (through the cache) and load it."""
from __future__ import annotations

from targets import cache
from targets.base import Target, get_backend

from .lower.pipeline import lower
from .runtime.module import Module
from .target import resolve


def build(schedule, args=None, target=None, name: str = "main",
          check_indices: bool = True) -> Module:
    """Compile ``schedule`` into a function of ``args`` (tensors, in call order).

    ``td.build(args)`` — tensors only, the output last, as a user file's function returns
    them — schedules the computation itself: with the best tuning record filed for it
    (``tensordsl tune file.py:function`` records a compute under a name-independent key,
    ``autotune/structural.py``; a record of the file's own ``schedule(s, outs, config)``
    replays that function), else the auto-scheduler's defaults.

    ``target``: ``"llvm"`` (the host CPU; the callable takes numpy arrays) or ``"cuda"``
    / ``"cuda -arch=sm_80"`` (a GPU; the callable takes ``td.nd`` device arrays, and
    ``f.emulate(*numpy_arrays)`` runs its kernels on the CPU); None: the enclosing
    ``td.target.Target`` (``with td.target.Target("llvm"):``), else ``"llvm"``. Outputs
    are written in place. Compiled code is cached in memory and on disk
    (``$TENSORDSL_CACHE_DIR``), keyed by the lowered IR, the target and the toolchain.

    Reads are checked against the tensors' shapes (``lower/check_bounds.py``): out of
    bounds for every size, ``BuildError``; depending on symbolic sizes, a ``ValueError``
    at call time before the kernel runs; indices read from data (``A[idx[i]]``), checked
    as the kernel runs unless ``check_indices=False`` (faster, for trusted data).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected an identifier, got {name!r}")
    target = resolve(target)
    if args is None and isinstance(schedule, (list, tuple)):
        schedule, args = _auto_schedule(list(schedule), target)
    func, binary, tgt = compile_func(schedule, args, target, name, check_indices)
    return load_func(func, binary, tgt)


def compile_func(schedule, args, target="llvm", name: str = "main",
                 check_indices: bool = True):
    """``td.build``'s first half: (lowered function, compiled binary, target), through
    the cache. With ``load_func``, what a tuning worker that builds hands to the one
    that measures (both picklable): the measuring side then neither lowers nor compiles."""
    tgt = Target.parse(target)
    backend = get_backend(tgt.kind)
    func = lower(schedule, args, name=name, target=tgt, check_indices=check_indices)
    source = _source_of(func, backend, tgt)
    key = backend.cache_key(func, tgt, source)
    binary = cache.load(key)
    if binary is None:
        binary = backend.compile(source(), tgt)
        cache.store(key, binary)
    return func, binary, tgt


def load_func(func, binary: bytes, target) -> Module:
    """The callable ``Module`` of ``compile_func``'s function and binary."""
    tgt = target if isinstance(target, Target) else Target.parse(target)
    backend = get_backend(tgt.kind)
    source = _source_of(func, backend, tgt)
    if hasattr(backend, "make_module"):
        return backend.make_module(func, binary, tgt, source)
    return Module(func, backend.load(binary, func, tgt), backend, tgt, source)


def _source_of(func, backend, tgt):
    """The generated source, made on first use and kept (a cache hit needs none)."""
    memo = []

    def source():
        if not memo:
            memo.append(backend.codegen(func, tgt))
        return memo[0]
    return source


def _auto_schedule(tensors: list, target: str):
    """The schedule ``td.build(tensors)`` uses: the best record filed for this computation
    — of the auto-scheduler's space, or of a user file's own ``schedule(s, outs, config)``
    (``tensordsl tune file.py:function``), which its record names — else the
    auto-scheduler's defaults (always, for a size left symbolic)."""
    from .autotune.history import best_config, best_record
    from .autotune.structural import record_key
    from .autotune.userfile import UserFunction
    from .schedule.schedule import create_schedule
    from .te.tensor import PlaceholderOp, Tensor
    from schedules.cpu.auto import schedule_auto
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError("build: expected a schedule and its tensors, or a list of tensors "
                        f"(the output last), got {tensors!r}")
    out = tensors[-1]
    inputs = [t for t in tensors[:-1] if isinstance(t.op, PlaceholderOp)]
    key = record_key(out, inputs)
    config = None   # a size left symbolic (td.var): no records, the defaults
    if key is not None:
        rec = best_record(key, target)
        if rec is not None and rec["template"] == "user" and rec.get("source"):
            s = create_schedule(out.op)
            try:
                UserFunction.from_json(rec["source"]).template()(s, [out], dict(rec["config"]))
                return s, tensors
            except Exception as err:  # the file moved or changed: cannot be replayed
                import warnings
                warnings.warn(f"build: the best record of this compute was tuned with "
                              f"{rec.get('name') or 'a user file'}'s schedule, which cannot "
                              f"be applied now ({type(err).__name__}: {err}); using the "
                              "auto-scheduler", stacklevel=3)
        config = best_config(key, target, "auto")
    s = create_schedule(out.op)
    schedule_auto(s, out, config)
    return s, tensors
