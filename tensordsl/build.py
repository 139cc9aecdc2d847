"""``td.build``: lower a schedule, compile it (through the cache) and load it."""
from __future__ import annotations

from targets import cache
from targets.base import Target, get_backend

from .ir.printer import print_func
from .lower.pipeline import lower
from .runtime.module import Module


def build(schedule, args, target="llvm", name: str = "main") -> Module:
    """Compile ``schedule`` into a function of ``args`` (tensors, in call order).

    ``target``: ``"llvm"`` (the host CPU). Returns a callable taking numpy arrays;
    outputs are written in place. Compiled code is cached in memory and on disk
    (``$TENSORDSL_CACHE_DIR``), keyed by the lowered IR, the target and the toolchain.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected an identifier, got {name!r}")
    tgt = Target.parse(target)
    backend = get_backend(tgt.kind)
    func = lower(schedule, args, name=name)
    key = cache.make_key(print_func(func), backend.fingerprint(tgt))
    source_memo = []

    def source():
        if not source_memo:
            source_memo.append(backend.codegen(func, tgt))
        return source_memo[0]

    binary = cache.load(key)
    if binary is None:
        binary = backend.compile(source(), tgt)
        cache.store(key, binary)
    kernel = backend.load(binary, func, tgt)
    return Module(func, kernel, backend, tgt, source)
