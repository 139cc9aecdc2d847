"""Vectorizable float32 ``exp`` and ``tanh``, emitted inline.

LLVM lowers ``llvm.exp.v16f32`` to sixteen calls of ``expf``; these polynomial forms
(after Cephes' ``expf`` and ``tanhf``) stay in vector registers. Maximum relative error
is about 1e-7 over the normal range; overflow gives inf, results below e^-87.3 (denormals)
flush to 0, NaN stays NaN.
"""
from __future__ import annotations

from llvmlite import ir

F32 = ir.FloatType()
I32 = ir.IntType(32)

_LOG2E = 1.44269504088896341
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
             1.6666665459e-1, 5.0000001201e-1)
_TANH_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
              -3.33332819422e-1)
_EXP_MAX = 88.72283905206835
_EXP_MIN = -87.33654475055310


class _Emitter:
    def __init__(self, builder: ir.IRBuilder, like: ir.Value, declare):
        self.b = builder
        self.lanes = like.type.count if isinstance(like.type, ir.VectorType) else 0
        self.declare = declare

    def ftype(self):
        return ir.VectorType(F32, self.lanes) if self.lanes else F32

    def itype(self):
        return ir.VectorType(I32, self.lanes) if self.lanes else I32

    def f(self, v: float):
        return ir.Constant(self.ftype(), [float(v)] * self.lanes if self.lanes else float(v))

    def i(self, v: int):
        return ir.Constant(self.itype(), [int(v)] * self.lanes if self.lanes else int(v))

    def call(self, name: str, *args):
        suffix = f"v{self.lanes}f32" if self.lanes else "f32"
        fn = self.declare(f"llvm.{name}.{suffix}", self.ftype(), [self.ftype()] * len(args))
        return self.b.call(fn, list(args))

    def fma(self, a, b, c):
        return self.call("fma", a, b, c)

    def poly(self, x, coeffs):
        acc = self.f(coeffs[0])
        for c in coeffs[1:]:
            acc = self.fma(acc, x, self.f(c))
        return acc


def exp_f32(builder, x, declare):
    e = _Emitter(builder, x, declare)
    b = builder
    clamped = b.select(b.fcmp_ordered(">", x, e.f(_EXP_MAX)), e.f(_EXP_MAX), x)
    clamped = b.select(b.fcmp_ordered("<", clamped, e.f(_EXP_MIN)), e.f(_EXP_MIN), clamped)
    n = e.call("rint", b.fmul(clamped, e.f(_LOG2E)))
    r = e.fma(n, e.f(-_LN2_HI), clamped)
    r = e.fma(n, e.f(-_LN2_LO), r)
    p = e.poly(r, _EXP_POLY)
    y = b.fadd(e.fma(b.fmul(p, r), r, r), e.f(1.0))
    # y * 2^n, with 2^n built from the exponent bits (n is in [-126, 128])
    ni = b.fptosi(n, e.itype())
    half = b.ashr(ni, e.i(1))
    two_a = b.bitcast(b.shl(b.add(half, e.i(127)), e.i(23)), e.ftype())
    two_b = b.bitcast(b.shl(b.add(b.sub(ni, half), e.i(127)), e.i(23)), e.ftype())
    y = b.fmul(b.fmul(y, two_a), two_b)
    y = b.select(b.fcmp_ordered(">", x, e.f(_EXP_MAX)), e.f(float("inf")), y)
    return b.select(b.fcmp_ordered("<", x, e.f(_EXP_MIN)), e.f(0.0), y)


def tanh_f32(builder, x, declare):
    e = _Emitter(builder, x, declare)
    b = builder
    ax = e.call("fabs", x)
    # small |x|: odd polynomial; large: 1 - 2/(exp(2|x|) + 1), with the sign of x
    z = b.fmul(x, x)
    small = e.fma(b.fmul(e.poly(z, _TANH_POLY), z), x, x)
    big = b.fsub(e.f(1.0), b.fdiv(e.f(2.0), b.fadd(exp_f32(builder, b.fmul(ax, e.f(2.0)),
                                                             declare), e.f(1.0))))
    big = e.call("copysign", big, x)
    return b.select(b.fcmp_ordered("<", ax, e.f(0.625)), small, big)
