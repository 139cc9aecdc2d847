"""CUDA C from a lowered GPU function: one ``__global__`` function per kernel.

A loop bound to a thread index becomes ``const long long i = threadIdx.x;`` (its guard,
if narrower than the launch, is already in the IR); shared buffers are declared at the
top of the kernel, local ones where they are allocated. Vector expressions (from
``vectorize``) are written lane by lane, except a contiguous copy of four floats (eight
halves) provably on 16 bytes, which moves as one ``float4`` (see ``_vector_aligned``).
Integer floor division and modulo use C's operators where both operands are known
non-negative, helpers otherwise; float ``max``/``min`` propagate NaN like numpy.

``generate(func, checked=True)`` writes the source for the emulator (``emulate.h``):
every buffer access checked — ``TD_AT(buf, index)`` for global buffers,
``TD_AT_ARRAY`` for local ones, ``TD_SHARED_LOAD``/``TD_SHARED_STORE`` for shared ones
(which also track races), ``TD_VEC*`` for vector accesses — each shared array with its
shadow (``TD_SHARED_STATE``) and each local array poisoned where declared.
"""
from __future__ import annotations

import math
import struct

from tensordsl.arith.facts import multiple_of
from tensordsl.errors import BuildError
from tensordsl.ir import dtype as dt
from tensordsl.ir import nodes as n
from tensordsl.ir.printer import Printer
from tensordsl.ir.visitor import Visitor, child_exprs, post_order, substitute
from tensordsl.lower.async_copies import FIRST_THREAD
from tensordsl.lower.gpu import SHARED_ALIGNMENT, shared_allocations, shared_bytes_of
from tensordsl.lower.tma import is_arch_choice

from . import tma
from .plan import HostPlan, Kernel, host_plan

_C_TYPE = {
    "float16": "half", "bfloat16": "__nv_bfloat16", "bool": "bool", "int8": "signed char", "int16": "short", "int32": "int",
    "int64": "long long", "uint8": "unsigned char", "float32": "float", "float64": "double",
}
_MATH = {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh", "fabs": "fabs",
         "pow": "pow", "floor": "floor", "ceil": "ceil", "round": "round", "erf": "erf"}
_BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "EQ": "==", "NE": "!=", "LT": "<",
           "LE": "<=", "GT": ">", "GE": ">=", "And": "&&", "Or": "||"}

PRELUDE = r"""
__device__ __forceinline__ long long td_floordiv(long long a, long long b) {
  long long q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
__device__ __forceinline__ long long td_floormod(long long a, long long b) {
  long long r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
__device__ __forceinline__ float td_maxf(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float td_minf(float a, float b) { return (a < b || a != a) ? a : b; }
__device__ __forceinline__ double td_max(double a, double b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ double td_min(double a, double b) { return (a < b || a != a) ? a : b; }
"""


# float16 values are halves: each operation is done in float and rounded back (the
# correctly rounded half result). bfloat16 is a storage type, as on the CPU backend:
# values are floats, rounded to bfloat16 when stored or cast.
_LOW = ("float16",)


_STREAMED = ("float32", "float64", "int32", "int64")


def _low(dtype: str) -> bool:
    return dt.element(dtype) in _LOW


def c_type(dtype: str) -> str:
    base = dt.element(dtype)
    t = _C_TYPE.get(base)
    if t is None:
        raise BuildError(f"the CUDA backend does not support {base}")
    return t


class _KernelWriter:
    def __init__(self, kernel: Kernel, checked: bool):
        self.k = kernel
        self.checked = checked
        self.lines: list[str] = []
        self.namer = Printer()     # its unique-name table; the C text is ours
        self.nonneg: set = set(kernel.scalars)
        self.extra_shared: list[tuple[str, str, int]] = []   # (C type, name, count)
        self.nontemporal = 0  # depth of enclosing "nontemporal" pragmas
        self.async_copy = 0   # depth of enclosing "async_copy" pragmas (cp.async)
        self.vector_reads: dict = {}   # a vector load -> the float4 it was read into
        self.upper: dict = {}          # loop var -> its largest value, where constant
        self.narrow = False            # writing an index expression in 32 bits
        self.wide = False              # ... in 64 bits (it, or a step of it, may not fit)
        self.int_vars: set = set()     # loop vars declared as int (their range fits)
        self.ranges: dict = {}         # id(expr) -> (expr, (lo, hi)): ``value_range``
        from .wmma import uses_mma
        self.mma = uses_mma(kernel.body)   # tensor cores through ldmatrix and mma.sync

    # ------------------------------------------------------------ names
    def name(self, obj, base: str) -> str:
        """A C identifier for ``obj``, unique in the kernel."""
        stem = "".join(c if c.isalnum() else "_" for c in base) or "v"
        if stem[0].isdigit():
            stem = "v" + stem
        return self.namer.name_of(obj, stem)

    def var(self, v: n.Var) -> str:
        return self.name(v, v.name)

    def buf(self, b: n.Buffer) -> str:
        return self.name(b, b.name)

    # ------------------------------------------------------------ kernel
    def write(self) -> str:
        k = self.k
        params = [f"{c_type(b.dtype)}* __restrict__ {self.buf(b)}" for b in k.buffers]
        params += [f"long long {self.var(v)}" for v in k.scalars]
        maps = tma.tensor_maps(k.body)
        head = (f'extern "C" __global__ void __launch_bounds__({k.threads}) '
                f"{k.name}({', '.join(params)}")
        if maps:    # (only where the TMA version is compiled: the host passes them then)
            head += "\n#if defined(TD_TMA)\n    , " + ", ".join(tma.map_params(self, maps)) + \
                "\n#endif\n"
        head += ") {"
        body_lines = self.lines
        self.stmt(k.body, 1)
        # over the static limit on the GPU: one dynamic array (sized at launch, after
        # cuFuncSetAttribute), each array carved from it where ptxas would place it; the
        # emulator, which has no limit, keeps them static (each with its shadow)
        dynamic = k.dynamic_shared and not self.checked
        shared, names, offset = [], [], 0
        from .wmma import WGMMA_ALIGNMENT, wgmma_buffers
        # read by wgmma, or written by the TMA: on the swizzle's period (or 128 bytes)
        aligns = {b: WGMMA_ALIGNMENT for b in wgmma_buffers(k.body, k.threads)}
        for b, need in tma.destination_alignments(k.body).items():
            aligns[b] = max(need, aligns.get(b, 0))
        if dynamic:
            align = max([_BASE_ALIGNMENT['shared'], *aligns.values()])
            shared.append(f"  extern __shared__ __align__({align}) "
                          "unsigned char td_dynamic_shared[];")
        for a in shared_allocations(k.body):
            ctype, name = c_type(a.buffer.dtype), self.buf(a.buffer)
            align = max(aligns.get(id(a.buffer), 0), _BASE_ALIGNMENT['shared'])
            if dynamic:
                if offset % align:
                    raise BuildError(f"shared array {a.buffer.name!r} of kernel {k.name}: "
                                     f"wgmma or the TMA reaches it by address, so it must "
                                     f"start on {align} bytes of the dynamic shared memory; "
                                     f"it starts at {offset}")
                shared.append(f"  {ctype}* const {name} = ({ctype}*)(td_dynamic_shared + "
                              f"{offset});")
                offset += shared_bytes_of(a)
            else:
                names.append(name)
                shared.append(f"  __shared__ __align__({align}) "
                              f"{ctype} {name}[{a.extent.value}];")
        for ctype, name, count in self.extra_shared:
            names.append(name)
            shared.append(f"  __shared__ {ctype} {name}[{count}];")
        if self.checked:   # the emulator's shadow of each array (poisoned per block)
            shared += [f"  TD_SHARED_STATE({name});" for name in names]
        return "\n".join([head] + shared + body_lines + ["}"])

    def shared_scratch(self, ctype: str, count: int) -> str:
        """A shared array for code the generator writes itself (reductions)."""
        name = self.name(object(), f"td_scratch{len(self.extra_shared)}")
        self.extra_shared.append((ctype, name, count))
        return name

    def emit(self, depth: int, text: str):
        self.lines.append("  " * depth + text)

    # ------------------------------------------------------------ statements
    def stmt(self, s, depth: int):
        getattr(self, "stmt_" + type(s).__name__)(s, depth)

    def stmt_Seq(self, s, depth):
        for x in s.stmts:
            self.stmt(x, depth)

    def stmt_For(self, s, depth):
        v = self.var(s.var)
        if s.kind == "thread_binding" and s.balance is not None:
            self.balanced_blocks(s, depth)
            return
        if isinstance(s.min, n.IntImm) and isinstance(s.extent, n.IntImm):
            self.upper[s.var] = s.min.value + s.extent.value - 1
        # (a loop's bounds are facts the cached ranges were worked out without: a copy
        # of a loop may reuse its variable with another extent)
        self.ranges.clear()
        if s.kind == "thread_binding":
            self.nonneg.add(s.var)
            self.emit(depth, "{")
            self.emit(depth + 1, f"const {self.loop_type(s.var)} {v} = {s.thread_tag};")
            self.stmt(s.body, depth + 1)
            self.emit(depth, "}")
            return
        if s.kind == "parallel":
            raise BuildError(f"loop {s.var.name!r} is parallel, a CPU loop kind; bind it to "
                             "a GPU index instead")
        if self.is_nonneg(s.min):
            self.nonneg.add(s.var)
        lo = self.expr(s.min)
        hi = self.expr(n.Add(s.min, s.extent)) if not _is_zero(s.min) else self.expr(s.extent)
        if s.kind == "unrolled":
            self.emit(depth, "#pragma unroll")
        elif NO_UNROLL in _pragmas_of(s.body):
            self.emit(depth, "#pragma unroll 1")
        self.emit(depth, f"for ({self.loop_type(s.var)} {v} = {lo}; {v} < {hi}; ++{v}) {{")
        self.stmt(s.body, depth + 1)
        self.emit(depth, "}")

    def loop_type(self, var: n.Var) -> str:
        """``int`` for a loop (or thread index) whose values fit 32 bits with room to
        spare, so index arithmetic on it can stay 32-bit (``narrow``)."""
        if var in self.nonneg and self.upper.get(var, math.inf) < NARROW_LIMIT:
            self.int_vars.add(var)
            return "int"
        return "long long"

    def balanced_blocks(self, s: n.For, depth: int):
        """A loop bound to ``blockIdx`` with a ``balance`` weight W: the launch has as
        many blocks as iterations, and block ``b`` runs the iterations ``[lower_bound(
        W0 + span * b / blocks), lower_bound(W0 + span * (b + 1) / blocks))`` as a loop
        (the last block up to the end), where ``lower_bound(t)`` is the first iteration
        whose weight reaches ``t`` (a binary search), ``W0`` the weight of the first
        iteration and ``span`` that of the end less ``W0``: shares that tile the range
        whatever the weights, each an equal part of the weight (TACO's nonzero split,
        as ``parallel_for`` on the CPU). Every thread of the block computes the same
        share, so barriers in the body are reached by all."""
        tag = s.thread_tag
        if not tag.startswith("blockIdx"):
            raise BuildError(f"loop {s.var.name!r}: only a loop bound to blockIdx can be "
                             f"shared by weight, not one bound to {tag}")
        if shared_allocations(s.body):
            raise BuildError(f"loop {s.var.name!r} is shared among the blocks by weight: "
                             "its body runs once per iteration of the block's share, and a "
                             "shared stage inside it would need a barrier between them")
        if self.is_nonneg(s.min):
            self.nonneg.add(s.var)
        v = self.var(s.var)
        temp = {k: self.name(object(), f"td_{v}_{k}") for k in
                ("lo", "hi", "w0", "span", "first", "last", "target", "upper", "mid", "w")}
        d = depth + 1

        def weight(into: str, at: str, indent: int):
            """``into = W(at)``: the weight expression with the loop variable at ``at``."""
            self.emit(indent, "{")
            self.emit(indent + 1, f"const long long {v} = {at};")
            self.emit(indent + 1, f"{into} = (long long)({self.expr(s.balance)});")
            self.emit(indent, "}")

        block, blocks = f"(long long){tag}", f"(long long){tag.replace('blockIdx', 'gridDim')}"
        self.emit(depth, "{")
        self.emit(d, f"const long long {temp['lo']} = {self.expr(s.min)};")
        self.emit(d, f"const long long {temp['hi']} = {temp['lo']} + {self.expr(s.extent)};")
        self.emit(d, f"long long {temp['w0']}, {temp['span']};")
        weight(temp["w0"], temp["lo"], d)
        weight(temp["span"], temp["hi"], d)
        self.emit(d, f"{temp['span']} -= {temp['w0']};")
        for bound, share in ((temp["first"], block), (temp["last"], f"({block} + 1)")):
            self.emit(d, f"long long {bound} = {temp['lo']};")
            self.emit(d, "{")
            self.emit(d + 1, f"const long long {temp['target']} = {temp['w0']} + "
                             f"{temp['span']} * {share} / {blocks};")
            self.emit(d + 1, f"long long {temp['upper']} = {temp['hi']};")
            self.emit(d + 1, f"while ({bound} < {temp['upper']}) {{")
            self.emit(d + 2, f"const long long {temp['mid']} = {bound} + "
                             f"({temp['upper']} - {bound}) / 2;")
            self.emit(d + 2, f"long long {temp['w']};")
            weight(temp["w"], temp["mid"], d + 2)
            self.emit(d + 2, f"if ({temp['w']} < {temp['target']}) {bound} = {temp['mid']} + 1; "
                             f"else {temp['upper']} = {temp['mid']};")
            self.emit(d + 1, "}")
            self.emit(d, "}")
        self.emit(d, f"if ({block} == {blocks} - 1) {temp['last']} = {temp['hi']};")
        self.emit(d, f"for (long long {v} = {temp['first']}; {v} < {temp['last']}; ++{v}) {{")
        self.stmt(s.body, d + 1)
        self.emit(d, "}")
        self.emit(depth, "}")

    def stmt_LetStmt(self, s, depth):
        if self.is_nonneg(s.value):
            self.nonneg.add(s.var)
        self.emit(depth, "{")
        self.emit(depth + 1, f"const {c_type(s.var.dtype)} {self.var(s.var)} = "
                             f"{self.expr(s.value)};")
        self.stmt(s.body, depth + 1)
        self.emit(depth, "}")

    def stmt_IfThenElse(self, s, depth):
        if is_arch_choice(s):
            self.emit(0, f"#if defined({tma.TMA_MACRO})")
            self.stmt(s.then_case, depth)
            self.emit(0, "#else")
            self.stmt(s.else_case, depth)
            self.emit(0, "#endif")
            return
        self.emit(depth, f"if ({self.cond(s.condition)}) {{")
        self.stmt(s.then_case, depth + 1)
        if s.else_case is not None:
            self.emit(depth, "} else {")
            self.stmt(s.else_case, depth + 1)
        self.emit(depth, "}")

    def stmt_While(self, s, depth):
        self.emit(depth, f"while ({self.cond(s.condition)}) {{")
        self.stmt(s.body, depth + 1)
        self.emit(depth, "}")

    def stmt_Allocate(self, s, depth):
        b = s.buffer
        if b.scope == "local":
            self.emit(depth, "{")
            self.emit(depth + 1, f"__align__({_BASE_ALIGNMENT['local']}) {c_type(b.dtype)} "
                                 f"{self.buf(b)}[{s.extent.value}];")
            if self.checked:
                self.emit(depth + 1, f"TD_POISON({self.buf(b)});")
            self.stmt(s.body, depth + 1)
            self.emit(depth, "}")
        elif b.scope == "shared":
            self.stmt(s.body, depth)     # declared at the top of the kernel
        elif b.scope == "wmma.accumulator":
            count = s.extent.value // 256
            self.emit(depth, "{")
            fragment = "td_mma_acc" if self.mma else \
                "nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>"
            self.emit(depth + 1, f"{fragment} {self.buf(b)}[{count}];")
            self.stmt(s.body, depth + 1)
            self.emit(depth, "}")
        else:
            raise BuildError(f"buffer {b.name!r}: a {b.scope} allocation inside a kernel")

    def stmt_Store(self, s, depth):
        lanes = dt.lanes(s.value.dtype)
        if self.async_copy and self.cp_async(s, depth):
            return
        if lanes == 1:
            line = self.assign(s.buffer, self.expr(s.index), self.expr(s.value))
            if s.predicate is not None:
                line = f"if ({self.cond(s.predicate)}) {line}"
            self.emit(depth, line)
            return
        if self.float4_copy(s, depth) or self.float4_store(s, depth):
            return
        for k in range(lanes):
            line = self.assign(s.buffer, self.lane(s.index, k), self.lane(s.value, k))
            if s.predicate is not None:
                line = f"if ({self.lane(s.predicate, k)}) {line}"
            self.emit(depth, line)

    def assign(self, buf: n.Buffer, index: str, value: str) -> str:
        """``buf[index] = value;`` — as a cache-streaming store (``__stcs``: evict first)
        inside a ``nontemporal`` pragma, for the types every CUDA version overloads."""
        target = self.at(buf, index, "write")
        if self.nontemporal and buf.scope == "global" and dt.element(buf.dtype) in _STREAMED:
            return f"__stcs(&{target}, ({c_type(buf.dtype)})({value}));"
        return f"{target} = {self.stored(buf, value)};"

    def stored(self, buf: n.Buffer, value: str) -> str:
        if dt.element(buf.dtype) == "bfloat16":
            return f"((__nv_bfloat16)({value}))"
        return value

    def float4_copy(self, s, depth) -> bool:
        """A contiguous move of 16 bytes (four floats, eight halves) as one ``float4``
        access where both ends are provably 16-byte aligned (else the caller writes it
        lane by lane); a guard that is the same for all lanes stays a guard."""
        v = s.value
        lanes = dt.lanes(v.dtype)
        uniform = (lambda p: p is None or isinstance(p, n.Broadcast))
        if not (lanes * max(1, dt.bits(v.dtype) // 8) == 16 and lanes in (4, 8)
                and isinstance(v, n.Load) and v.buffer.dtype == s.buffer.dtype
                and uniform(s.predicate) and uniform(v.predicate)
                and _vector_aligned(s.buffer, s.index, lanes)
                and _vector_aligned(v.buffer, v.index, lanes)):
            return False
        dst = self.vector_at("float4", s.buffer, self.expr(s.index.base), "write")
        src = self.vector_at("float4", v.buffer, self.expr(v.index.base), "read")
        if s.predicate is not None:
            self.emit(depth, f"if ({self.cond(s.predicate.value)}) {{")
            depth += 1
        if v.predicate is None:
            self.emit(depth, f"{dst} = {src};")
        else:
            self.emit(depth, f"{dst} = ({self.cond(v.predicate.value)}) ? {src} : "
                             "make_float4(0.0f, 0.0f, 0.0f, 0.0f);")
        if s.predicate is not None:
            self.emit(depth - 1, "}")
        return True

    def float4_store(self, s, depth) -> bool:
        """A computed vector of four floats stored to global memory provably on 16 bytes
        (an elementwise kernel's thread, ``schedules/cuda/generic.py``): its aligned
        global loads read as one ``float4`` each, the lanes computed from their
        components, the result written as one ``float4`` — LDG.128/STG.128 instead of
        four accesses each."""
        if not (dt.lanes(s.value.dtype) == 4 and s.buffer.dtype == "float32"
                and s.buffer.scope == "global" and s.predicate is None
                and _vector_aligned(s.buffer, s.index, 4)):
            return False
        reads = {}    # (buffer, first element) -> the float4's name (a repeated read once)
        self.emit(depth, "{")
        for e in _unconditional_loads(s.value):
            if (e.predicate is None and e.buffer.scope == "global"
                    and e.buffer.dtype == "float32" and dt.lanes(e.dtype) == 4
                    and _vector_aligned(e.buffer, e.index, 4)
                    and self.vector_read_key(e) not in reads):
                name = reads[self.vector_read_key(e)] = self.name(e, f"{self.buf(e.buffer)}_x4")
                source = self.vector_at("float4", e.buffer, self.expr(e.index.base), "read")
                self.emit(depth + 1, f"const float4 {name} = {source};")
        self.vector_reads = reads
        try:
            lanes = [self.lane(s.value, k) for k in range(4)]
        finally:
            self.vector_reads = {}
        target = self.vector_at("float4", s.buffer, self.expr(s.index.base), "write")
        value = f"make_float4({', '.join(lanes)})"
        # (streaming: CUDA overloads __stcs for float4 too)
        self.emit(depth + 1, f"__stcs(&{target}, {value});" if self.nontemporal
                  else f"{target} = {value};")
        self.emit(depth, "}")
        return True

    def vector_read_key(self, load: n.Load) -> tuple:
        return self.buf(load.buffer), self.expr(load.index.base)

    def cp_async(self, s, depth) -> bool:
        """A copy of 4, 8 or 16 bytes from a global buffer to a shared one, inside an
        ``async_copy`` pragma (``lower/async_copies.py``), as one ``cp.async`` whose
        source size is 0 (the destination zero-filled) where the load's guard fails.
        Anything else (a conversion, 2-byte elements lane by lane, an unaligned vector)
        is left to the caller as a plain store: the pipeline's wait and barrier order it
        as well. A padded read (``select(c, x[i], 0)``) is the load guarded by ``c``: its
        copy zero-fills where ``c`` fails (an implicit GEMM's gather of a padded input)."""
        v = _zero_filled_load(s.value)
        lanes = dt.lanes(v.dtype)
        size = max(1, dt.bits(v.dtype) // 8)
        if not (isinstance(v, n.Load) and v.buffer.scope == "global"
                and s.buffer.scope == "shared" and v.buffer.dtype == s.buffer.dtype
                and size in (2, 4, 8)):
            return False
        uniform = (lambda p: p is None or isinstance(p, n.Broadcast))
        whole = (lanes == 1 and size >= 4) or (
            lanes * size in (4, 8, 16) and uniform(s.predicate) and uniform(v.predicate)
            and _vector_aligned(s.buffer, s.index, lanes, lanes * size)
            and _vector_aligned(v.buffer, v.index, lanes, lanes * size))
        if size == 2 and not whole:
            return False   # (cp.async copies 4 bytes at least: halves lane by lane can't)
        if whole:       # one copy of the whole vector (or the scalar)
            scalar = (lambda p: p.value if isinstance(p, n.Broadcast) else p)
            first = (lambda idx: self.expr(idx.base if lanes > 1 else idx))
            self.one_cp_async(s.buffer, first(s.index), v.buffer, first(v.index), lanes,
                              size, None if s.predicate is None else scalar(s.predicate),
                              None if v.predicate is None else scalar(v.predicate), depth)
            return True
        for k in range(lanes):   # lane by lane: each with its own guards
            self.one_cp_async(s.buffer, self.lane(s.index, k), v.buffer, self.lane(v.index, k),
                              1, size, s.predicate, v.predicate, depth, lane=k)
        return True

    def one_cp_async(self, dst_buf, di: str, src_buf, si: str, lanes: int, size: int,
                     store_guard, load_guard, depth: int, lane: int | None = None):
        guard = (lambda p: self.cond(p) if lane is None else self.lane(p, lane))
        dst, src = self.buf(dst_buf), self.buf(src_buf)
        valid = guard(load_guard) if load_guard is not None else "true"
        if store_guard is not None:
            self.emit(depth, f"if ({guard(store_guard)}) {{")
            depth += 1
        if self.checked:
            self.emit(depth, f"TD_CP_ASYNC({dst}, {di}, {src}, {si}, {lanes}, {valid});")
        else:
            self.emit(depth, f"td_cp_async<{lanes * size}>(&{dst}[{di}], {src} + ({si}), "
                             f"{valid});")
        if store_guard is not None:
            self.emit(depth - 1, "}")

    def stmt_Evaluate(self, s, depth):
        if isinstance(s.value, n.Call) and s.value.name == "prefetch":
            return  # the GPU's caches need no hint here
        if isinstance(s.value, n.Call) and s.value.name == "cp_async_commit":
            self.emit(depth, "TD_CP_ASYNC_COMMIT();" if self.checked else "td_cp_async_commit();")
            return
        if isinstance(s.value, n.Call) and s.value.name == "cp_async_wait":
            pending = s.value.args[0].value
            self.emit(depth, f"TD_CP_ASYNC_WAIT({pending});" if self.checked
                      else f"td_cp_async_wait<{pending}>();")
            return
        if isinstance(s.value, n.Call) and s.value.name.startswith("mbarrier_"):
            tma.write_mbarrier(self, s.value, depth)
            return
        if isinstance(s.value, n.Call) and s.value.name.startswith("wmma."):
            from .wmma import write_wmma   # (wmma.py uses this module's c_type)
            write_wmma(self, s.value, depth)
            return
        self.emit(depth, f"(void)({self.expr(s.value)});")

    def stmt_Pragma(self, s, depth):
        streaming, copying = s.key == "nontemporal", s.key == "async_copy"
        self.nontemporal += streaming
        self.async_copy += copying
        self.stmt(s.body, depth)
        self.nontemporal -= streaming
        self.async_copy -= copying

    def stmt_TmaLoad(self, s, depth):
        tma.write_tma_load(self, s, depth)

    def stmt_Barrier(self, s, depth):
        self.emit(depth, "__syncthreads();")

    def stmt_AllReduce(self, s, depth):
        from .allreduce import write_allreduce
        write_allreduce(self, s, depth)

    # ------------------------------------------------------------ expressions
    def at(self, buf: n.Buffer, index: str, access: str = "read") -> str:
        """``buf[index]``; for the emulator a checked access. ``access``: "read",
        "write" (shared memory tracks both, for races) or "address" (the first element
        of a tile, which the tile operation checks and tracks itself)."""
        name = self.buf(buf)
        if not self.checked:
            return f"{name}[{index}]"
        if buf.scope in ("global", "workspace"):
            return f"TD_AT({name}, {index})"
        if buf.scope == "shared" and access != "address":
            return self.shared_at(name, index, access)
        return f"TD_AT_ARRAY({name}, {index})"

    def shared_at(self, name: str, index: str, access: str) -> str:
        """An element of a shared array (``name``: its C name), read or written."""
        if not self.checked:
            return f"{name}[{index}]"
        macro = "TD_SHARED_STORE" if access == "write" else "TD_SHARED_LOAD"
        return f"{macro}({name}, {index})"

    def vector_at(self, vtype: str, buf: n.Buffer, index: str, access: str) -> str:
        """The ``vtype`` (``float4``) starting at ``buf[index]``; for the emulator checked
        in every element and for alignment."""
        name = self.buf(buf)
        if not self.checked:
            const = "const " if access == "read" else ""
            return f"*({const}{vtype}*)(&{name}[{index}])"
        if buf.scope == "global":
            return f"TD_VEC({vtype}, {name}, {index})"
        if buf.scope == "shared":
            macro = "TD_VEC_SHARED_STORE" if access == "write" else "TD_VEC_SHARED_LOAD"
            return f"{macro}({vtype}, {name}, {index})"
        return f"TD_VEC_ARRAY({vtype}, {name}, {index})"

    def cond(self, e) -> str:
        if dt.lanes(e.dtype) != 1:
            raise BuildError(f"a vector condition {e} reached the CUDA code generator")
        text = self.expr(e)
        return text[1:-1] if text.startswith("(") and text.endswith(")") else text

    def expr(self, e) -> str:
        if dt.lanes(e.dtype) != 1 and not isinstance(e, n.Call):
            raise BuildError(f"a vector expression {e} in a scalar context")
        return self._expr(e, None)

    def lane(self, e, k: int) -> str:
        return self._expr(e, k)

    def _expr(self, e, lane):
        if not (self.narrow or self.wide) and dt.element(e.dtype) == "int64":
            # index arithmetic whose every step fits 32 bits is written in 32 bits:
            # half the instructions of 64-bit adds and multiplies (2 each, IMAD.WIDE
            # for a product), and divisions by constants as one multiply-high. The
            # outermost integer expression decides for all of it: a part in 32 bits
            # inside a 64-bit whole would overflow before it is widened
            mode = "narrow" if self.fits_narrow(e) else "wide"
            setattr(self, mode, True)
            try:
                return self._expr(e, lane)
            finally:
                setattr(self, mode, False)
        method = getattr(self, "e_" + type(e).__name__, None)
        if method is None:
            if type(e).__name__ in _BINARY:
                op = _BINARY[type(e).__name__]
                if _low(e.a.dtype):
                    text = f"({self.as_float(e.a, lane)} {op} {self.as_float(e.b, lane)})"
                    return self.round_low(e.dtype, text)
                return f"({self._expr(e.a, lane)} {op} {self._expr(e.b, lane)})"
            raise BuildError(f"the CUDA code generator cannot write {type(e).__name__}")
        return method(e, lane)

    def e_IntImm(self, e, lane):
        if e.dtype == "bool":
            return "true" if e.value else "false"
        if e.dtype == "int64":
            return (f"({e.value})" if e.value < 0 else str(e.value)) if self.narrow \
                else f"{e.value}LL"
        return f"(({c_type(e.dtype)}){e.value})"

    def e_FloatImm(self, e, lane):
        v = e.value
        if _low(e.dtype):
            return self.round_low(e.dtype, self.e_FloatImm(n.FloatImm("float32", v), lane))
        if dt.element(e.dtype) in ("float32", "bfloat16"):
            if math.isfinite(v):
                return f"{v!r}f" if "e" in repr(v) or "." in repr(v) else f"{v!r}.0f"
            bits = struct.unpack("<I", struct.pack("<f", v))[0]
            return f"__int_as_float(0x{bits:08x})"
        if math.isfinite(v):
            return repr(v) if ("e" in repr(v) or "." in repr(v)) else f"{v!r}.0"
        bits = struct.unpack("<q", struct.pack("<d", v))[0]
        return f"__longlong_as_double({bits}LL)"

    def e_Var(self, e, lane):
        if self.narrow and e.dtype == "int64" and e not in self.int_vars:
            return f"((int){self.var(e)})"
        if self.wide and e in self.int_vars:
            return f"((long long){self.var(e)})"
        return self.var(e)

    def as_float(self, e, lane) -> str:
        """A 16-bit float operand, widened: half and bfloat16 arithmetic is done in
        float and rounded back, which gives the correctly rounded 16-bit result."""
        text = self._expr(e, lane)
        return f"((float){text})" if _low(e.dtype) else text

    def round_low(self, dtype: str, text: str) -> str:
        return f"(({c_type(dtype)})({text}))" if _low(dtype) else text

    def e_Div(self, e, lane):
        if _low(e.dtype):
            return self.round_low(e.dtype, f"({self.as_float(e.a, lane)} / "
                                           f"{self.as_float(e.b, lane)})")
        return f"({self._expr(e.a, lane)} / {self._expr(e.b, lane)})"

    def e_FloorDiv(self, e, lane):
        return self._floor(e, lane, "/", "td_floordiv")

    def e_FloorMod(self, e, lane):
        return self._floor(e, lane, "%", "td_floormod")

    def _floor(self, e, lane, op, helper):
        a, b = self._expr(e.a, lane), self._expr(e.b, lane)
        if dt.is_float(e.dtype):
            if _low(e.dtype):
                a, b = self.as_float(e.a, lane), self.as_float(e.b, lane)
            fl = "floor" if dt.element(e.dtype) == "float64" else "floorf"
            text = f"{fl}({a} / {b})" if op == "/" else f"({a} - {fl}({a} / {b}) * {b})"
            return self.round_low(e.dtype, text)
        if self.is_nonneg(e.a) and self.is_nonneg(e.b):
            if (e.dtype == "int64" and isinstance(e.b, n.IntImm)
                    and e.b.value & (e.b.value - 1) and e.b.value < 2 ** 31
                    and self.value_range(e.a)[1] < 2 ** 32):
                # by a constant that is no power of two (a pipeline's 3 stages), of a
                # value that fits 32 bits: a 32-bit multiply by the reciprocal, not the
                # 64-bit one with its division routine for large values
                return f"(({self.int_type(e.dtype)})((unsigned){a} {op} {e.b.value}u))"
            return f"({a} {op} {b})"
        return f"(({self.int_type(e.dtype)}){helper}({a}, {b}))"

    def int_type(self, dtype: str) -> str:
        return "int" if self.narrow and dtype == "int64" else c_type(dtype)

    def e_Min(self, e, lane):
        return self._minmax(e, lane, "min")

    def e_Max(self, e, lane):
        return self._minmax(e, lane, "max")

    def _minmax(self, e, lane, which):
        a, b = self._expr(e.a, lane), self._expr(e.b, lane)
        base = dt.element(e.dtype)
        if base in _LOW:
            return self.round_low(e.dtype, f"td_{which}f({self.as_float(e.a, lane)}, "
                                           f"{self.as_float(e.b, lane)})")
        if base in ("float32", "bfloat16"):
            return f"td_{which}f({a}, {b})"
        if base == "float64":
            return f"td_{which}({a}, {b})"
        op = "<" if which == "min" else ">"
        return f"(({a}) {op} ({b}) ? ({a}) : ({b}))"

    def e_Not(self, e, lane):
        return f"(!{self._expr(e.a, lane)})"

    def e_Select(self, e, lane):
        return (f"({self._expr(e.condition, lane)} ? {self._expr(e.true_value, lane)} : "
                f"{self._expr(e.false_value, lane)})")

    def e_Cast(self, e, lane):
        if dt.element(e.dtype) == "bfloat16":
            return f"((float)((__nv_bfloat16)((float){self._expr(e.value, lane)})))"
        if dt.element(e.value.dtype) == "bfloat16":
            return f"(({c_type(e.dtype)}){self._expr(e.value, lane)})"
        if _low(e.dtype) or _low(e.value.dtype):
            # through float: the 16-bit types convert to and from float only
            return f"(({c_type(e.dtype)})((float){self._expr(e.value, lane)}))"
        return f"(({self.int_type(e.dtype)}){self._expr(e.value, lane)})"

    def e_Call(self, e, lane):
        if e.name == "if_then_else":
            c, t, f = e.args
            return f"({self._expr(c, lane)} ? {self._expr(t, lane)} : {self._expr(f, lane)})"
        if e.name == "bitwise_xor":
            a, b = e.args
            return f"({self._expr(a, lane)} ^ {self._expr(b, lane)})"
        if e.name == FIRST_THREAD:
            return "(threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0)"
        if e.name == "vector_any":
            m = e.args[0]
            return "(" + " || ".join(self._expr(m, k) for k in range(dt.lanes(m.dtype))) + ")"
        if e.name == "vector_sum":
            v = e.args[0]
            return "(" + " + ".join(self._expr(v, k) for k in range(dt.lanes(v.dtype))) + ")"
        if e.name == "call_extern":
            # a device function CUDA has (__expf, __shfl_sync, ...): NVRTC resolves it
            args = [f"(&{self.at(a.args[0].buffer, self._expr(a.args[0].index, None))})"
                    if isinstance(a, n.Call) and a.name == "address_of"
                    else self._expr(a, lane) for a in e.args[1:]]
            return f"{e.args[0].value}({', '.join(args)})"
        fn = _MATH.get(e.name)
        if fn is None:
            raise BuildError(f"the CUDA code generator has no intrinsic {e.name!r}")
        base = dt.element(e.dtype)
        if base == "float64":
            return f"{fn}({', '.join(self._expr(a, lane) for a in e.args)})"
        if base not in ("float32", "bfloat16") + _LOW:
            raise BuildError(f"{e.name} on {base}: expected a float type")
        args = ", ".join(self.as_float(a, lane) for a in e.args)
        return self.round_low(e.dtype, f"{fn}f({args})")

    def e_Let(self, e, lane):
        return self._expr(substitute(e.body, {e.var: e.value}), lane)

    def e_Ramp(self, e, lane):
        if lane is None:
            raise BuildError("a vector index in a scalar context")
        k = str(lane) if self.narrow else f"{lane}LL"
        return f"({self._expr(e.base, None)} + {k} * {self._expr(e.stride, None)})"

    def e_Broadcast(self, e, lane):
        return self._expr(e.value, None)

    def e_Load(self, e, lane):
        if lane is not None and self.vector_reads and isinstance(e.index, n.Ramp):
            name = self.vector_reads.get(self.vector_read_key(e))
            if name is not None:
                return f"{name}.{'xyzw'[lane]}"
        idx = self._expr(e.index, lane if dt.lanes(e.index.dtype) > 1 else None)
        text = self.at(e.buffer, idx)
        if dt.element(e.buffer.dtype) == "bfloat16":
            text = f"((float){text})"
        if e.predicate is not None:
            return f"({self._expr(e.predicate, lane)} ? {text} : ({c_type(e.dtype)})0)"
        return text

    # ------------------------------------------------------------ facts
    def fits_narrow(self, e) -> bool:
        """Whether every 64-bit integer step in ``e`` (itself included, at any depth:
        under a cast or a comparison too) stays within +-NARROW_LIMIT."""
        if dt.element(e.dtype) == "int64":
            lo, hi = self.value_range(e)
            if not (-NARROW_LIMIT < lo and hi < NARROW_LIMIT):
                return False
        return all(self.fits_narrow(c) for c in child_exprs(e))

    def value_range(self, e) -> tuple:
        """(lowest, highest) value of an integer expression from its loops' constant
        bounds ((-inf, inf) where unknown); of a vector, over its lanes."""
        hit = self.ranges.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        r = self._value_range(e)
        self.ranges[id(e)] = (e, r)
        return r

    def _value_range(self, e) -> tuple:
        inf = math.inf
        if isinstance(e, n.IntImm):
            return (e.value, e.value)
        if isinstance(e, n.Var):
            return (0 if e in self.nonneg else -inf, self.upper.get(e, inf))
        if isinstance(e, n.Broadcast):
            return self.value_range(e.value)
        if isinstance(e, (n.Cast, n.Ramp)) and not dt.is_float(e.dtype):
            if isinstance(e, n.Cast):
                return self.value_range(e.value) if not dt.is_float(e.value.dtype) \
                    else (-inf, inf)
            (blo, bhi), (slo, shi) = self.value_range(e.base), self.value_range(e.stride)
            last = e.lanes - 1
            return (blo + min(0, slo * last), bhi + max(0, shi * last))
        if isinstance(e, n.Call) and e.name == "bitwise_xor":
            (alo, ahi), (blo, bhi) = (self.value_range(a) for a in e.args)
            if min(alo, blo) < 0 or not math.isfinite(max(ahi, bhi)):
                return (-inf, inf)
            return (0, (1 << int(max(ahi, bhi)).bit_length()) - 1)
        if not isinstance(e, (n.Add, n.Sub, n.Mul, n.FloorDiv, n.FloorMod, n.Min, n.Max)):
            return (-inf, inf)
        (alo, ahi), (blo, bhi) = self.value_range(e.a), self.value_range(e.b)
        if isinstance(e, n.Add):
            return (alo + blo, ahi + bhi)
        if isinstance(e, n.Sub):
            return (alo - bhi, ahi - blo)
        if isinstance(e, n.Min):
            return (min(alo, blo), min(ahi, bhi))
        if isinstance(e, n.Max):
            return (max(alo, blo), max(ahi, bhi))
        if isinstance(e, n.Mul):
            products = [x * y for x in (alo, ahi) for y in (blo, bhi)]
            if any(math.isnan(v) for v in products):      # 0 * inf
                return (-inf, inf)
            return (min(products), max(products))
        if not (isinstance(e.b, n.IntImm) and e.b.value > 0):
            return (-inf, inf)
        c = e.b.value
        if isinstance(e, n.FloorDiv):
            return (alo // c if math.isfinite(alo) else -inf,
                    ahi // c if math.isfinite(ahi) else inf)
        return (0, c - 1)

    def is_nonneg(self, e) -> bool:
        if isinstance(e, n.IntImm):
            return e.value >= 0
        if isinstance(e, n.Var):
            return e in self.nonneg
        if isinstance(e, (n.Add, n.Mul, n.Min, n.Max)):
            return self.is_nonneg(e.a) and self.is_nonneg(e.b)
        if isinstance(e, (n.FloorDiv, n.FloorMod)):
            return self.is_nonneg(e.a) and isinstance(e.b, n.IntImm) and e.b.value > 0
        if isinstance(e, n.Ramp):
            return self.is_nonneg(e.base) and self.is_nonneg(e.stride)
        if isinstance(e, n.Broadcast):
            return self.is_nonneg(e.value)
        return False


def headers_needed(func: n.PrimFunc) -> list[str]:
    """The CUDA headers the source includes (NVRTC finds them in its bundled set)."""
    dtypes, wmma = set(), False
    for node in post_order(func.body):
        d = getattr(node, "dtype", None)
        if isinstance(d, str) and d != "handle":      # (a name; an address)
            dtypes.add(dt.element(d))
        buf = getattr(node, "buffer", None)
        if buf is not None:
            dtypes.add(dt.element(buf.dtype))
        wmma = wmma or (isinstance(node, n.Call) and node.name.startswith("wmma."))
    out = []
    if "float16" in dtypes:
        out.append("cuda_fp16.h")
    if "bfloat16" in dtypes:
        out.append("cuda_bf16.h")
    if wmma:
        out.append("mma.h")
    return out


def _is_zero(e) -> bool:
    return isinstance(e, n.IntImm) and e.value == 0


# Where each scope's buffers start, in bytes: global arrays are checked at every call
# (runtime.py, on the device and in the emulator), shared and local ones are declared so.
_BASE_ALIGNMENT = {"global": 16, "shared": SHARED_ALIGNMENT, "local": 16}


class _UnconditionalLoads(Visitor):
    """The loads an expression always evaluates: not those under the arms of an
    ``if_then_else`` or a select, or the second operand of ``&&``/``||`` (the C written
    lane by lane evaluates those only where a guard holds, and passes may lean on
    that: a load there may lie outside its buffer elsewhere)."""

    def __init__(self):
        self.loads: list = []

    def visit_Load(self, e):
        self.loads.append(e)
        self.generic_visit(e)

    def visit_Call(self, e):
        if e.name == "if_then_else":
            self.visit(e.args[0])
        else:
            self.generic_visit(e)

    def visit_Select(self, e):
        self.visit(e.condition)

    def visit_And(self, e):
        self.visit(e.a)

    visit_Or = visit_And


def _unconditional_loads(e) -> list:
    walk = _UnconditionalLoads()
    walk.visit(e)
    return walk.loads


# ``s[T].pragma(ax, NO_UNROLL)``: the loop stays rolled (nvcc would otherwise unroll a
# short constant loop, and a block's gathers all in flight can cost more registers
# than the occupancy the kernel is compiled for allows)
NO_UNROLL = "no_unroll"

# index arithmetic stays in 32 bits where every step is provably smaller than this in
# magnitude (an int holds 2^31; the bounds come from the loops' and launch's extents,
# so a step proved under 2^30 cannot overflow whatever thread computes it)
NARROW_LIMIT = 2 ** 30


def _pragmas_of(body) -> list:
    """The keys of the pragmas wrapping a loop's body (a loop's pragmas, outermost
    first)."""
    keys = []
    while isinstance(body, n.Pragma):
        keys.append(body.key)
        body = body.body
    return keys


def _zero_filled_load(e):
    """``select(c, load, 0)`` (or a lazy ``if_then_else``) as the load guarded by ``c``
    too: a guarded load reads zero where its guard fails. Anything else unchanged."""
    if isinstance(e, n.Select):
        cond, loaded, other = e.condition, e.true_value, e.false_value
    elif isinstance(e, n.Call) and e.name == "if_then_else":
        cond, loaded, other = e.args
    else:
        return e
    zero = other.value if isinstance(other, n.Broadcast) else other
    if not (isinstance(loaded, n.Load) and isinstance(zero, (n.IntImm, n.FloatImm))
            and zero.value == 0 and math.copysign(1.0, zero.value) > 0):   # (not -0.0)
        return e
    lanes = dt.lanes(loaded.dtype)
    if dt.lanes(cond.dtype) != lanes:        # one condition for every lane
        cond = n.Broadcast(cond, lanes)
    return n.Load(loaded.dtype, loaded.buffer, loaded.index,
                  _both(cond, loaded.predicate))


def _both(a, b):
    """``a && b`` where ``b`` may be absent or the same as ``a``; of two broadcasts, the
    broadcast of one condition (a guard the same for every lane stays recognizable)."""
    from tensordsl.arith.simplify import Simplifier
    keys = Simplifier()
    if b is None or keys.key(a) == keys.key(b):
        return a
    if isinstance(a, n.Broadcast) and isinstance(b, n.Broadcast):
        return n.Broadcast(n.And(a.value, b.value), a.lanes)
    return n.And(a, b)


def _vector_aligned(buf: n.Buffer, index, lanes: int, nbytes: int = 16) -> bool:
    """Whether ``buf[index]``, a ramp of ``lanes`` elements making ``nbytes`` bytes, lies
    on ``nbytes``: the buffer starts on that and the first element is a multiple of
    ``lanes`` (a storage_align'ed row stride or an odd offset that breaks it falls back)."""
    return (_BASE_ALIGNMENT.get(buf.scope, 1) % nbytes == 0
            and isinstance(index, n.Ramp) and isinstance(index.stride, n.IntImm)
            and index.stride.value == 1 and index.lanes == lanes
            and multiple_of(index.base, lanes))


# cp.async (sm_80 and later; a plain copy before): ``valid`` false copies no byte and
# fills the destination with zeros (the source size operand is 0).
ASYNC_PRELUDE = r"""
template <int N> __device__ __forceinline__ void td_cp_async(void* dst, const void* src,
                                                             bool valid) {
#if __CUDA_ARCH__ >= 800
  const unsigned to = (unsigned)__cvta_generic_to_shared(dst);
  if (N == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                 :: "r"(to), "l"(src), "r"(valid ? 16 : 0) : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;"
                 :: "r"(to), "l"(src), "n"(N), "r"(valid ? N : 0) : "memory");
#else
  for (int b = 0; b < N; ++b)
    ((char*)dst)[b] = valid ? ((const char*)src)[b] : 0;
#endif
}
__device__ __forceinline__ void td_cp_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void td_cp_async_wait() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory");
#endif
}
"""


def _uses_async_copies(func: n.PrimFunc) -> bool:
    return any(isinstance(node, n.Pragma) and node.key == "async_copy"
               for node in post_order(func.body))


def generate(func: n.PrimFunc, checked: bool = False, plan: HostPlan | None = None,
             arch: str | None = None) -> str:
    """The CUDA C translation unit of ``func`` (every kernel of its host plan). The GPU's
    source is the same for every architecture (``#if`` selects); the emulator's is told
    ``arch``: on sm_90a it runs the wgmma path (``TD_WGMMA``), as the GPU does."""
    plan = plan or host_plan(func)
    parts = [f"// generated by tensordsl from {func.name}"]
    if checked and arch == "sm_90a":
        parts.append("#define TD_WGMMA 1")
    if checked and tma.compiled_for(arch):
        parts.append(f"#define {tma.TMA_MACRO} 1")
    if not checked:   # the emulator brings its own 16-bit types
        parts += [f"#include <{h}>" for h in headers_needed(func)]
    parts.append(PRELUDE.strip())
    if not checked and _uses_async_copies(func):   # (the emulator's are in emulate_async.h)
        parts.append(ASYNC_PRELUDE.strip())
    ranks = [len(m.box) for kernel in plan.kernels for m in tma.tensor_maps(kernel.body)]
    if ranks and not checked:                         # (and in emulate_tma.h)
        parts.append(tma.prelude(ranks))
    from .wmma import MMA_HELPERS, MMA_PRIMITIVES, uses_mma
    if any(uses_mma(kernel.body) for kernel in plan.kernels):
        if not checked:   # (the emulator's are in emulate_mma.h)
            parts.append(MMA_PRIMITIVES.strip())
        parts.append(MMA_HELPERS.strip())
    for kernel in plan.kernels:
        parts.append(_KernelWriter(kernel, checked).write())
    return "\n\n".join(parts) + "\n"
