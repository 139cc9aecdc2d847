"""Vectorizable float32 ``exp`` and ``tanh``, emitted inline.

LLVM lowers ``llvm.exp.v16f32`` to sixteen calls of ``expf``; these polynomial forms
(Cephes' ``expf``; a rational ``tanh``) stay in vector registers. Maximum relative error
is about 1e-7 over the normal range; overflow gives inf, NaN stays NaN. On AVX-512 the
scaling by 2^n is one ``vscalefps`` (results in the denormal range are then denormals);
elsewhere it is built from exponent bits and results below e^-87.3 flush to 0.
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
_TANH_CLAMP = 7.90531110763549805
# highest degree first
_TANH_NUM = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
             5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
             4.89352455891786e-03)
_TANH_DEN = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
             4.89352518554385e-03)
_EXP_MAX = 88.72283905206835
_EXP_MIN = -87.33654475055310
# vscalefps saturates by itself: e^89 overflows, e^-110 rounds to 0
_SCALEF_MAX = 89.0
_SCALEF_MIN = -110.0


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


def _has_avx512() -> bool:
    import functools

    @functools.lru_cache(maxsize=None)
    def features() -> str:
        import llvmlite.binding as llvm
        from .compile import host_machine
        host_machine()
        return llvm.get_host_cpu_features().flatten()
    return "+avx512f" in features()


def _avx512_vector(e: _Emitter) -> bool:
    """Whether the value can go through 512-bit intrinsics 16 lanes at a time."""
    k = e.lanes // 16
    return bool(e.lanes) and e.lanes % 16 == 0 and k & (k - 1) == 0 and _has_avx512()


def _by_16_lanes(e: _Emitter, name: str, args, extra):
    """Apply a 16-lane AVX-512 intrinsic to each 16-lane piece of ``args``."""
    b = e.b
    v16 = ir.VectorType(F32, 16)
    fn = e.declare(name, v16, [v16] * len(args) + [x.type for x in extra])
    parts = []
    for start in range(0, e.lanes, 16):
        idx = ir.Constant(ir.VectorType(I32, 16), list(range(start, start + 16)))
        pieces = [b.shuffle_vector(a, a, idx) if e.lanes != 16 else a for a in args]
        parts.append(b.call(fn, pieces + list(extra)))
    while len(parts) > 1:  # concatenate pairwise back to e.lanes
        merged = []
        for a, c in zip(parts[::2], parts[1::2]):
            width = a.type.count * 2
            merged.append(b.shuffle_vector(a, c, ir.Constant(ir.VectorType(I32, width),
                                                             list(range(width)))))
        parts = merged
    return parts[0]


def _scalef(e: _Emitter, y, n):
    """``y * 2**n`` by AVX-512's vscalefps: one instruction that also overflows to inf
    and underflows through the denormals to 0."""
    undef = ir.Constant(ir.VectorType(F32, 16), None)
    all_lanes = ir.Constant(ir.IntType(16), -1)
    current = ir.Constant(I32, 4)  # the current rounding mode
    return _by_16_lanes(e, "llvm.x86.avx512.mask.scalef.ps.512", [y, n],
                        [undef, all_lanes, current])


def _reciprocal(e: _Emitter, d):
    """``1 / d``: on AVX-512 a 14-bit estimate (vrcp14ps) and one Newton step (~1 ulp),
    several times the throughput of a vector division; else a division."""
    if not _avx512_vector(e):
        return e.b.fdiv(e.f(1.0), d)
    b = e.b
    undef = ir.Constant(ir.VectorType(F32, 16), None)
    r = _by_16_lanes(e, "llvm.x86.avx512.rcp14.ps.512", [d],
                     [undef, ir.Constant(ir.IntType(16), -1)])
    # r' = r + r*(1 - d*r)
    return e.fma(r, e.fma(b.fsub(e.f(0.0), d), r, e.f(1.0)), r)


def exp_f32(builder, x, declare):
    e = _Emitter(builder, x, declare)
    b = builder
    if _avx512_vector(e):
        return _exp_f32_scalef(e, x)
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


def _exp_f32_scalef(e: _Emitter, x):
    """The same polynomial, scaled by vscalefps: no exponent-bit arithmetic and no
    overflow or underflow selects (the clamp keeps the reduction exact; NaN passes)."""
    b = e.b
    clamped = b.select(b.fcmp_ordered(">", x, e.f(_SCALEF_MAX)), e.f(_SCALEF_MAX), x)
    clamped = b.select(b.fcmp_ordered("<", clamped, e.f(_SCALEF_MIN)), e.f(_SCALEF_MIN),
                       clamped)
    n = e.call("rint", b.fmul(clamped, e.f(_LOG2E)))
    r = e.fma(n, e.f(-_LN2_HI), clamped)
    r = e.fma(n, e.f(-_LN2_LO), r)
    p = e.poly(r, _EXP_POLY)
    y = b.fadd(e.fma(b.fmul(p, r), r, r), e.f(1.0))
    return _scalef(e, y, n)


def tanh_f32(builder, x, declare):
    """A rational minimax form, x*P(x^2)/Q(x^2) of degrees 13/6 (the coefficients Eigen
    uses): max relative error ~4e-7 in float32, one reciprocal instead of an exp and a
    division. Past |x| = 7.9053 tanh rounds to +-1."""
    e = _Emitter(builder, x, declare)
    b = builder
    bound = e.f(_TANH_CLAMP)
    neg_bound = e.f(-_TANH_CLAMP)
    xc = b.select(b.fcmp_ordered(">", x, bound), bound, x)
    xc = b.select(b.fcmp_ordered("<", xc, neg_bound), neg_bound, xc)
    x2 = b.fmul(xc, xc)
    num = b.fmul(e.poly(x2, _TANH_NUM), xc)
    den = e.poly(x2, _TANH_DEN)
    r = b.fmul(num, _reciprocal(e, den))
    # the form ends a few ulp below 1: past the clamp the answer is exactly +-1
    saturated = b.fcmp_ordered(">", e.call("fabs", x), bound)
    return b.select(saturated, e.call("copysign", e.f(1.0), x), r)
