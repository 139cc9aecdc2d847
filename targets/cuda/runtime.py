"""A compiled CUDA function: ``f(*device_arrays)`` launches its kernels on the GPU.

The CUBIN is loaded on the first call (so building works without a GPU; calling then
raises ``td.DeviceNotAvailable``). Arguments are ``td.nd`` arrays on the CUDA device;
numpy arrays are refused rather than copied behind the caller's back. ``f.emulate(*numpy
arrays)`` runs the same kernels on the CPU (``emulate.py``).
"""
from __future__ import annotations

import ctypes

import numpy as np

from tensordsl.errors import DeviceNotAvailable
from tensordsl.lower.gpu import tensor_core_buffers
from tensordsl.runtime.module import Module

from .plan import evaluate, host_plan


class CudaModule(Module):
    def __init__(self, func, cubin: bytes, backend, target, source):
        super().__init__(func, None, backend, target, source)
        self.cubin = cubin
        self.plan = host_plan(func)
        self._tensor_core_args = tensor_core_buffers(func)
        from . import arch_of, tma
        # the TMA version's tensor-map parameters, where the CUBIN has it
        self._maps = [tma.tensor_maps(k.body) if tma.compiled_for(arch_of(target)) else []
                      for k in self.plan.kernels]
        self._loaded = None
        self._emulator = None

    @property
    def kernels(self) -> list:
        return self.plan.kernels

    def get_source(self, kind: str = "cuda") -> str:
        """``"cuda"``: the CUDA C; ``"ptx"``: NVRTC's PTX for the target architecture."""
        return self.backend.source_text(self._source(), kind, self.target)

    # ------------------------------------------------------------ on the GPU
    def __call__(self, *arrays):
        from targets.cuda import driver
        from tensordsl.nd import NDArray
        pointers, sizes = self.check_args(arrays, self._check_device_array)
        dev = driver.device(arrays[0].device_id if arrays and
                            isinstance(arrays[0], NDArray) else 0)
        arch = dict(self.target.options).get("arch")
        if arch and arch.rstrip("a") != dev.arch:    # (sm_90a's code runs on sm_90)
            raise DeviceNotAvailable(f"{self.entry_name}: built for {arch}, but the GPU "
                                     f"({dev.name}) is {dev.arch}; build with "
                                     f"target='cuda -arch={dev.arch}'")
        if self._loaded is None:
            self._loaded = driver.LoadedModule(self.cubin, [k.name for k in self.kernels])
        scalars = dict(zip(self.scalars, sizes))
        buffers = {id(p): ptr for p, ptr in zip(self.func.params, pointers)}
        shapes = {id(p): a.shape for p, a in zip(self.func.params, arrays)}
        temps = []
        error = np.zeros(2, np.int64)
        try:
            if self.checked_reads:
                temps.append(driver.mem_alloc(error.nbytes))
                driver.copy_to_device(temps[-1], error.ctypes.data, error.nbytes)
                buffers[id(self.func.attrs["index_error"])] = temps[-1]
            for t in self.plan.temps:
                nbytes = evaluate(t.extent, scalars) * max(1, _itemsize(t.buffer.dtype))
                temps.append(driver.mem_alloc(nbytes))
                buffers[id(t.buffer)] = temps[-1]
            for k, maps in zip(self.kernels, self._maps):
                grid = [evaluate(g, scalars) for g in k.grid]
                if min(grid) <= 0:
                    continue
                args = [ctypes.c_void_p(buffers[id(b)]) for b in k.buffers]
                args += [ctypes.c_longlong(int(scalars[v])) for v in k.scalars]
                args += [driver.encode_tensor_map(m, shapes[id(m.src)], buffers[id(m.src)])
                         for m in maps]
                self._loaded.launch(k.name, grid, k.block, args, k.dynamic_shared)
            driver.synchronize()
            if self.checked_reads:
                driver.copy_to_host(error.ctypes.data, temps[0], error.nbytes)
        finally:
            for ptr in temps:
                driver.mem_free(ptr)
        self.raise_index_error(int(error[0]), int(error[1]), arrays)

    def _check_device_array(self, p, a, bound) -> int:
        from tensordsl.nd import NDArray
        if isinstance(a, np.ndarray):
            raise TypeError(f"argument {p.name!r}: a function built for CUDA takes device "
                            f"arrays; got a numpy array (copy it with "
                            f"td.nd.array(x, device='cuda'))")
        if not isinstance(a, NDArray) or a.device != "cuda":
            where = getattr(a, "device", type(a).__name__)
            raise TypeError(f"argument {p.name!r}: expected a td.nd array on the CUDA "
                            f"device, got {where}")
        if a.dtype != p.np_dtype:
            raise TypeError(f"argument {p.name!r}: expected dtype {p.np_dtype}, got {a.dtype}")
        self._check_shape(p, a, bound)
        # tensor cores load and store tiles on 32 bytes, float4s need 16
        return _aligned(p, a.ptr, 32 if p.name in self._tensor_core_args else 16)

    # ------------------------------------------------------------ on the CPU
    def emulate(self, *arrays, seed: int | None = None, order: str = "random",
                warp_lockstep: bool = False, count_banks: bool = False):
        """Run the generated kernels on the CPU on numpy arrays (outputs in place).
        Threads run in an order drawn from ``seed`` (else ``TENSORDSL_EMU_SEED``, else
        random; ``order="sequential"``: by index); ``warp_lockstep``: a warp's lanes
        in lock-step; ``count_banks``: returns the shared-memory requests and the
        wavefronts they took (``SharedTraffic``). See ``targets/cuda/emulate.py``."""
        from .emulate import Emulator
        pointers, sizes = self.check_args(arrays, self._check_host_array)
        if self._emulator is None:
            self._emulator = Emulator(self.func, dict(self.target.options).get("arch"))
        buffers = {id(p): a.reshape(-1) for p, a in zip(self.func.params, arrays)}
        error = np.zeros(2, np.int64)
        if self.checked_reads:
            buffers[id(self.func.attrs["index_error"])] = error
        traffic = self._emulator.run(buffers, dict(zip(self.scalars, sizes)), seed=seed,
                                     order=order, warp_lockstep=warp_lockstep,
                                     count_banks=count_banks)
        self.raise_index_error(int(error[0]), int(error[1]), arrays)
        return traffic

    def _check_host_array(self, p, a, bound) -> int:
        """A numpy array for the emulator: on 16 bytes, as on the device, since the
        host compiler may move a ``float4`` with an instruction that faults elsewhere
        (the emulated tensor cores need no more)."""
        return _aligned(p, self._check_array(p, a, bound), 16)


def _aligned(p, ptr: int, need: int) -> int:
    """``ptr``, checked to lie on ``need`` bytes: the code generator moves a ``float4``
    wherever the index is a multiple of 4 floats (8 halves), trusting 16; WMMA tiles
    need 32 (``gpu.tensor_core_buffers``)."""
    if ptr % need:
        why = "tensor cores move its tiles" if need == 32 else "kernels move float4s"
        raise ValueError(f"argument {p.name!r}: the data pointer must be {need}-byte "
                         f"aligned ({why}); got a view at an offset, pass a fresh or "
                         "contiguous copy")
    return ptr


def _itemsize(dtype: str) -> int:
    from tensordsl.ir import dtype as dt
    return max(1, dt.bits(dtype) // 8)
