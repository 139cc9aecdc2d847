"""Lowered IR → LLVM IR (llvmlite's IR builder).

The kernel is ``i32 @name(T0* noalias, T1* noalias, ..., i64 n, ...)``: one pointer per
tensor argument and per workspace buffer, then the shape variables; it returns 0, or 1 when a heap allocation
failed. Parallel loops are outlined into ``void @name.par<k>(i8* closure)`` and run by
libgomp's ``GOMP_parallel`` with a static split of the iteration range over the team.
Inside ``pragma(axis, "nontemporal")`` whole-vector stores to tensor arguments bypass the
cache (streaming stores) wherever the address is aligned to the vector's size.
Float multiplies and adds carry the ``contract`` flag (fused multiply-add allowed, no
reassociation). bool is an ``i1`` value stored as one byte; bfloat16 is a ``float``
value stored as its upper 16 bits.
"""
from __future__ import annotations

from llvmlite import ir

from tensordsl.errors import BuildError
from tensordsl.ir import dtype as dt
from tensordsl.ir import nodes as n

from . import mathfuncs
from .compile import register_bits
from .captures import Captures

I1, I8, I16, I32, I64 = (ir.IntType(b) for b in (1, 8, 16, 32, 64))
VOID = ir.VoidType()
I8P = ir.PointerType(I8)
STACK_LIMIT = 64 * 1024  # bytes; larger allocations go to the heap
_FLOAT_FLAGS = ("contract",)


def _element_bits(t) -> int:
    if isinstance(t, ir.IntType):
        return t.width
    return {ir.HalfType: 16, ir.FloatType: 32, ir.DoubleType: 64}.get(type(t), 32)


_SCALAR = {
    "bool": I1, "int8": I8, "uint8": I8, "int16": I16, "int32": I32, "int64": I64,
    "float16": ir.HalfType(), "bfloat16": ir.FloatType(), "float32": ir.FloatType(),
    "float64": ir.DoubleType(),
}
_MEMORY = dict(_SCALAR, bool=I8, bfloat16=I16)
_LIBM = {"erf": "erf"}
_INLINE_F32 = {"exp": mathfuncs.exp_f32, "tanh": mathfuncs.tanh_f32}
_INTRINSIC = {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh", "fabs": "fabs",
              "pow": "pow", "floor": "floor", "ceil": "ceil", "round": "round"}


# functions of the C runtime the generated code calls (LLVM lowers math intrinsics it
# cannot inline, a vector tanh say, to libm calls by these names)
_C_RUNTIME = {"free", "aligned_alloc", "memset", "memcpy", "memmove", "omp_get_thread_num",
              "omp_get_num_threads", "GOMP_parallel"} | {
    f + suffix for f in {*_INTRINSIC.values(), *_LIBM.values()} for suffix in ("", "f")}


def symbol_name(name: str) -> str:
    """The kernel's symbol in the object: its name, unless that is a C runtime function
    the code may call (a kernel named ``tanh`` would call itself for ``llvm.tanh``)."""
    return f"{name}.kernel" if name in _C_RUNTIME else name


class _VectorGEP(ir.instructions.Instruction):
    """``getelementptr T, ptr %base, <N x iK> %indices``: a vector of addresses (llvmlite's
    ``gep`` takes scalar indices only)."""

    def __init__(self, parent, pointer, indices, typ, name=""):
        super().__init__(parent, typ, "getelementptr", [pointer, indices], name=name)
        self.pointer, self.indices = pointer, indices

    def descr(self, buf):
        buf.append(f"getelementptr {self.pointer.type.pointee}, {self.pointer.type} "
                   f"{self.pointer.get_reference()}, {self.indices.type} "
                   f"{self.indices.get_reference()}{self._stringify_metadata(leading_comma=True)}\n")


def _suffix(t: ir.Type) -> str:
    """LLVM's name of a scalar type in intrinsic names (f32, i8, ...)."""
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    return {"float": "f32", "double": "f64", "half": "f16"}[str(t)]


def value_type(dtype: str) -> ir.Type:
    base, lanes = dt.element(dtype), dt.lanes(dtype)
    t = _SCALAR[base]
    return t if lanes == 1 else ir.VectorType(t, lanes)


def memory_type(dtype: str) -> ir.Type:
    return _MEMORY[dt.element(dtype)]


class CodeGenLLVM:
    def __init__(self, func: n.PrimFunc, triple: str, data_layout: str):
        self.func = func
        self.module = ir.Module(name=func.name)
        self.module.triple = triple
        self.module.data_layout = data_layout
        self.vars: dict = {}
        self.buffers: dict = {}
        self.n_outlined = 0
        self.in_parallel = False
        self.thread_index = ir.Constant(I64, 0)  # this thread's number in the team
        self.error_flag = ir.GlobalVariable(self.module, I32, f"{func.name}.error")
        self.error_flag.initializer = ir.Constant(I32, 0)
        self.error_flag.linkage = "internal"
        self.nontemporal = 0  # depth of enclosing "nontemporal" pragmas
        self.x86 = triple.startswith(("x86_64", "i686", "i386"))

    # ------------------------------------------------------------ entry
    def generate(self) -> ir.Module:
        # pointers first (tensors, then workspace), then the scalar sizes
        params = [p for p in self.func.params if isinstance(p, n.Buffer)] + \
                 [p for p in self.func.params if not isinstance(p, n.Buffer)]
        arg_types = [ir.PointerType(memory_type(p.dtype)) if isinstance(p, n.Buffer) else I64
                     for p in params]
        fn = ir.Function(self.module, ir.FunctionType(I32, arg_types),
                         symbol_name(self.func.name))
        for p, arg in zip(params, fn.args):
            arg.name = p.name
            if isinstance(p, n.Buffer):
                arg.add_attribute("noalias")
                self.buffers[p] = arg
            else:
                self.vars[p] = arg
        self.begin_function(fn)
        self.entry_builder.store(ir.Constant(I32, 0), self.error_flag)
        self.stmt(self.func.body)
        self.finish_function(I32)
        return self.module

    def begin_function(self, fn: ir.Function):
        self.fn = fn
        self.entry = fn.append_basic_block("entry")
        body = fn.append_basic_block("body")
        self.builder = ir.IRBuilder(self.entry)
        self.entry_builder = ir.IRBuilder(self.entry)
        self.builder.position_at_end(body)
        self._body_block = body
        self.heap_buffers: list = []  # allocated in `entry`, freed on the way out
        self.streamed = False  # whether this function issued non-temporal stores

    def finish_function(self, ret_type=VOID):
        """Close the body: free the function's heap buffers and return (the error flag
        for the kernel itself). `entry` holds the allocas and heap allocations; if one
        of those failed, the body is skipped."""
        exit_bb = self.fn.append_basic_block("exit")
        self.builder.branch(exit_bb)
        eb = self.entry_builder
        eb.position_at_end(self.entry)
        if self.heap_buffers:
            ok = ir.Constant(I1, 1)
            for raw in self.heap_buffers:
                ok = eb.and_(ok, eb.icmp_unsigned("!=", raw, ir.Constant(I8P, None)))
            fail_bb = self.fn.append_basic_block("alloc.fail")
            eb.cbranch(ok, self._body_block, fail_bb)
            eb.position_at_end(fail_bb)
            eb.store(ir.Constant(I32, 1), self.error_flag)
            eb.branch(exit_bb)
        else:
            eb.branch(self._body_block)
        xb = ir.IRBuilder(exit_bb)
        if self.streamed and self.x86:
            # streaming stores are weakly ordered: drain them before anyone reads
            xb.call(self.declare("llvm.x86.sse.sfence", VOID, []), [])
        for raw in self.heap_buffers:
            xb.call(self.declare("free", VOID, [I8P]), [raw])
        if ret_type is VOID:
            xb.ret_void()
        else:
            xb.ret(xb.load(self.error_flag))

    # ------------------------------------------------------------ helpers
    def const_int(self, v: int, t=I64):
        return ir.Constant(t, v)

    def declare(self, name: str, ret, args) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def intrinsic(self, name: str, dtype: str, nargs: int) -> ir.Function:
        t = value_type(dtype)
        base = {"float16": "f16", "bfloat16": "f32", "float32": "f32", "float64": "f64"}[
            dt.element(dtype)]
        suffix = base if dt.lanes(dtype) == 1 else f"v{dt.lanes(dtype)}{base}"
        return self.declare(f"llvm.{name}.{suffix}", t, [t] * nargs)

    def splat(self, value, lanes: int):
        vt = ir.VectorType(value.type, lanes)
        v = self.builder.insert_element(ir.Constant(vt, ir.Undefined), value,
                                        ir.Constant(I32, 0))
        mask = ir.Constant(ir.VectorType(I32, lanes), [0] * lanes)
        return self.builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), mask)

    # ------------------------------------------------------------ expressions
    def expr(self, e):
        return getattr(self, "expr_" + type(e).__name__)(e)

    def expr_IntImm(self, e):
        if dt.lanes(e.dtype) > 1:
            raise BuildError("vector immediates are built with Broadcast")
        return ir.Constant(value_type(e.dtype), e.value)

    def expr_FloatImm(self, e):
        return ir.Constant(value_type(e.dtype), e.value)

    def expr_Var(self, e):
        try:
            return self.vars[e]
        except KeyError:
            raise BuildError(f"codegen: variable {e.name!r} is not defined here") from None

    def _arith(self, e, float_op: str, int_op: str):
        a, b = self.expr(e.a), self.expr(e.b)
        if dt.is_float(e.dtype):
            return getattr(self.builder, float_op)(a, b, flags=_FLOAT_FLAGS)
        return getattr(self.builder, int_op)(a, b)

    def expr_Add(self, e):
        return self._arith(e, "fadd", "add")

    def expr_Sub(self, e):
        return self._arith(e, "fsub", "sub")

    def expr_Mul(self, e):
        return self._arith(e, "fmul", "mul")

    def expr_Div(self, e):
        a, b = self.expr(e.a), self.expr(e.b)
        if dt.is_float(e.dtype):
            return self.builder.fdiv(a, b)
        if dt.is_unsigned(e.dtype):
            return self.builder.udiv(a, b)
        return self.builder.sdiv(a, b)

    def _floor_parts(self, e):
        """(a, b, q, r, adjust) with q, r truncated and adjust = the floor correction."""
        a, b = self.expr(e.a), self.expr(e.b)
        bd = self.builder
        q, r = bd.sdiv(a, b), bd.srem(a, b)
        zero = ir.Constant(a.type, None)
        nonzero = bd.icmp_signed("!=", r, zero)
        signs_differ = bd.xor(bd.icmp_signed("<", r, zero), bd.icmp_signed("<", b, zero))
        return a, b, q, r, bd.and_(nonzero, signs_differ)

    def expr_FloorDiv(self, e):
        if dt.is_float(e.dtype):
            q = self.builder.fdiv(self.expr(e.a), self.expr(e.b))
            return self.builder.call(self.intrinsic("floor", e.dtype, 1), [q])
        if dt.is_unsigned(e.dtype):
            return self.builder.udiv(self.expr(e.a), self.expr(e.b))
        a, b, q, r, adjust = self._floor_parts(e)
        return self.builder.sub(q, self.builder.zext(adjust, q.type))

    def expr_FloorMod(self, e):
        if dt.is_float(e.dtype):
            a, b = self.expr(e.a), self.expr(e.b)
            q = self.builder.call(self.intrinsic("floor", e.dtype, 1), [self.builder.fdiv(a, b)])
            return self.builder.fsub(a, self.builder.fmul(q, b))
        if dt.is_unsigned(e.dtype):
            return self.builder.urem(self.expr(e.a), self.expr(e.b))
        a, b, q, r, adjust = self._floor_parts(e)
        return self.builder.add(r, self.builder.select(adjust, b, ir.Constant(b.type, None)))

    def _compare(self, op: str, a_expr, a, b):
        if dt.is_float(a_expr.dtype):
            if op == "!=":
                return self.builder.fcmp_unordered(op, a, b)
            return self.builder.fcmp_ordered(op, a, b)
        if dt.is_unsigned(a_expr.dtype) or dt.is_bool(a_expr.dtype):
            return self.builder.icmp_unsigned(op, a, b)
        return self.builder.icmp_signed(op, a, b)

    def _cmp(self, e, op):
        return self._compare(op, e.a, self.expr(e.a), self.expr(e.b))

    def expr_EQ(self, e): return self._cmp(e, "==")
    def expr_NE(self, e): return self._cmp(e, "!=")
    def expr_LT(self, e): return self._cmp(e, "<")
    def expr_LE(self, e): return self._cmp(e, "<=")
    def expr_GT(self, e): return self._cmp(e, ">")
    def expr_GE(self, e): return self._cmp(e, ">=")

    def expr_Min(self, e):
        return self._min_max(e, "<", "minimum")

    def expr_Max(self, e):
        return self._min_max(e, ">", "maximum")

    def _min_max(self, e, op, ieee):
        """Floats follow numpy and PyTorch: a NaN operand gives NaN (``llvm.maximum``,
        IEEE 754-2019); integers compare and select."""
        a, b = self.expr(e.a), self.expr(e.b)
        if dt.is_float(e.dtype) and dt.element(e.dtype) in ("float32", "float64"):
            return self.builder.call(self.intrinsic(ieee, e.dtype, 2), [a, b])
        return self.builder.select(self._compare(op, e.a, a, b), a, b)

    def expr_And(self, e):
        return self.builder.and_(self.expr(e.a), self.expr(e.b))

    def expr_Or(self, e):
        return self.builder.or_(self.expr(e.a), self.expr(e.b))

    def expr_Not(self, e):
        return self.builder.not_(self.expr(e.a))

    def expr_Select(self, e):
        return self.builder.select(self.expr(e.condition), self.expr(e.true_value),
                                   self.expr(e.false_value))

    def expr_Cast(self, e):
        return self.cast(self.expr(e.value), e.value.dtype, e.dtype)

    def cast(self, v, src: str, dst: str):
        bd = self.builder
        s, d = dt.element(src), dt.element(dst)
        to = value_type(dst)
        if s == d:
            return v
        if d == "bool":
            zero = ir.Constant(v.type, None)
            if dt.is_float(s):
                return bd.fcmp_unordered("!=", v, zero)
            return bd.icmp_unsigned("!=", v, zero)
        if d == "bfloat16":
            v = self.cast(v, src, dt.with_lanes("float32", dt.lanes(src)))
            return self.round_to_bfloat16(v)
        if s == "bfloat16":
            s, src = "float32", dt.with_lanes("float32", dt.lanes(src))
            if s == d:
                return v
        if s == "float64" and d == "float16":
            # through float32 rounded to odd: the second rounding then gives the nearest
            # half as one rounding would, and no libcall (__truncdfhf2, which the JIT
            # cannot resolve) is emitted where the CPU lacks a double -> half instruction
            return bd.fptrunc(self.round_to_odd_float32(v), to)
        if dt.is_float(s) and dt.is_float(d):
            if dt.bits(d) > dt.bits(s):
                return bd.fpext(v, to)
            return bd.fptrunc(v, to) if dt.bits(d) < dt.bits(s) else v
        if dt.is_float(d):
            if s == "bool" or dt.is_unsigned(s):
                return bd.uitofp(v, to)
            return bd.sitofp(v, to)
        if dt.is_float(s):
            return bd.fptoui(v, to) if dt.is_unsigned(d) else bd.fptosi(v, to)
        sb = 1 if s == "bool" else dt.bits(s)
        if dt.bits(d) > sb:
            return bd.zext(v, to) if (s == "bool" or dt.is_unsigned(s)) else bd.sext(v, to)
        if dt.bits(d) < sb:
            return bd.trunc(v, to)
        return v

    def round_to_odd_float32(self, v):
        """A double (or vector of them) to float32, rounded to odd: truncated toward
        zero, the last bit set when anything was cut off. NaN and infinities pass."""
        bd = self.builder
        vector = isinstance(v.type, ir.VectorType)
        lanes = v.type.count if vector else 1
        ft = ir.VectorType(ir.FloatType(), lanes) if vector else ir.FloatType()
        it = ir.VectorType(I32, v.type.count) if vector else I32

        def c(x):
            return ir.Constant(it, [x] * it.count) if vector else ir.Constant(it, x)

        nearest = bd.fptrunc(v, ft)
        back = bd.fpext(nearest, v.type)
        # inexact (NaN compares unordered: "one" is false for it, so NaN passes as is)
        inexact = bd.fcmp_ordered("one", back, v)
        # |nearest| > |v|: it rounded away from zero, so the truncation is one ulp less
        # in magnitude (the bits of a float's magnitude count up with it)
        fabs = self.intrinsic("fabs", dt.with_lanes("float64", lanes), 1)
        away = bd.fcmp_ordered(">", bd.call(fabs, [back]), bd.call(fabs, [v]))
        bits = bd.bitcast(nearest, it)
        truncated = bd.select(away, bd.sub(bits, c(1)), bits)
        odd = bd.select(inexact, bd.or_(truncated, c(1)), bits)
        return bd.bitcast(odd, ft)

    def round_to_bfloat16(self, v):
        """Round a float to the nearest bfloat16 (ties to even), kept as a float."""
        bd = self.builder
        it = I32 if not isinstance(v.type, ir.VectorType) else ir.VectorType(I32, v.type.count)

        def c(x):
            return ir.Constant(it, x) if it is I32 else ir.Constant(it, [x] * it.count)

        bits = bd.bitcast(v, it)
        lsb = bd.and_(bd.lshr(bits, c(16)), c(1))
        rounded = bd.and_(bd.add(bits, bd.add(lsb, c(0x7FFF))), c(0xFFFF0000))
        return bd.bitcast(rounded, v.type)

    def expr_Call(self, e):
        if e.name == "if_then_else":
            return self.lazy_select(e)
        if e.name == "vector_any":
            mask = self.expr(e.args[0])
            lanes = mask.type.count
            bits = self.builder.bitcast(mask, ir.IntType(lanes))
            return self.builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(lanes), 0))
        if e.name == "vector_sum":
            return self.vector_sum(self.expr(e.args[0]), dt.is_float(e.dtype))
        if e.name == "vector_sums":
            return self.vector_sums([self.expr(a) for a in e.args], dt.is_float(e.dtype))
        if e.name == "prefetch":
            return self.prefetch(e.args[0])
        if e.name == "thread_index":
            return self.thread_index
        if e.name == "call_packed":
            return self.call_packed(e)
        if e.name == "call_extern":
            return self.call_extern(e)
        if e.name == "address_of":
            raise BuildError("codegen: an address (access_ptr) is only an argument of "
                             "td.call_extern")
        if e.name in _LIBM:
            return self.libm_call(e)
        if e.name in _INLINE_F32 and dt.element(e.dtype) == "float32":
            return _INLINE_F32[e.name](self.builder, self.expr(e.args[0]), self.declare)
        name = _INTRINSIC.get(e.name)
        if name is None:
            raise BuildError(f"codegen: unknown intrinsic {e.name!r}")
        args = [self.expr(a) for a in e.args]
        return self.builder.call(self.intrinsic(name, e.dtype, len(args)), args)

    def prefetch(self, address: n.Load):
        """Hint the cache line holding ``address`` (a scalar load that is not performed)
        into L1; never faults, so an address past the end of a buffer is harmless."""
        bd = self.builder
        ptr = bd.gep(self.buffer_ptr(address.buffer), [self.expr(address.index)])
        fn = self.declare("llvm.prefetch.p0", ir.VoidType(), [ptr.type, I32, I32, I32])
        bd.call(fn, [ptr, ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])
        return ir.Constant(I32, 0)

    def call_packed(self, e):
        """``tensordsl_call_packed(name, signature, pointers, sizes, count)``: a call into
        the registered Python function (``tensordsl/runtime/packed.py``)."""
        bd = self.builder
        name, signature, *rest = e.args
        loads = [a for a in rest if isinstance(a, n.Load)]
        sizes = [a for a in rest if not isinstance(a, n.Load)]
        ptrs = self.entry_builder.alloca(I8P, size=ir.Constant(I64, max(1, len(loads))))
        dims = self.entry_builder.alloca(I64, size=ir.Constant(I64, max(1, len(sizes))))
        for k, load in enumerate(loads):
            ptr = bd.gep(self.buffer_ptr(load.buffer), [self.expr(load.index)])
            bd.store(bd.bitcast(ptr, I8P), bd.gep(ptrs, [ir.Constant(I64, k)]))
        for k, size in enumerate(sizes):
            bd.store(self.expr(size), bd.gep(dims, [ir.Constant(I64, k)]))
        fn = self.declare("tensordsl_call_packed", I32,
                          [I8P, I8P, I8P.as_pointer(), I64.as_pointer(), I32])
        return bd.call(fn, [self.c_string(name.value), self.c_string(signature.value), ptrs,
                            dims, ir.Constant(I32, len(loads))])

    def call_extern(self, e):
        """A call of C function ``name`` (``td.call_extern``): addresses as ``i8*``, the
        other arguments as their types."""
        bd = self.builder
        name, *rest = e.args
        args = []
        for a in rest:
            if isinstance(a, n.Call) and a.name == "address_of":
                load = a.args[0]
                ptr = bd.gep(self.buffer_ptr(load.buffer), [self.expr(load.index)])
                args.append(bd.bitcast(ptr, I8P))
            else:
                args.append(self.expr(a))
        lanes = dt.lanes(e.dtype)
        ret = value_type(dt.element(e.dtype))
        types = [a.type.element if lanes > 1 else a.type for a in args]
        fn = self.declare(name.value, ret, types)
        if list(fn.function_type.args) != types or fn.function_type.return_type != ret:
            raise BuildError(f"call_extern {name.value!r}: called with ({e.dtype}; "
                             f"{', '.join(map(str, types))}), elsewhere with "
                             f"{fn.function_type}")
        if lanes == 1:
            return bd.call(fn, args)
        out = ir.Constant(value_type(e.dtype), ir.Undefined)   # lane by lane
        for k in range(lanes):
            lane = ir.Constant(I32, k)
            value = bd.call(fn, [bd.extract_element(a, lane) for a in args])
            out = bd.insert_element(out, value, lane)
        return out

    def c_string(self, text: str):
        data = bytearray(text.encode() + b"\0")
        var = ir.GlobalVariable(self.module, ir.ArrayType(I8, len(data)),
                                self.module.get_unique_name("str"))
        var.global_constant, var.linkage = True, "private"
        var.initializer = ir.Constant(ir.ArrayType(I8, len(data)), data)
        return self.builder.bitcast(var, I8P)

    def libm_call(self, e):
        """A C math function with no LLVM intrinsic, applied lane by lane."""
        base = dt.element(e.dtype)
        if base not in ("float32", "float64"):
            raise BuildError(f"codegen: {e.name} supports float32 and float64, got {base}")
        st = value_type(base)
        fn = self.declare(_LIBM[e.name] + ("f" if base == "float32" else ""), st, [st])
        arg = self.expr(e.args[0])
        if dt.lanes(e.dtype) == 1:
            return self.builder.call(fn, [arg])
        out = ir.Constant(arg.type, ir.Undefined)
        for k in range(dt.lanes(e.dtype)):
            lane = ir.Constant(I32, k)
            v = self.builder.call(fn, [self.builder.extract_element(arg, lane)])
            out = self.builder.insert_element(out, v, lane)
        return out

    def lazy_select(self, e):
        cond = self.expr(e.args[0])
        bd = self.builder
        then_bb = self.fn.append_basic_block("ite.then")
        else_bb = self.fn.append_basic_block("ite.else")
        done = self.fn.append_basic_block("ite.done")
        bd.cbranch(cond, then_bb, else_bb)
        bd.position_at_end(then_bb)
        t = self.expr(e.args[1])
        t_end = bd.block
        bd.branch(done)
        bd.position_at_end(else_bb)
        f = self.expr(e.args[2])
        f_end = bd.block
        bd.branch(done)
        bd.position_at_end(done)
        phi = bd.phi(t.type)
        phi.add_incoming(t, t_end)
        phi.add_incoming(f, f_end)
        return phi

    def expr_Let(self, e):
        self.vars[e.var] = self.expr(e.value)
        return self.expr(e.body)

    def expr_Ramp(self, e):
        base = self.splat(self.expr(e.base), e.lanes)
        if isinstance(e.stride, n.IntImm):
            offsets = ir.Constant(ir.VectorType(I64, e.lanes),
                                  [k * e.stride.value for k in range(e.lanes)])
            return self.builder.add(base, offsets)
        stride = self.splat(self.expr(e.stride), e.lanes)
        steps = ir.Constant(ir.VectorType(I64, e.lanes), list(range(e.lanes)))
        return self.builder.add(base, self.builder.mul(stride, steps))

    def expr_Broadcast(self, e):
        return self.splat(self.expr(e.value), e.lanes)

    # ------------------------------------------------------------ memory
    def from_memory(self, v, dtype: str):
        if dt.element(dtype) == "bool":
            return self.builder.icmp_unsigned("!=", v, ir.Constant(v.type, None))
        if dt.element(dtype) == "bfloat16":
            wide = ir.VectorType(I32, v.type.count) if isinstance(v.type, ir.VectorType) else I32
            shift = (ir.Constant(wide, 16) if wide is I32 else ir.Constant(wide, [16] * wide.count))
            return self.builder.bitcast(self.builder.shl(self.builder.zext(v, wide), shift),
                                        value_type(dtype))
        return v

    def to_memory(self, v, dtype: str):
        mt = memory_type(dtype)
        if dt.lanes(dtype) > 1:
            mt = ir.VectorType(mt, dt.lanes(dtype))
        if dt.element(dtype) == "bool":
            return self.builder.zext(v, mt)
        if dt.element(dtype) == "bfloat16":
            wide = ir.VectorType(I32, v.type.count) if isinstance(v.type, ir.VectorType) else I32
            bits = self.builder.bitcast(self.round_to_bfloat16(v), wide)
            shift = (ir.Constant(wide, 16) if wide is I32 else ir.Constant(wide, [16] * wide.count))
            return self.builder.trunc(self.builder.lshr(bits, shift), mt)
        return v

    def buffer_ptr(self, buf: n.Buffer):
        try:
            return self.buffers[buf]
        except KeyError:
            raise BuildError(f"codegen: buffer {buf.name!r} is not allocated here") from None

    def _contiguous(self, index) -> bool:
        return isinstance(index, n.Ramp) and isinstance(index.stride, n.IntImm) \
            and index.stride.value == 1

    def expr_Load(self, e):
        ptr = self.buffer_ptr(e.buffer)
        mt = memory_type(e.dtype)
        align = max(1, dt.bits(e.dtype) // 8)
        lanes = dt.lanes(e.dtype)
        bd = self.builder
        mask = None if e.predicate is None else self.expr(e.predicate)
        if lanes == 1:
            raw = bd.load(bd.gep(ptr, [self.expr(e.index)]), align=align)
        elif self._contiguous(e.index):
            vt = ir.VectorType(mt, lanes)
            vp = bd.bitcast(bd.gep(ptr, [self.expr(e.index.base)]), ir.PointerType(vt))
            if mask is None:
                raw = bd.load(vp, align=align)
            else:
                fn = self.declare(f"llvm.masked.load.v{lanes}{_suffix(mt)}.p0", vt,
                                  [ir.PointerType(vt), I32, ir.VectorType(I1, lanes), vt])
                raw = bd.call(fn, [vp, ir.Constant(I32, align), mask, ir.Constant(vt, None)])
        elif isinstance(mt, (ir.FloatType, ir.DoubleType)) or \
                (isinstance(mt, ir.IntType) and mt.width in (32, 64)):
            raw = self.gather(ptr, mt, e.index, lanes, align, mask)
        else:
            idx = self.expr(e.index)
            raw = ir.Constant(ir.VectorType(mt, lanes), None)
            for k in range(lanes):
                lane = ir.Constant(I32, k)
                raw = self._lane_guarded(mask, lane, lambda lane=lane, raw=raw: bd.insert_element(
                    raw, bd.load(bd.gep(ptr, [bd.extract_element(idx, lane)]), align=align),
                    lane), raw)
        return self.from_memory(raw, e.dtype)

    def gather(self, ptr, mt, index, lanes: int, align: int, mask):
        """``ptr[index]`` at a vector of indices: one ``llvm.masked.gather`` (the lanes
        off ``mask`` read nothing and are zero) — a gather instruction, where loading
        lane by lane would spend an insert per lane."""
        bd = self.builder
        if isinstance(index, n.Cast) and dt.element(index.value.dtype) == "int32":
            # an int32 index widened: GEP sign-extends it itself, and the gather keeps
            # 32-bit offsets (one vgatherdps for 16 lanes, not two vgatherqps)
            index = index.value
        idx = self.expr(index)
        ptr_t = ir.VectorType(ir.PointerType(mt), lanes)
        ptrs = _VectorGEP(bd.block, ptr, idx, ptr_t)
        bd._insert(ptrs)
        vt = ir.VectorType(mt, lanes)
        if mask is None:
            mask = ir.Constant(ir.VectorType(I1, lanes), [1] * lanes)
        fn = self.declare(f"llvm.masked.gather.v{lanes}{_suffix(mt)}.v{lanes}p0", vt,
                          [ptr_t, I32, ir.VectorType(I1, lanes), vt])
        return bd.call(fn, [ptrs, ir.Constant(I32, align), mask, ir.Constant(vt, None)])

    def _lane_guarded(self, mask, lane, make, default):
        """``make()`` where ``mask[lane]`` holds (a branch), else ``default``."""
        if mask is None:
            return make()
        bd = self.builder
        on = self.fn.append_basic_block("lane.on")
        done = self.fn.append_basic_block("lane.done")
        before = bd.block
        bd.cbranch(bd.extract_element(mask, lane), on, done)
        bd.position_at_end(on)
        value = make()
        on_end = bd.block
        bd.branch(done)
        bd.position_at_end(done)
        if value is None:
            return None
        phi = bd.phi(value.type)
        phi.add_incoming(value, on_end)
        phi.add_incoming(default, before)
        return phi

    # ------------------------------------------------------------ statements
    def stmt(self, s):
        getattr(self, "stmt_" + type(s).__name__)(s)

    def stmt_Seq(self, s):
        for x in s.stmts:
            self.stmt(x)

    def stmt_Evaluate(self, s):
        self.expr(s.value)

    def stmt_LetStmt(self, s):
        self.vars[s.var] = self.expr(s.value)
        self.stmt(s.body)

    def stmt_Store(self, s):
        ptr = self.buffer_ptr(s.buffer)
        dtype = s.value.dtype
        align = max(1, dt.bits(dtype) // 8)
        lanes = dt.lanes(dtype)
        bd = self.builder
        value = self.to_memory(self.expr(s.value), dtype)
        mask = None if s.predicate is None else self.expr(s.predicate)
        if lanes == 1:
            bd.store(value, bd.gep(ptr, [self.expr(s.index)]), align=align)
        elif self._contiguous(s.index):
            vp = bd.bitcast(bd.gep(ptr, [self.expr(s.index.base)]),
                            ir.PointerType(value.type))
            if mask is None and self._streams(s.buffer, lanes * align):
                self.streaming_store(value, vp, align, lanes * align)
            elif mask is None:
                bd.store(value, vp, align=align)
            else:
                vt = value.type
                fn = self.declare(f"llvm.masked.store.v{lanes}{_suffix(vt.element)}.p0", VOID,
                                  [vt, ir.PointerType(vt), I32, ir.VectorType(I1, lanes)])
                bd.call(fn, [value, vp, ir.Constant(I32, align), mask])
        else:
            idx = self.expr(s.index)
            for k in range(lanes):
                lane = ir.Constant(I32, k)
                self._lane_guarded(mask, lane, lambda lane=lane: bd.store(
                    bd.extract_element(value, lane),
                    bd.gep(ptr, [bd.extract_element(idx, lane)]), align=align) and None, None)

    def _streams(self, buf: n.Buffer, nbytes: int) -> bool:
        return (self.nontemporal > 0 and self.x86 and buf.scope == "global"
                and any(buf is p for p in self.func.params) and nbytes in (16, 32, 64))

    def streaming_store(self, value, vp, align: int, nbytes: int):
        """Non-temporal stores where the address allows them, else an ordinary one. x86
        streams only aligned vectors (LLVM splits an unaligned one into 8-byte pieces),
        so a vector at a 16-byte boundary (numpy's large arrays start 16 bytes into a
        page) goes out as 16-byte pieces, which the write-combining buffers still merge
        into whole lines. The branches are the same for a whole loop: they predict."""
        bd = self.builder
        address = bd.ptrtoint(vp, I64)

        def aligned_to(k):
            return bd.icmp_unsigned("==", bd.and_(address, ir.Constant(I64, k - 1)),
                                    ir.Constant(I64, 0))

        def stream(v, ptr, k):
            st = bd.store(v, ptr, align=k)
            st.set_metadata("nontemporal", self.module.add_metadata([ir.Constant(I32, 1)]))

        with bd.if_else(aligned_to(nbytes)) as (whole, other):
            with whole:
                stream(value, vp, nbytes)
            with other:
                if nbytes == 16:
                    bd.store(value, vp, align=align)
                else:
                    with bd.if_else(aligned_to(16)) as (pieces, neither):
                        with pieces:
                            self._stream_pieces(value, vp, 16 // align, 16, stream)
                        with neither:
                            bd.store(value, vp, align=align)
        self.streamed = True

    def _stream_pieces(self, value, vp, lanes_per_piece: int, piece_bytes: int, stream):
        bd = self.builder
        piece_t = ir.VectorType(value.type.element, lanes_per_piece)
        pieces = bd.bitcast(vp, ir.PointerType(piece_t))
        for p in range(value.type.count // lanes_per_piece):
            lanes = list(range(p * lanes_per_piece, (p + 1) * lanes_per_piece))
            part = bd.shuffle_vector(value, ir.Constant(value.type, None),
                                     ir.Constant(ir.VectorType(I32, lanes_per_piece), lanes))
            stream(part, bd.gep(pieces, [ir.Constant(I64, p)]), piece_bytes)

    def stmt_Pragma(self, s):
        streaming = s.key == "nontemporal"
        self.nontemporal += streaming
        self.stmt(s.body)
        self.nontemporal -= streaming

    def stmt_IfThenElse(self, s):
        cond = self.expr(s.condition)
        bd = self.builder
        then_bb = self.fn.append_basic_block("if.then")
        done = self.fn.append_basic_block("if.done")
        else_bb = self.fn.append_basic_block("if.else") if s.else_case is not None else done
        bd.cbranch(cond, then_bb, else_bb)
        bd.position_at_end(then_bb)
        self.stmt(s.then_case)
        bd.branch(done)
        if s.else_case is not None:
            bd.position_at_end(else_bb)
            self.stmt(s.else_case)
            bd.branch(done)
        bd.position_at_end(done)

    def _adder(self, is_float: bool):
        bd = self.builder
        return (lambda a, b: bd.fadd(a, b, flags=_FLOAT_FLAGS)) if is_float else bd.add

    def _lanes(self, v, indices, other=None):
        """The lanes ``indices`` of ``v`` (and of ``other`` after them) as a vector."""
        return self.builder.shuffle_vector(
            v, other if other is not None else ir.Constant(v.type, None),
            ir.Constant(ir.VectorType(I32, len(indices)), list(indices)))

    def _register_sum(self, v, is_float: bool):
        """``v`` wider than a register folded register by register (a chain of
        whole-register adds, each fused with the multiply that made its operand where
        there is one: an SDDMM dot of 64 floats is a multiply and 3 FMAs, not 4
        multiplies and 3 adds): one register whose lanes have ``v``'s sum."""
        add = self._adder(is_float)
        width = max(1, register_bits() // _element_bits(v.type.element))
        if v.type.count > width and v.type.count % width == 0:
            pieces = [self._lanes(v, range(first, first + width))
                      for first in range(0, v.type.count, width)]
            v = pieces[0]
            for piece in pieces[1:]:
                v = add(v, piece)
        return v

    def vector_sums(self, vectors, is_float: bool):
        """The sums of ``vectors`` (a power of two of them, of as many lanes each, a
        power of two) as one vector: each folded to a register, then pairs shuffled into
        halves and added — after a round a vector holds the partial sums of twice as
        many inputs in groups of half as many lanes — until one vector holds one group
        per input, in order; then the groups halved in place down to one lane each."""
        add = self._adder(is_float)
        width = self._register_sum(vectors[0], is_float).type.count
        if len(vectors) > width:        # more sums than lanes: by blocks of a register
            blocks = [self.vector_sums(vectors[k:k + width], is_float)
                      for k in range(0, len(vectors), width)]
            while len(blocks) > 1:
                blocks = [self._lanes(a, range(2 * a.type.count), b)
                          for a, b in zip(blocks[::2], blocks[1::2])]
            return blocks[0]
        items = [self._register_sum(v, is_float) for v in vectors]
        groups, size = 1, items[0].type.count
        while len(items) > 1 and size > 1:
            half, lanes = size // 2, groups * size
            low = [u * size + o for u in range(groups) for o in range(half)]
            high = [k + half for k in low]
            items = [add(self._lanes(x, low + [lanes + k for k in low], y),
                         self._lanes(x, high + [lanes + k for k in high], y))
                     for x, y in zip(items[::2], items[1::2])]
            groups, size = groups * 2, half
        (v,) = items
        while size > 1:
            half = size // 2
            low = [u * size + o for u in range(groups) for o in range(half)]
            v = add(self._lanes(v, low), self._lanes(v, [k + half for k in low]))
            size = half
        return v

    def vector_sum(self, v, is_float: bool):
        """The sum of ``v``'s lanes (a power of two): folded to one register
        (``_register_sum``), then that register as a tree of halves: log2(lanes)
        shuffles and adds, not a chain of lanes - 1 dependent adds."""
        add = self._adder(is_float)
        v = self._register_sum(v, is_float)
        while v.type.count > 1:
            half = v.type.count // 2
            v = add(self._lanes(v, range(half)), self._lanes(v, range(half, 2 * half)))
        return self.builder.extract_element(v, ir.Constant(I32, 0))

    def stmt_While(self, s):
        bd = self.builder
        header = self.fn.append_basic_block("while")
        body_bb = self.fn.append_basic_block("while.body")
        done = self.fn.append_basic_block("while.end")
        bd.branch(header)
        bd.position_at_end(header)
        bd.cbranch(self.expr(s.condition), body_bb, done)
        bd.position_at_end(body_bb)
        self.stmt(s.body)
        bd.branch(header)
        bd.position_at_end(done)

    def stmt_Allocate(self, s):
        elem = memory_type(s.buffer.dtype)
        size = s.extent
        nbytes_const = (size.value * max(1, dt.bits(s.buffer.dtype) // 8)
                        if isinstance(size, n.IntImm) else None)
        bd = self.builder
        if nbytes_const is not None and nbytes_const <= STACK_LIMIT:
            ptr = self.entry_builder.alloca(elem, size=ir.Constant(I64, max(1, size.value)),
                                            name=s.buffer.name)
            ptr.align = 64
            self.buffers[s.buffer] = ptr
            self.stmt(s.body)
            return
        if nbytes_const is not None:
            # Constant size: allocate once per function call (per thread in a parallel
            # body), not per loop iteration, so pages are faulted in only once.
            rounded = (nbytes_const + 63) // 64 * 64
            raw = self.entry_builder.call(self.declare("aligned_alloc", I8P, [I64, I64]),
                                          [ir.Constant(I64, 64), ir.Constant(I64, rounded)])
            self.heap_buffers.append(raw)
            self.buffers[s.buffer] = self.entry_builder.bitcast(raw, ir.PointerType(elem))
            self.stmt(s.body)
            return
        # symbolic size: allocate around the use; aligned_alloc wants a multiple of 64
        elem_bytes = max(1, dt.bits(s.buffer.dtype) // 8)
        nbytes = bd.mul(self.expr(size), ir.Constant(I64, elem_bytes))
        nbytes = bd.and_(bd.add(nbytes, ir.Constant(I64, 127)), ir.Constant(I64, ~63))
        alloc = self.declare("aligned_alloc", I8P, [I64, I64])
        raw = bd.call(alloc, [ir.Constant(I64, 64), nbytes])
        failed = bd.icmp_unsigned("==", raw, ir.Constant(I8P, None))
        ok_bb = self.fn.append_basic_block("alloc.ok")
        fail_bb = self.fn.append_basic_block("alloc.fail")
        done = self.fn.append_basic_block("alloc.done")
        bd.cbranch(failed, fail_bb, ok_bb)
        bd.position_at_end(fail_bb)
        bd.store(ir.Constant(I32, 1), self.error_flag)
        bd.branch(done)
        bd.position_at_end(ok_bb)
        self.buffers[s.buffer] = bd.bitcast(raw, ir.PointerType(elem))
        self.stmt(s.body)
        bd.call(self.declare("free", VOID, [I8P]), [raw])
        bd.branch(done)
        bd.position_at_end(done)

    def stmt_Barrier(self, s):
        raise BuildError("a barrier (GPU thread synchronization) has no meaning on the CPU")

    def stmt_For(self, s):
        if s.kind == "thread_binding":
            raise BuildError(f"loop {s.var.name!r} is bound to {s.thread_tag}; GPU thread "
                             "bindings need target='cuda'")
        if s.kind == "parallel" and not self.in_parallel:
            self.parallel_for(s)
            return
        lo = self.expr(s.min)
        hi = self.builder.add(lo, self.expr(s.extent))
        self.serial_loop(s.var, lo, hi, s.body)

    def serial_loop(self, var, lo, hi, body):
        bd = self.builder
        pre = bd.block
        header = self.fn.append_basic_block(f"for.{var.name}")
        body_bb = self.fn.append_basic_block(f"for.{var.name}.body")
        done = self.fn.append_basic_block(f"for.{var.name}.end")
        bd.branch(header)
        bd.position_at_end(header)
        i = bd.phi(I64, name=var.name)
        i.add_incoming(lo, pre)
        bd.cbranch(bd.icmp_signed("<", i, hi), body_bb, done)
        bd.position_at_end(body_bb)
        self.vars[var] = i
        self.stmt(body)
        nxt = bd.add(i, ir.Constant(I64, 1), flags=["nsw"])
        i.add_incoming(nxt, bd.block)
        bd.branch(header)
        bd.position_at_end(done)

    def parallel_for(self, s: n.For):
        """Outline the loop body and run it on the OpenMP team."""
        cap = Captures()
        cap.defined.add(s.var)
        cap.visit(s.body)
        if s.balance is not None:
            cap.visit(s.balance)
        cap_vars = [v for v in cap.vars if v in self.vars]
        cap_bufs = list(cap.buffers)
        lo = self.expr(s.min)
        ext = self.expr(s.extent)
        fields = [I64, I64] + [self.vars[v].type for v in cap_vars] + \
                 [self.buffers[b].type for b in cap_bufs]
        closure_t = ir.LiteralStructType(fields)
        bd = self.builder
        closure = self.entry_builder.alloca(closure_t, name="closure")
        values = [lo, ext] + [self.vars[v] for v in cap_vars] + [self.buffers[b] for b in cap_bufs]
        for k, v in enumerate(values):
            bd.store(v, bd.gep(closure, [ir.Constant(I32, 0), ir.Constant(I32, k)]))

        self.n_outlined += 1
        name = f"{self.func.name}.par{self.n_outlined}"
        # The loop body is a function of its own whose pointer parameters are noalias:
        # pointers loaded from the closure would lose the fact that buffers do not
        # overlap, and with it LICM's promotion of accumulators to registers.
        var_types = [self.vars[v].type for v in cap_vars]
        buf_types = [self.buffers[b].type for b in cap_bufs]
        body_fn = ir.Function(self.module,
                              ir.FunctionType(VOID, [I64, I64, I64] + var_types + buf_types),
                              name + ".body")
        body_fn.linkage = "internal"
        for arg in body_fn.args[3 + len(cap_vars):]:
            arg.add_attribute("noalias")
        outlined = ir.Function(self.module, ir.FunctionType(VOID, [I8P]), name)
        outlined.linkage = "internal"
        saved = (self.fn, self.entry, self._body_block, self.builder, self.entry_builder,
                 self.vars, self.buffers, self.heap_buffers, self.streamed)
        self.in_parallel = True

        # the body: for var in [begin, end)
        self.begin_function(body_fn)
        begin, end, self.thread_index = body_fn.args[0], body_fn.args[1], body_fn.args[2]
        self.vars = dict(zip(cap_vars, body_fn.args[3:3 + len(cap_vars)]))
        self.buffers = dict(zip(cap_bufs, body_fn.args[3 + len(cap_vars):]))
        self.serial_loop(s.var, begin, end, s.body)
        self.finish_function()
        self.thread_index = ir.Constant(I64, 0)

        # the OpenMP entry: unpack the closure, take this thread's share of the range
        self.begin_function(outlined)
        ob = self.builder
        data = ob.bitcast(outlined.args[0], ir.PointerType(closure_t))
        loaded = [ob.load(ob.gep(data, [ir.Constant(I32, 0), ir.Constant(I32, k)]))
                  for k in range(len(fields))]
        p_lo, p_ext = loaded[0], loaded[1]
        tid = ob.sext(ob.call(self.declare("omp_get_thread_num", I32, []), []), I64)
        nth = ob.sext(ob.call(self.declare("omp_get_num_threads", I32, []), []), I64)
        if s.balance is None:
            chunk = ob.sdiv(ob.add(p_ext, ob.sub(nth, ir.Constant(I64, 1))), nth)
            first = ob.mul(tid, chunk)
            last = ob.add(first, chunk)
            last = ob.select(ob.icmp_signed("<", last, p_ext), last, p_ext)
            first, last = ob.add(p_lo, first), ob.add(p_lo, last)
        else:
            self.vars = dict(zip(cap_vars, loaded[2:2 + len(cap_vars)]))
            self.buffers = dict(zip(cap_bufs, loaded[2 + len(cap_vars):]))
            first, last = self.balanced_share(s, p_lo, ob.add(p_lo, p_ext), tid, nth)
            ob = self.builder
        ob.call(body_fn, [first, last, tid] + loaded[2:])
        self.finish_function()
        (self.fn, self.entry, self._body_block, self.builder, self.entry_builder,
         self.vars, self.buffers, self.heap_buffers, self.streamed) = saved
        self.in_parallel = False

        # 0: the default team; with per-thread workspace, at most as many threads as it
        # has slices
        team = self.func.attrs.get("team_size")
        threads = ir.Constant(I32, 0) if team is None else bd.trunc(self.vars[team], I32)
        gomp = self.declare("GOMP_parallel", VOID, [I8P, I8P, I32, I32])
        bd.call(gomp, [bd.bitcast(outlined, I8P), bd.bitcast(closure, I8P),
                       threads, ir.Constant(I32, 0)])


    def balanced_share(self, s: n.For, lo, hi, tid, nth):
        """This thread's ``[first, last)`` of ``[lo, hi)`` when each thread gets an
        equal part of the weight ``s.balance`` (nondecreasing in ``s.var``): the first
        iteration whose weight reaches ``W(lo) + (W(hi) - W(lo)) * t / nth``, by binary
        search, for ``t = tid`` and ``tid + 1``."""
        def weight(k):
            self.vars[s.var] = k
            w = self.expr(s.balance)
            return self.builder.sext(w, I64) if w.type.width < 64 else w

        bd = self.builder
        w_lo, w_hi = weight(lo), weight(hi)
        span = bd.sub(w_hi, w_lo)
        bounds = []
        for t in (tid, bd.add(tid, ir.Constant(I64, 1))):
            target = bd.add(w_lo, bd.sdiv(bd.mul(span, t), nth))
            bounds.append(self.lower_bound(lo, hi, target, weight))
            bd = self.builder
        last = bd.select(bd.icmp_signed("<", tid, bd.sub(nth, ir.Constant(I64, 1))),
                         bounds[1], hi)
        return bounds[0], last

    def lower_bound(self, lo, hi, target, weight):
        """The smallest ``k`` in ``[lo, hi]`` with ``weight(k) >= target`` (``hi`` if
        none): a binary search."""
        bd = self.builder
        pre = bd.block
        head = self.fn.append_basic_block("balance.search")
        body = self.fn.append_basic_block("balance.step")
        done = self.fn.append_basic_block("balance.found")
        bd.branch(head)
        bd.position_at_end(head)
        a = bd.phi(I64, name="lo")
        b = bd.phi(I64, name="hi")
        a.add_incoming(lo, pre)
        b.add_incoming(hi, pre)
        bd.cbranch(bd.icmp_signed("<", a, b), body, done)
        bd.position_at_end(body)
        mid = bd.add(a, bd.ashr(bd.sub(b, a), ir.Constant(I64, 1)))
        below = bd.icmp_signed("<", weight(mid), target)
        bd = self.builder
        a.add_incoming(bd.select(below, bd.add(mid, ir.Constant(I64, 1)), a), bd.block)
        b.add_incoming(bd.select(below, b, mid), bd.block)
        bd.branch(head)
        bd.position_at_end(done)
        return a


def generate(func: n.PrimFunc, triple: str, data_layout: str) -> ir.Module:
    return CodeGenLLVM(func, triple, data_layout).generate()
