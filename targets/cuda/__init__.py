"""The GPU backend: CUDA C from the lowered IR, NVRTC to CUBIN, the CUDA driver to launch.

Target strings: ``"cuda"`` (the architecture of GPU 0, or ``sm_90`` where there is none)
or ``"cuda -arch=sm_80"``. Compiling needs no GPU; running does, or use
``f.emulate(*numpy_arrays)`` to execute the generated kernels on the CPU.
"""
from __future__ import annotations


from tensordsl.ir import nodes as n

from ..base import Target, register_backend
from ..cache import make_key, module_closure_hash
from . import codegen, nvrtc
from .plan import host_plan

DEFAULT_ARCH = "sm_90"


def arch_of(target: Target) -> str:
    arch = dict(target.options).get("arch")
    if arch:
        return nvrtc.check_arch(arch)
    from tensordsl.errors import DeviceNotAvailable
    from . import driver
    try:
        return driver.device(0).compile_arch
    except DeviceNotAvailable:
        return DEFAULT_ARCH


class CUDABackend:
    name = "cuda"

    def fingerprint(self, target: Target) -> str:
        return (f"cuda|{arch_of(target)}|nvrtc {nvrtc.version()}|"
                f"{module_closure_hash('targets.cuda.nvrtc')}")

    def cache_key(self, func: n.PrimFunc, target: Target, source) -> str:
        # CUDA C is cheap to render: key on exactly the text NVRTC compiles
        return make_key(source(), self.fingerprint(target))

    def codegen(self, func: n.PrimFunc, target: Target) -> str:
        from tensordsl.lower.gpu import check_shared, max_shared_bytes
        arch = arch_of(target)
        plan = host_plan(func)
        for kernel in plan.kernels:
            check_shared(kernel.body, max_shared_bytes(arch), f"on {arch}")
        return codegen.generate(func, plan=plan)

    def compile(self, source: str, target: Target) -> bytes:
        return nvrtc.compile_source(source, arch_of(target), "cubin")

    def load(self, binary: bytes, func: n.PrimFunc, target: Target):
        return binary

    def make_module(self, func, binary, target, source):
        from .runtime import CudaModule
        return CudaModule(func, binary, self, target, source)

    def source_text(self, source: str, kind: str, target: Target) -> str:
        if kind in ("cuda", "cu", None):
            return source
        if kind == "ptx":
            return nvrtc.compile_source(source, arch_of(target), "ptx").decode()
        raise ValueError(f"get_source: kind must be 'cuda' or 'ptx', got {kind!r}")


register_backend("cuda", CUDABackend())
