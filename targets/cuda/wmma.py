"""CUDA C for the tensor-core calls that ``tensorize`` leaves in the IR.

Each operand arrives as two loads: the tile's first element and the one a row below,
whose index difference is the row stride (``ldm``). An accumulator tile lives in an
array of fragments: the 16x16 tiles of the accumulator buffer, row-major.

float16 tiles go through ``nvcuda::wmma``, which sm_80 compiles to ldmatrix and HMMA.
bfloat16 tiles do not (WMMA loads them with plain shared loads and transposes them with
MOVM), so a kernel with bfloat16 operands is written with ldmatrix and ``mma.sync``
(m16n8k16) itself (``uses_mma``), as is one whose tiles are swizzled
(``s[T].swizzle()``: WMMA reads row-major tiles only; here each lane swizzles the
address of the row it gives ldmatrix, ``td_mma_load_a_swizzled``): a 16x16x16 step is
two ldmatrix.x4 (A's tile, and B's transposed) and two m16n8k16 products, and a 16x16 accumulator tile is 8 floats a
lane (``td_mma_acc``). The lane arithmetic (``MMA_HELPERS``) is the same C on the GPU
and in the emulator; only the two warp-wide instructions differ: inline PTX here
(``MMA_PRIMITIVES``), and in ``emulate_mma.h`` a model of what each lane receives.
"""
from __future__ import annotations

from tensordsl.arith.simplify import simplify_expr
from tensordsl.errors import BuildError
from tensordsl.ir import nodes as n

_NS = "nvcuda::wmma"


def _operand(w, first: n.Load, below: n.Load):
    ldm = simplify_expr(n.Sub(below.index, first.index))
    return f"&{w.at(first.buffer, w.expr(first.index), 'address')}", ldm


def _swizzled_operand(w, first: n.Load) -> tuple[str, str]:
    """(pointer, offset) of a swizzled tile for its helpers: the buffer plus the tile's
    whole 1024-byte blocks (a pipeline stage's copy, which swizzling passes through),
    and the rest of its unswizzled offset, which each lane swizzles with its row
    (loop-invariant: the compiler computes it once, outside the K loop)."""
    from tensordsl.arith.simplify import Simplifier
    from tensordsl.lower.flatten_storage import SWIZZLE_BLOCK_BYTES
    block = SWIZZLE_BLOCK_BYTES // 2                       # 16-bit elements
    simp = Simplifier()
    terms, const = simp.linear(first.index)
    whole = {k: t for k, t in terms.items() if t[1] % block == 0}
    rest = simp.rebuild({k: t for k, t in terms.items() if k not in whole}, const % block)
    blocks = simp.rebuild(whole, const - const % block)
    return f"&{w.at(first.buffer, '0', 'address')} + {w.expr(blocks)}", w.expr(rest)


def _fragment(w, first: n.Load, below: n.Load, i: int = 0, j: int = 0) -> str:
    """The accumulator fragment of the tile ``i`` tiles below and ``j`` right of the one
    whose first element ``first`` reads."""
    row = simplify_expr(n.Sub(below.index, first.index))
    if not (isinstance(row, n.IntImm) and row.value % 16 == 0):
        raise BuildError(f"accumulator {first.buffer.name!r}: its rows must be a constant "
                         f"multiple of 16 elements wide, got {row}")
    width = row.value
    idx = w.expr(first.index)
    step = i * (width // 16) + j
    return (f"{w.buf(first.buffer)}[(({idx}) / {16 * width}) * {width // 16} + "
            f"(({idx}) % {width}) / 16{f' + {step}' if step else ''}]")


def _tiles(args, at: int) -> tuple[int, int]:
    """A call's block of tiles (down, across): its arguments ``at`` and ``at + 1``."""
    return tuple(int(a.value) for a in args[at:at + 2]) if len(args) > at else (1, 1)


def _swizzled(args) -> tuple[bool, bool]:
    """Whether a product's A and B tiles are swizzled (the flags ``flatten_storage``
    appends)."""
    return tuple(bool(a.value) for a in args[8:10]) if len(args) >= 10 else (False, False)


def uses_mma(body) -> bool:
    """Whether a kernel's tensor-core products have bfloat16 operands or swizzled tiles
    (ldmatrix and mma.sync rather than WMMA, see the module docstring)."""
    from tensordsl.ir.visitor import post_order
    return any(isinstance(node, n.Call) and (
        node.name == "wmma.mma_sync"
        and (node.args[2].buffer.dtype == "bfloat16" or any(_swizzled(node.args)))
        # an accumulator stored converted (WMMA stores a float fragment as floats)
        or node.name == "wmma.store" and node.args[0].buffer.dtype != "float32")
        for node in post_order(body))


def write_wmma(w, call: n.Call, depth: int):
    """A tensor-core call as C: through WMMA, or ldmatrix and mma.sync where ``w.mma``.
    A product of a block of tiles loads each A and B tile once, then multiplies every
    pair."""
    args = call.args
    if call.name == "wmma.fill":
        fill = "td_mma_fill" if w.mma else f"{_NS}::fill_fragment"
        down, across = _tiles(args, 3)
        for i in range(down):
            for j in range(across):
                w.emit(depth, f"{fill}({_fragment(w, args[0], args[1], i, j)}, "
                              f"{w.expr(args[2])});")
    elif call.name == "wmma.mma_sync":
        if w.mma and wgmma_eligible(call, w.k.threads):
            # on sm_90a the block's 4 warps multiply as one warpgroup; elsewhere (and
            # where the macro is not defined) the same product by mma.sync
            w.emit(depth, "#if defined(TD_WGMMA)")
            (a, a_first), (b, b_first) = (_swizzled_operand(w, args[2]),
                                          _swizzled_operand(w, args[4]))
            frag = _fragment(w, args[0], args[1])
            t = _ctype(args[2].buffer.dtype)
            w.emit(depth, f"td_wgmma_slab<{t}>(&{frag}, {a}, {a_first}, {b}, {b_first});")
            w.emit(depth, "#else")
            _write_mma(w, call, depth)
            w.emit(depth, "#endif")
        else:
            _write_mma(w, call, depth)
    elif call.name == "wmma.store":
        ptr, ldm = _operand(w, args[0], args[1])
        frag = _fragment(w, args[2], args[3])
        w.emit(depth, f"td_mma_store({ptr}, {frag}, {w.expr(ldm)});" if w.mma else
                      f"{_NS}::store_matrix_sync({ptr}, {frag}, {w.expr(ldm)}, "
                      f"{_NS}::mem_row_major);")
    else:
        raise BuildError(f"the CUDA code generator has no intrinsic {call.name!r}")


def _ctype(dtype: str) -> str:
    from .codegen import c_type
    return c_type(dtype)


# the tiles wgmma reads as written here: a warp's 16 x 64 slab (1 x 4 tiles), rows of
# 128 bytes of 16-bit elements, both tiles swizzled (flatten_storage's swizzle is then
# the 128-byte swizzle layout of wgmma's descriptors: A K-major, B MN-major)
WGMMA_SLAB = (1, 4)
WGMMA_ROW = 64
WGMMA_ALIGNMENT = 1024        # a described tile's start (the swizzle's period)


def wgmma_eligible(call: n.Call, threads: int) -> bool:
    """Whether a product is one warp's part of an m64n64k16 wgmma (see WGMMA_SLAB) in
    a block of whole warpgroups: B's rows of 64 leave one warp across, so the block's
    warps go down M, 4 to a group (the emulator checks at run time that a group's warps
    give one tile)."""
    args = call.args
    if _tiles(args, 6) != WGMMA_SLAB or _swizzled(args) != (True, True) or threads % 128:
        return False
    for first, below in ((args[2], args[3]), (args[4], args[5])):
        ld = simplify_expr(n.Sub(below.index, first.index))
        if not (isinstance(ld, n.IntImm) and ld.value == WGMMA_ROW) or \
                first.buffer.dtype not in ("float16", "bfloat16"):
            return False
    return True


def wgmma_buffers(body, threads: int) -> set:
    """The ids of the shared buffers a kernel's wgmma reads through descriptors (their
    start must be on 1024 bytes: the hardware swizzles absolute shared addresses)."""
    from tensordsl.ir.visitor import post_order
    return {id(b) for node in post_order(body)
            if isinstance(node, n.Call) and node.name == "wmma.mma_sync"
            and wgmma_eligible(node, threads)
            for b in (node.args[2].buffer, node.args[4].buffer)}


def _step(k: int, rows: str | None = None) -> str:
    """`` + k`` (``k`` rows of ``rows`` elements), nothing for 0."""
    if not k:
        return ""
    return f" + {k} * ({rows})" if rows is not None else f" + {k}"


def _write_mma(w, call: n.Call, depth: int):
    """A product as ldmatrix and mma.sync (or WMMA): each A and B tile of the block
    loaded once, then every product."""
    args = call.args
    down, across = _tiles(args, 6)
    (a_ptr, lda), (b_ptr, ldb) = _operand(w, args[2], args[3]), _operand(w, args[4], args[5])
    lda, ldb = w.expr(lda), w.expr(ldb)
    swizzled_a, swizzled_b = _swizzled(args)
    # each tile's place: a pointer, or (swizzled) the buffer and the unswizzled offset
    if swizzled_a:
        a_base, a_first = _swizzled_operand(w, args[2])
        a_tiles = [f"{a_base}, {a_first}{_step(16 * i, lda)}" for i in range(down)]
    else:
        a_tiles = [f"{a_ptr}{_step(16 * i, lda)}" for i in range(down)]
    if swizzled_b:
        b_base, b_first = _swizzled_operand(w, args[4])
        b_tiles = [f"{b_base}, {b_first}{_step(16 * j)}" for j in range(across)]
    else:
        b_tiles = [f"{b_ptr}{_step(16 * j)}" for j in range(across)]
    from .codegen import c_type
    t = c_type(args[2].buffer.dtype)
    w.emit(depth, "{")
    if w.mma:
        w.emit(depth + 1, f"unsigned td_a[{down}][4], td_b[{across}][4];")
        load_a = "td_mma_load_a_swizzled" if swizzled_a else "td_mma_load_a"
        load_b = "td_mma_load_b_swizzled" if swizzled_b else "td_mma_load_b"
    else:
        w.emit(depth + 1, f"{_NS}::fragment<{_NS}::matrix_a, 16, 16, 16, {t}, "
                          f"{_NS}::row_major> td_a[{down}];")
        w.emit(depth + 1, f"{_NS}::fragment<{_NS}::matrix_b, 16, 16, 16, {t}, "
                          f"{_NS}::row_major> td_b[{across}];")
        load_a = load_b = f"{_NS}::load_matrix_sync"
    for i, tile in enumerate(a_tiles):
        w.emit(depth + 1, f"{load_a}(td_a[{i}], {tile}, {lda});")
    for j, tile in enumerate(b_tiles):
        w.emit(depth + 1, f"{load_b}(td_b[{j}], {tile}, {ldb});")
    for i in range(down):
        for j in range(across):
            frag = _fragment(w, args[0], args[1], i, j)
            w.emit(depth + 1, f"td_mma_product<{t}>({frag}, td_a[{i}], td_b[{j}]);"
                   if w.mma else f"{_NS}::mma_sync({frag}, td_a[{i}], td_b[{j}], {frag});")
    w.emit(depth, "}")


# wgmma's 32 accumulator registers a thread: the operand list and the constraints
_WGMMA_D = "{" + ", ".join(f"%{i}" for i in range(32)) + "}"
_WGMMA_OUTPUTS = ", ".join(f'"+f"(d[{i}])' for i in range(32))

# ldmatrix.x4 (each lane gives one row of 16 bytes: lanes 8i..8i+7 the rows of matrix i)
# and mma.sync m16n8k16 accumulating in float, on the GPU (sm_80 and later), for each
# 16-bit type that takes this path
MMA_PRIMITIVES = r"""
template <bool Trans, class T>
__device__ __forceinline__ void td_ldmatrix_x4(unsigned (&r)[4], const T* row) {
  const unsigned at = (unsigned)__cvta_generic_to_shared(row);
  if (Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at));
}
template <class T> __device__ __forceinline__ void td_mma_16816(float* d, const unsigned (&a)[4],
                                                                unsigned b0, unsigned b1);
template <class T> __device__ __forceinline__ void td_mma_put(T* at, float v) { *at = (T)v; }
__device__ __forceinline__ unsigned td_shared_address(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}
// wgmma (sm_90a only: the "a" features): a warpgroup's m64n64k16 product, A K-major and B
// MN-major (transposed) in shared memory by descriptor, accumulating into d (the lanes'
// m16n8 accumulators, one per 8 columns); waited for at once
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TD_WGMMA 1
template <class T> __device__ __forceinline__ void td_wgmma_m64n64k16(
    float (&d)[32], unsigned long long a, unsigned long long b);
""" + "".join(r"""
template <> __device__ __forceinline__ void td_wgmma_m64n64k16<%s>(
    float (&d)[32], unsigned long long a, unsigned long long b) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %%34, 0;\n"
               "wgmma.fence.sync.aligned;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.%s.%s %s, %%32, %%33, p, 1, 1, 0, 1;\n"
               "wgmma.commit_group.sync.aligned;\nwgmma.wait_group.sync.aligned 0;\n}"
               : %s
               : "l"(a), "l"(b), "r"(1) : "memory");
}""" % (c_type, ptx, ptx, _WGMMA_D, _WGMMA_OUTPUTS)
    for c_type, ptx in (("__nv_bfloat16", "bf16"), ("half", "f16"))) + r"""
#endif
""" + "".join(r"""
template <> __device__ __forceinline__ void td_mma_16816<%s>(
    float* d, const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.%s.%s.f32 "
               "{%%0, %%1, %%2, %%3}, {%%4, %%5, %%6, %%7}, {%%8, %%9}, {%%0, %%1, %%2, %%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}""" % (c_type, ptx, ptx) for c_type, ptx in (("__nv_bfloat16", "bf16"), ("half", "f16")))

# A 16x16x16 step and a 16x16 accumulator tile in the lanes' registers (PTX's fragment
# layouts for m16n8k16: lane l holds A's rows l/4 and l/4+8, B's column l/4 and C's rows
# l/4 and l/4+8, at columns 2(l%4) and 2(l%4)+1 of each 8)
MMA_HELPERS = r"""
struct td_mma_acc { float x[8]; };    // a 16x16 tile: two m16n8 halves of 4 floats a lane
__device__ __forceinline__ unsigned td_lane() {
  return (unsigned)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32u;
}
__device__ __forceinline__ void td_mma_fill(td_mma_acc& c, float v) {
  for (int e = 0; e < 8; ++e) c.x[e] = v;
}
// lanes 0-15 give rows 0-15 of a tile's left 8 columns, lanes 16-31 of its right 8: A's
// matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) in the order mma.sync takes them; B's,
// transposed, (k 0-7, k 8-15) of columns 0-7, then of columns 8-15
template <class T>
__device__ __forceinline__ void td_mma_load_a(unsigned (&f)[4], const T* a, long long lda) {
  const unsigned lane = td_lane();
  td_ldmatrix_x4<false>(f, a + (lane % 16) * lda + (lane / 16) * 8);
}
template <class T>
__device__ __forceinline__ void td_mma_load_b(unsigned (&f)[4], const T* b, long long ldb) {
  const unsigned lane = td_lane();
  td_ldmatrix_x4<true>(f, b + (lane % 16) * ldb + (lane / 16) * 8);
}
// the same from a swizzled tile (flatten_storage.py): ``first`` is the tile's offset in
// the buffer ``base`` before swizzling, and each lane swizzles its own row's offset
// (16-byte chunk c of 128-byte line l at chunk c ^ (l % 8): 8 halves a chunk)
__device__ __forceinline__ long long td_swizzled(long long o) {
  return o ^ (((o / 64) % 8) * 8);
}
template <class T>
__device__ __forceinline__ void td_mma_load_a_swizzled(unsigned (&f)[4], const T* base,
                                                       long long first, long long lda) {
  const unsigned lane = td_lane();
  td_ldmatrix_x4<false>(f, base + td_swizzled(first + (lane % 16) * lda + (lane / 16) * 8));
}
template <class T>
__device__ __forceinline__ void td_mma_load_b_swizzled(unsigned (&f)[4], const T* base,
                                                       long long first, long long ldb) {
  const unsigned lane = td_lane();
  td_ldmatrix_x4<true>(f, base + td_swizzled(first + (lane % 16) * ldb + (lane / 16) * 8));
}
template <class T>
__device__ __forceinline__ void td_mma_product(td_mma_acc& c, const unsigned (&fa)[4],
                                               const unsigned (&fb)[4]) {
  td_mma_16816<T>(c.x, fa, fb[0], fb[1]);
  td_mma_16816<T>(c.x + 4, fa, fb[2], fb[3]);
}
// wgmma: a warp's 16 x 64 slab of its warpgroup's 64 x 64 x 16 product, the 4 warps of
// the group along M. ``a`` and ``b`` are swizzled tiles as td_mma_load_*_swizzled takes
// them (buffer plus whole blocks, and the unswizzled offset of this warp's tile); the
// group's A tile starts 16 rows per warp above this warp's. Descriptors: the start
// address, LBO (unused by these layouts) and SBO 1024 bytes (8 rows of 128), layout 1
// (128-byte swizzle).
#if defined(TD_WGMMA)
__device__ __forceinline__ unsigned long long td_wgmma_descriptor(const void* p) {
  const unsigned a = td_shared_address(p);
  return (unsigned long long)((a & 0x3FFFFu) >> 4) | (1ull << 16) |
         ((unsigned long long)(1024u >> 4) << 32) | (1ull << 62);
}
template <class T>
__device__ __forceinline__ void td_wgmma_slab(td_mma_acc* c, const T* a_base, long long a_first,
                                              const T* b_base, long long b_first) {
  const unsigned warp = (unsigned)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y *
                                   threadIdx.z)) / 32u % 4u;
  const T* a = a_base + (a_first - (long long)warp * 16 * 64);
  float d[32];
  for (int i = 0; i < 32; ++i) d[i] = c[i / 8].x[i % 8];
  td_wgmma_m64n64k16<T>(d, td_wgmma_descriptor(a), td_wgmma_descriptor(b_base + b_first));
  for (int i = 0; i < 32; ++i) c[i / 8].x[i % 8] = d[i];
}
#endif
template <class P>
__device__ __forceinline__ void td_mma_store(P* p, const td_mma_acc& c, long long ldm) {
  const unsigned lane = td_lane(), row = lane / 4, col = 2 * (lane % 4);
  for (int h = 0; h < 2; ++h)
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e)
        td_mma_put(p + (row + 8 * r) * ldm + 8 * h + col + e, c.x[4 * h + 2 * r + e]);
}
"""
