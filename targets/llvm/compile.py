"""LLVM IR text → optimized object code for the host CPU (llvmlite, new pass manager).

Only compiles; rendering is codegen.py's job and loading is runtime.py's.
"""
from __future__ import annotations

import functools

import llvmlite
import llvmlite.binding as llvm

from tensordsl.errors import BuildError


def new_host_machine():
    """A fresh TargetMachine for the host CPU. An MCJIT engine takes ownership of the
    machine it is given and frees it with itself, so every engine needs its own."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, jit=True)


@functools.lru_cache(maxsize=None)
def host_machine():
    """The machine used for optimizing and emitting code (never given to an engine)."""
    return new_host_machine()


@functools.lru_cache(maxsize=None)
def register_bits() -> int:
    """The width of the host's vector registers: 512 with AVX-512, else 256."""
    llvm.initialize_native_target()
    return 512 if "+avx512f" in llvm.get_host_cpu_features().flatten() else 256


@functools.lru_cache(maxsize=None)
def fingerprint() -> str:
    """Everything besides the IR that decides the machine code."""
    return "|".join([
        "llvmlite", llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)),
        llvm.get_process_triple(), llvm.get_host_cpu_name(),
        llvm.get_host_cpu_features().flatten(),
    ])


def optimize(llvm_ir: str, opt_level: int = 3):
    """Parse, verify and optimize; returns the llvmlite ModuleRef."""
    tm = host_machine()
    try:
        mod = llvm.parse_assembly(llvm_ir)
        mod.verify()
    except RuntimeError as err:
        raise BuildError(f"generated LLVM IR is invalid: {err}") from None
    pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    pto.slp_vectorization = True
    pto.loop_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def compile_object(llvm_ir: str, opt_level: int = 3) -> bytes:
    return host_machine().emit_object(optimize(llvm_ir, opt_level))


def assembly(llvm_ir: str, opt_level: int = 3) -> str:
    return host_machine().emit_assembly(optimize(llvm_ir, opt_level))
