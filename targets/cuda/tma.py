"""The tensor memory accelerator in CUDA C: tiles copied by ``cp.async.bulk.tensor`` and
awaited on mbarriers (the IR of ``tensordsl/lower/async_copies.py``), for sm_90 and later.

A kernel with TMA copies is written once for every architecture: its pipelined loops
hold both versions, ``#if defined(TD_TMA)`` (defined where ``__CUDA_ARCH__ >= 900``)
choosing. The TMA reads a global tensor through a tensor map (``CUtensorMap``, 128
opaque bytes) the host encodes at each launch (``cuTensorMapEncodeTiled``: the
tensor's address, sizes and row strides, the box, the swizzle) and passes by value as a
``const __grid_constant__`` parameter after the kernel's others — only where the code
was compiled for such a GPU (``compiled_for``), since elsewhere the parameters are not
there. One map per (tensor, box, swizzle) a kernel copies (``tensor_maps``).
"""
from __future__ import annotations

from dataclasses import dataclass

from tensordsl.ir import dtype as dt
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import post_order

TMA_MACRO = "TD_TMA"
MIN_ARCH = 90


def compiled_for(arch: str | None) -> bool:
    """Whether CUDA C compiled for ``arch`` ("sm_90a") takes the TMA version."""
    if not arch:
        return False
    return int(arch[3:].rstrip("a")) >= MIN_ARCH


@dataclass(frozen=True)
class TensorMap:
    """One tensor map parameter: ``src`` read in boxes of ``box`` (outermost first),
    the 16-byte chunks of each 128-byte line permuted where ``swizzle`` is 128."""
    src: n.Buffer
    box: tuple
    swizzle: int

    @property
    def rank(self) -> int:
        return len(self.box)

    @property
    def element_bytes(self) -> int:
        return max(1, dt.bits(self.src.dtype) // 8)


# cuTensorMapEncodeTiled's element types (CU_TENSOR_MAP_DATA_TYPE_*): the TMA only moves
# bits, so integers of a width it has no signed type for go as unsigned
DATA_TYPES = {"float16": "FLOAT16", "bfloat16": "BFLOAT16", "float32": "FLOAT32",
              "float64": "FLOAT64", "int32": "INT32", "int64": "INT64", "int8": "UINT8",
              "uint8": "UINT8", "bool": "UINT8", "int16": "UINT16"}
MAX_DIM = 2 ** 31 - 1     # (the coordinates are 32-bit signed ints)


def map_geometry(m: TensorMap, shape, address: int) -> tuple[list[int], list[int]]:
    """``(sizes, byte strides)`` of the tensor map of ``m`` over an argument of
    ``shape`` at ``address``, innermost first (the strides of the outer dimensions
    only, as the encoder takes them), checked against what the TMA allows."""
    dims = [int(d) for d in reversed(shape)]
    strides = [m.element_bytes]
    for d in dims[:-1]:
        strides.append(strides[-1] * d)
    what = f"argument {m.src.name!r}: the TMA copies boxes of it"
    if address % 16:
        raise ValueError(f"{what}, so its data must start on 16 bytes; got a view at an "
                         f"offset, pass a fresh or contiguous copy")
    if any(s % 16 for s in strides[1:]):
        raise ValueError(f"{what}, so its rows must be a whole number of 16 bytes apart; "
                         f"its shape {tuple(shape)} of {m.src.dtype} has rows of "
                         f"{strides[1]} bytes")
    if any(not 1 <= d <= MAX_DIM for d in dims):
        raise ValueError(f"{what}, whose sizes must lie in 1..2^31-1 (the TMA version of "
                         f"the kernel, built for sm_90+, cannot take an empty one); got "
                         f"{tuple(shape)}")
    return dims, strides[1:]


def _key(m) -> tuple:
    return id(m.src), m.box, m.swizzle


def tensor_maps(kernel_body) -> list[TensorMap]:
    """The tensor maps a kernel takes, in parameter order."""
    seen, out = set(), []
    for node in post_order(kernel_body):
        if isinstance(node, n.TmaLoad) and _key(node) not in seen:
            seen.add(_key(node))
            out.append(TensorMap(node.src, node.box, node.swizzle))
    return out


def destination_alignments(kernel_body) -> dict:
    """id(shared buffer) -> the bytes its start needs as a TMA destination: 1024 where
    swizzled (the hardware swizzles absolute addresses, in 1024-byte periods), else 128."""
    out: dict = {}
    for node in post_order(kernel_body):
        if isinstance(node, n.TmaLoad):
            need = 1024 if node.swizzle else 128
            out[id(node.dst)] = max(need, out.get(id(node.dst), 0))
    return out


def map_params(w, maps: list[TensorMap]) -> list[str]:
    """The kernel's tensor-map parameters (inside ``#if TD_TMA``)."""
    return [f"const __grid_constant__ td_tensor_map {map_name(w, m)}" for m in maps]


def map_name(w, m) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in m.src.name)
    return w.namer.name_of(m, f"td_map_{stem}", key=("tensor map",) + _key(m))


def write_tma_load(w, s: n.TmaLoad, depth: int):
    coords = ", ".join(f"(int)({w.expr(e)})" for e in reversed(s.origin))  # innermost first
    w.emit(depth, f"td_tma_load_{len(s.box)}d(&{w.buf(s.dst)}[{w.expr(s.dst_offset)}], "
                  f"{map_name(w, s)}, {_barrier(w, s.barrier, s.slot)}, {coords});")


def write_mbarrier(w, call: n.Call, depth: int):
    """``mbarrier_<op>(barrier[slot], args...)`` (``async_copies._mbarrier``)."""
    if call.name == "mbarrier_fence_init":
        w.emit(depth, "td_mbarrier_fence_init();")
        return
    at, *rest = call.args
    args = [_barrier(w, at.buffer, at.index)] + [f"{w.expr(a)}" for a in rest]
    w.emit(depth, f"td_{call.name}({', '.join(args)});")


def _barrier(w, buf: n.Buffer, slot: n.Expr) -> str:
    return f"&{w.buf(buf)}[{w.expr(slot)}]"


def prelude(ranks) -> str:
    """The device helpers (the emulator has its own, ``emulate_tma.h``)."""
    loads = "\n".join(_load_helper(r) for r in sorted(set(ranks)))
    return PRELUDE.replace("@LOADS@", loads).strip()


def _load_helper(rank: int) -> str:
    params = ", ".join(f"int c{k}" for k in range(rank))
    operands = ", ".join(f"%{3 + k}" for k in range(rank))
    inputs = ", ".join(f'"r"(c{k})' for k in range(rank))
    return f"""__device__ __forceinline__ void td_tma_load_{rank}d(void* dst, const td_tensor_map& map,
                                                  void* bar, {params}) {{
  asm volatile("cp.async.bulk.tensor.{rank}d.shared::cluster.global.tile"
               ".mbarrier::complete_tx::bytes [%0], [%1, {{{operands}}}], [%2];"
               :: "r"(td_smem(dst)), "l"(&map), "r"(td_smem(bar)), {inputs} : "memory");
}}"""


# The TMA reads the map through its generic address (a __grid_constant__ parameter's);
# the copy's bytes complete on the mbarrier. The waiting threads spin on try_wait with
# the phase's parity. fence.proxy.async orders the block's earlier reads of the stage
# (generic proxy: ldmatrix) before the TMA's writes to it (async proxy).
PRELUDE = r"""
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define TD_TMA 1
#endif
struct __align__(64) td_tensor_map { unsigned long long opaque[16]; };
#if defined(TD_TMA)
__device__ __forceinline__ unsigned td_smem(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void td_mbarrier_init(void* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(td_smem(bar)), "r"(count)
               : "memory");
}
__device__ __forceinline__ void td_mbarrier_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void td_mbarrier_expect_tx(void* bar, unsigned bytes) {
  asm volatile("fence.proxy.async.shared::cta;\n\t"
               "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
               :: "r"(td_smem(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void td_mbarrier_wait(void* bar, unsigned parity) {
  asm volatile("{\n\t.reg .pred done;\n"
               "td_wait_%=:\n\t"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n\t"
               "@!done bra td_wait_%=;\n}"
               :: "r"(td_smem(bar)), "r"(parity) : "memory");
}
__device__ __forceinline__ void td_mbarrier_inval(void* bar) {
  asm volatile("mbarrier.inval.shared::cta.b64 [%0];" :: "r"(td_smem(bar)) : "memory");
}
@LOADS@
#endif
"""
