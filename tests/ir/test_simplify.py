from hypothesis import given, settings
from hypothesis import strategies as st

from tensordsl.arith.simplify import Simplifier, simplify_expr
from tensordsl.ir import nodes as n
from tensordsl.ir.printer import print_ir

i, j, f = n.Var("i"), n.Var("j"), n.Var("f")
RANGES = {i: (0, 127), j: (0, 7), f: (0, 1023)}
TRUE, FALSE = n.IntImm("bool", 1), n.IntImm("bool", 0)


def check(e, want, ranges=RANGES):
    """``e`` simplifies to ``want``, compared as IR structure (not as printed text)."""
    got = simplify_expr(e, ranges)
    keys = Simplifier()
    assert keys.key(got) == keys.key(want), \
        f"{print_ir(e)} simplified to {print_ir(got)}, expected {print_ir(want)}"


def test_floordiv_of_a_split_index_recovers_the_outer_loop():
    check((i * 8 + j) // 8, i)


def test_floormod_of_a_split_index_recovers_the_inner_loop():
    check((i * 8 + j) % 8, j)


def test_fused_index_recombines():
    check((f // 32) * 32 + f % 32, f)


def test_division_and_a_reduced_modulus_recombine():
    # 64*i % 58 is first reduced to 6*i % 58; the pair still recombines into one index
    e = i * 64 + j * 3 + 5
    check((e // 58) * 58 + e % 58, i * 64 + j * 3 + 5)


def test_guard_proved_by_loop_bounds():
    check(i * 8 + j < 1024, TRUE)
    check(i * 8 + j < 1000, i * 8 + j < 1000)


def test_nested_division_and_modulus():
    check((f // 4) // 8, f // 32)
    check((f % 32) % 8, f % 8)


def test_min_max_decided_by_difference():
    check(n.Min(i * 8, i * 8 + 7), i * 8)
    check(n.Max(i * 8, i * 8 + 7), i * 8 + 7)


def test_terms_cancel():
    check((i * 8 + j + 3) - (i * 8 + j), n.IntImm("int64", 3))


def test_loop_of_extent_one_disappears():
    buf = n.Buffer("B", "float32", (n.IntImm("int64", 4),))
    one = n.FloatImm("float32", 1.0)
    loop = n.For(i, n.IntImm("int64", 2), n.IntImm("int64", 1), "serial", n.Store(buf, one, i))
    after = Simplifier().visit(loop)
    # the loop's one iteration, i = 2, in its place: B[2] = 1.0
    assert isinstance(after, n.Store) and after.buffer is buf and after.value is one
    assert isinstance(after.index, n.IntImm) and after.index.value == 2


# --- random affine expressions keep their value under simplification -------------

def _exprs():
    leaves = st.sampled_from([i, j, f]) | st.integers(-20, 20).map(lambda v: n.IntImm("int64", v))

    def extend(children):
        binop = st.tuples(st.sampled_from([n.Add, n.Sub, n.Min, n.Max]), children, children)
        scale = st.tuples(children, st.integers(-9, 9)).map(lambda t: n.Mul(t[0], n.IntImm("int64", t[1])))
        divmod_ = st.tuples(st.sampled_from([n.FloorDiv, n.FloorMod]), children, st.integers(1, 40)).map(
            lambda t: t[0](t[1], n.IntImm("int64", t[2])))
        return binop.map(lambda t: t[0](t[1], t[2])) | scale | divmod_

    return st.recursive(leaves, extend, max_leaves=8)


def _eval(e, env):
    if isinstance(e, n.IntImm):
        return e.value
    if isinstance(e, n.Var):
        return env[e]
    a, b = _eval(e.a, env), _eval(e.b, env)
    return {n.Add: a + b, n.Sub: a - b, n.Mul: a * b, n.Min: min(a, b), n.Max: max(a, b),
            n.FloorDiv: a // b if b else 0, n.FloorMod: a % b if b else 0}[type(e)]


@settings(max_examples=300, deadline=None)
@given(_exprs(), st.integers(0, 127), st.integers(0, 7), st.integers(0, 1023))
def test_simplification_preserves_value(e, vi, vj, vf):
    env = {i: vi, j: vj, f: vf}
    simplified = simplify_expr(e, RANGES)
    assert _eval(simplified, env) == _eval(e, env), (print_ir(e), print_ir(simplified))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(-40, 40), st.integers(-40, 40), st.integers(1, 13),
       st.integers(-3, 3))
def test_extent_upper_bound_of_paired_floor_divisions_holds_for_every_x(a, c1, c2, d, k):
    # k*((a*x + c1)//d) - k*((a*x + c2)//d) + 7, for shifts in either order
    x = n.Var("x")
    e = (x * a + c1) // d * k - (x * a + c2) // d * k + 7
    bound = Simplifier().extent_upper_bound(e)
    if k == 0:
        return
    assert bound is not None
    worst = max(k * ((a * v + c1) // d) - k * ((a * v + c2) // d) + 7 for v in range(-50, 50))
    assert worst <= bound


def test_a_lane_comparison_every_lane_decides_alike_folds():
    k = n.Var("k")
    lanes = n.Ramp(k * 16, n.IntImm("int64", 1), 16)
    bound = n.Broadcast(n.IntImm("int64", 56), 16)
    check(n.LT(lanes, bound), n.Broadcast(TRUE, 16), {k: (0, 2)})     # lanes <= 47
    check(n.LT(lanes, bound), n.Broadcast(FALSE, 16), {k: (4, 9)})    # lanes >= 64
    check(n.LT(lanes, bound), n.LT(lanes, bound), {k: (0, 3)})        # 48..63: undecided


# --- bounds a person would simplify (README's split of a symbolic axis) -------------

def test_min_of_floor_and_ceiling_division_is_the_floor():
    # a symbolic axis split by 8: the guard-free part ends at n // 8, not min(...)
    size = n.Var("n")
    check(n.Min(size // 8, (size + 7) // 8), size // 8, {})
    check(n.Max(size // 8, (size + 7) // 8), (size + 7) // 8, {})
    start = n.Min(size // 8, (size + 7) // 8)
    check(start + ((size + 7) // 8 - start), (size + 7) // 8, {})


def test_division_compared_with_a_constant_compares_the_dividend():
    m = n.Var("m")
    check((m + 3) // 4 <= 0, m <= 0, {})
    check(n.LT((m + 3) // 4, n.IntImm("int64", 2)), n.LT(m, n.IntImm("int64", 5)), {})
    check(n.GT((m + 3) // 4, n.IntImm("int64", 0)), n.GT(m, n.IntImm("int64", 0)), {})
    check(n.GE(n.IntImm("int64", 1), m // 4), m <= 7, {})


def test_a_comparison_with_zero_reads_as_two_sums():
    # unswitch_guards' "whole tile inside?": j*16 - n + 15 < 0 reads j*16 + 15 < n
    size = n.Var("n")
    zero = n.IntImm("int64", 0)
    check(n.LT(j * 16 - size + 15, zero), n.LT(j * 16 + 15, size), {})
    check(n.GE(size - j * 16, zero), n.GE(size, j * 16), {})
    check(n.LT(j - size - 1, zero), n.LT(j, size + 1), {})


def test_a_sum_starts_with_a_positive_term():
    size = n.Var("n")
    got = simplify_expr(n.Sub(n.IntImm("int64", 0), i * 8) + size, RANGES)
    assert print_ir(got) == "n - i*8"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([n.LT, n.LE, n.GT, n.GE]), st.integers(-9, 9), st.integers(1, 9),
       st.integers(-20, 20), st.booleans(), st.integers(-60, 60))
def test_division_comparisons_keep_their_value(cmp, shift, d, q, flip, value):
    x, y = n.Var("x"), n.Var("y")
    div = (x + shift) // d
    e = cmp(n.IntImm("int64", q), div) if flip else cmp(div, n.IntImm("int64", q))
    if q % 3 == 0:   # a comparison with zero of a sum with both signs
        e = cmp(x * d - y * 2 + shift + q, n.IntImm("int64", 0))
    got = simplify_expr(e, {})
    py = {n.LT: lambda a, b: a < b, n.LE: lambda a, b: a <= b,
          n.GT: lambda a, b: a > b, n.GE: lambda a, b: a >= b}

    def value_of(expr):
        if isinstance(expr, n.IntImm):
            return bool(expr.value) if expr.dtype == "bool" else expr.value
        if isinstance(expr, n.Var):
            return value if expr.name == "x" else value * 7 % 23 - 11
        a, b = value_of(expr.a), value_of(expr.b)
        ops = {n.Add: lambda: a + b, n.Sub: lambda: a - b, n.Mul: lambda: a * b,
               n.FloorDiv: lambda: a // b, n.Min: lambda: min(a, b), n.Max: lambda: max(a, b)}
        return ops[type(expr)]() if type(expr) in ops else py[type(expr)](a, b)

    assert value_of(got) == value_of(e), (print_ir(e), print_ir(got))


@settings(max_examples=200, deadline=None)
@given(st.integers(-30, 30), st.integers(-30, 30), st.integers(1, 12), st.integers(-80, 80))
def test_min_of_paired_divisions_keeps_its_value(c1, c2, d, value):
    x = n.Var("x")
    e = n.Min((x + c1) // d, (x + c2) // d) - n.Max((x * 3 + c2) // d, (x * 3 + c1) // d)
    got = simplify_expr(e, {})
    want = min((value + c1) // d, (value + c2) // d) - max((3 * value + c2) // d,
                                                           (3 * value + c1) // d)
    assert _eval(got, {x: value}) == want, print_ir(got)


def test_fused_index_over_a_symbolic_extent_recombines():
    # fuse(i, j) over (m, n): j = f % n, i = f // n, and i*n + j is f again
    size = n.Var("n")
    check((f // size) * size + f % size, f, {})
    check(size * ((f + 3) // size) + (f + 3) % size, f + 3, {})
    check(((f // size) * size) * 2 + (f % size) * 2, f * 2, {})
    check((f // size) * size + f % j, (f // size) * size + f % j, {})   # another divisor


def test_a_product_of_sizes_is_not_negative():
    m, size = n.Var("m"), n.Var("n")
    sizes = {m: (0, None), size: (0, None)}
    check(n.Max((m * size) // 32, n.IntImm("int64", 0)), (m * size) // 32, sizes)
    check(n.Min((m * size) // 32, (m * size + 31) // 32), (m * size) // 32, sizes)


def test_a_remainder_written_out_becomes_a_modulo():
    """``k - 2*(k // 2)`` (a derived index) is ``k % 2``, whose range the bounds check
    knows; ``3*k - 6*(k // 2)`` is ``3*(k % 2)``."""
    from tensordsl.ir import nodes as n
    i, k = n.Var("i"), n.Var("k")
    assert str(simplify_expr(i + k - 2 * (k // 2))) == str(i + k % 2)
    assert str(simplify_expr(k * 3 - (k // 2) * 6)) == str((k % 2) * 3)
    assert str(simplify_expr(k - 2 * ((k + 1) // 2))) != str(k % 2)   # not the same x


def test_a_float_times_one_is_itself():
    """``x * 1.0`` folds (exactly x, NaN and -0.0 included): the partial derivative of a
    padding's read folds to one in derived adjoints."""
    from tensordsl.ir import nodes as n
    x = n.Var("x", "float32")
    one = n.FloatImm("float32", 1.0)
    assert simplify_expr(n.Mul(x, one)) is x and simplify_expr(n.Mul(one, x)) is x
    assert isinstance(simplify_expr(n.Mul(x, n.FloatImm("float32", 2.0))), n.Mul)


def test_a_remainder_smaller_than_a_divisor_of_the_divisor_does_not_carry():
    """An implicit GEMM's 32-deep K slice ko*32 + t (t < 32) over window rows of 192
    and channel runs of 64: the offsets are the slice number's, the same for every
    thread, so they are computed once a slice (and the copies stay 16-byte vectors)."""
    ko, t = n.Var("ko"), n.Var("t")
    ranges = {ko: (0, 17), t: (0, 3)}
    check((ko * 32 + t * 8) // 192, ko // 6, ranges)
    check((ko * 32 + t * 8 + 64) // 96, (ko + 2) // 3, ranges)
    check((ko * 32 + t * 8) % 64, ko % 2 * 32 + t * 8, ranges)
    # a term that divides c stays in the quotient beside the smaller multiple
    b = n.Var("b")
    check((b * 192 + ko * 32 + t * 8) // 96, b * 2 + ko // 3, {**ranges, b: (0, 9)})
    # a remainder that can reach g carries: left alone
    check((ko * 32 + t * 12) // 96, (ko * 32 + t * 12) // 96, ranges)


@settings(max_examples=400, deadline=None)
@given(st.integers(2, 12), st.integers(2, 8), st.integers(-3, 3), st.integers(0, 14),
       st.integers(0, 24), st.sampled_from([n.FloorDiv, n.FloorMod]), st.data())
def test_divisions_of_a_multiple_plus_a_small_remainder_keep_their_value(
        g, q, k, top, const, op, data):
    """(g*k*i + j + const + g*q*f) // (g*q) and % (g*q) with j in [0, top]: the split
    into a multiple of g and a remainder applies only where the remainder stays below g
    (top + const % g < g), and keeps the value at every point, the edges included."""
    ranges = {i: (0, 127), j: (0, top), f: (-60, 60)}
    e = op(i * (g * k) + j + const + f * (g * q), n.IntImm("int64", g * q))
    simplified = simplify_expr(e, ranges)
    vj = data.draw(st.sampled_from([0, top, data.draw(st.integers(0, top))]))
    env = {i: data.draw(st.integers(0, 127)), j: vj, f: data.draw(st.integers(-60, 60))}
    assert _eval(simplified, env) == _eval(e, env), (print_ir(e), print_ir(simplified))


def _xor(a, b):
    return n.Call("int64", "bitwise_xor", (a, b))


def test_a_swizzled_vector_index_is_a_base_plus_the_lane():
    """flatten_storage's swizzle of a 16-byte vector's offset 8q + v (v the lane, < 8):
    the chunk bits move, the lane passes through, so the copy stays one vector; a
    1024-byte block (a pipeline stage, 512 halves) passes through the permutation."""
    q, v, stage = n.Var("q"), n.Var("v"), n.Var("stage")
    ranges = {q: (0, 255), v: (0, 7), stage: (0, 2)}
    lin = q * 8 + v
    swz = _xor(lin, (lin // 64) % 8 * 8)
    check(swz, _xor(q * 8, q // 8 % 8 * 8) + v, ranges)
    lin = stage * 512 + (q % 64) * 8
    check(_xor(lin, (lin // 64) % 8 * 8),
          stage * 512 + _xor(q % 64 * 8, q % 64 // 8 * 8), ranges)


def _eval_xor(e, env):
    if isinstance(e, n.Call):
        a, b = (_eval_xor(x, env) for x in e.args)
        return a ^ b
    if isinstance(e, n.IntImm):
        return e.value
    if isinstance(e, n.Var):
        return env[e]
    a, b = _eval_xor(e.a, env), _eval_xor(e.b, env)
    ops = {n.Add: lambda: a + b, n.Sub: lambda: a - b, n.Mul: lambda: a * b,
           n.FloorDiv: lambda: a // b, n.FloorMod: lambda: a % b}
    return ops[type(e)]()


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 6), st.integers(-3, 3), st.integers(0, 64), st.integers(0, 6),
       st.data())
def test_xor_of_a_split_offset_keeps_its_value(log_g, k, const, log_scale, data):
    """(g*k*i + j + const + 512*f) ^ (((...) // 64) % 8 * scale) with j in [0, top],
    top up to 2g: the lane and block rules apply only where exact (the remainder below
    g, the block above the other operand), and keep the value everywhere."""
    g, scale = 1 << log_g, 1 << log_scale
    top = data.draw(st.integers(0, 2 * g))
    ranges = {i: (0, 127), j: (0, top), f: (0, 9)}
    lin = i * (g * k) + j + const + f * 512
    e = _xor(lin, (lin // 64) % 8 * scale)
    simplified = simplify_expr(e, ranges)
    env = {i: data.draw(st.integers(0, 127)), j: data.draw(st.sampled_from([0, top])),
           f: data.draw(st.integers(0, 9))}
    if _eval_xor(lin, env) < 0:
        return                      # (a swizzled offset is never negative)
    assert _eval_xor(simplified, env) == _eval_xor(e, env), (print_ir(e), print_ir(simplified))


def test_the_digits_of_a_fused_index_recombine():
    """An implicit GEMM's output position p written back as (image, row, column) of an
    8x56x56 output and flattened again is p: each (p // a % b)*a + p % a merges into
    p % (a*b), then (p // c)*c + p % c into p."""
    p = n.Var("p")
    ranges = {p: (0, 25087), f: (0, 63)}
    b, y, x = p // 3136, p // 56 % 56, p % 56
    check(((b * 56 + y) * 56 + x) * 64 + f, p * 64 + f, ranges)
    check(p // 56 % 56 * 56 + p % 56, p % 3136, ranges)
    # the remainder's coefficients reduced first ((16q + t) % 12 is (4q + t) % 12)
    q, t = n.Var("q"), n.Var("t")
    x = q * 16 + t
    check(x // 144 * 144 + x // 12 % 12 * 12 + x % 12, x, {q: (0, 8), t: (0, 15)})
    # digits of different numbers, or weights that do not match, stay apart
    check(f // 8 % 4 * 8 + p % 8, f // 8 % 4 * 8 + p % 8, ranges)
    check(p // 8 % 4 * 4 + p % 8, p // 8 % 4 * 4 + p % 8, ranges)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(-3, 3), st.integers(-3, 3),
       st.integers(0, 2), st.integers(1, 20), st.integers(0, 1023), st.integers(0, 7))
def test_recombined_digits_keep_their_value(a, b, m, m2, shape, c, vf, vj):
    """(x // a % b)*a*m + (x % a)*m2 (+ an outer digit) for x = f or c*f + j (whose
    remainders get their coefficients reduced): merged only where the weights match,
    the value kept everywhere."""
    x = f if shape == 0 else f * c + j
    e = (x // a % b) * (a * m) + (x % a) * m2
    if shape == 2:
        e = e + (x // (a * b)) * (a * b * m)
    env = {i: 0, j: vj, f: vf}
    assert _eval(simplify_expr(e, RANGES), env) == _eval(e, env)
