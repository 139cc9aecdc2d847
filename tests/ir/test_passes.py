"""Each lowering pass on small programs: the IR before and after, and what it computes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensordsl as td
from targets.base import Target, get_backend
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import post_order, uses_var
from tensordsl.lower.inject_virtual_threads import inject_virtual_threads
from tensordsl.lower.pipeline import GPU_PASSES, PASS_NAMES, PASSES, simplify
from tensordsl.lower.unroll import unroll_loops
from tensordsl.lower.vectorize import vectorize_loops
from tensordsl.runtime.module import Module
from tensordsl.schedule.trace import dumps, loads, replay
from tests.helpers import poisoned
from tests.lower.test_primitives import matmul_def


def body_text(func):
    return "\n".join(line.strip() for line in str(func).splitlines()[1:])


def run_ir(func: n.PrimFunc, *arrays):
    """Compile ``func`` as it stands (no further passes) for the CPU and run it on numpy
    arrays: what a pass returns must still compute what the program means."""
    target = Target.parse("llvm")
    backend = get_backend("llvm")
    source = backend.codegen(func, target)
    kernel = backend.load(backend.compile(source, target), func, target)
    Module(func, kernel, backend, target, lambda: source)(*arrays)


def i64(value):
    return n.IntImm("int64", value)


def stencil():
    A = td.placeholder((49,), name="A")
    B = td.compute((49,), lambda i: A[i] * 2.0, name="B")
    C = td.compute((47,), lambda i: B[i] + B[i + 2], name="C")
    s = td.create_schedule(C.op)
    o, i = s[C].split(C.op.axis[0], factor=16)
    s[B].compute_at(s[C], o)
    return s, [A, C]


def test_bound_inference_of_a_compute_at_stage():
    s, args = stencil()
    bounds = str(td.lower(s, args, stop_after="bound_inference"))
    # one iteration of C's outer loop reads B[16*o : 16*o + 18]
    assert "B: i in range(i.outer*16, i.outer*16 + 18)" in bounds


def test_schedule_ops_nests_and_guards_the_attached_stage():
    s, args = stencil()
    text = body_text(td.lower(s, args, stop_after="schedule_ops"))
    assert "realize B[i.outer*16:i.outer*16 + 18] float32 in global:" in text
    assert "if i.outer*16 + i >= 0 && i.outer*16 + i < 49:" in text


def test_simplify_removes_provable_guards():
    s, args = stencil()
    text = body_text(td.lower(s, args, stop_after="simplify"))
    assert ">= 0" not in text            # i.outer*16 + i is never negative
    assert "if i.outer*16 + i < 49:" in text  # the last tile overruns: kept


def test_flatten_allocates_the_tile_and_rebases_indices():
    s, args = stencil()
    text = body_text(td.lower(s, args, stop_after="simplify_flat"))
    assert "B = allocate(float32[18], global)" in text
    assert "C[i.outer*16 + i.inner] = B[i.inner] + B[i.inner + 2]" in text


def _func(body, *buffers, outputs=1):
    return n.PrimFunc("f", buffers, body, buffers[-outputs:], {})


def test_vectorize_turns_the_loop_into_ramps():
    buf_a = n.Buffer("A", "float32", (i64(64),))
    buf_b = n.Buffer("B", "float32", (i64(64),))
    i, o = n.Var("i"), n.Var("o")
    store = n.Store(buf_b, n.Add(n.Load("float32", buf_a, o * 8 + i), n.FloatImm("float32", 1.0)),
                    o * 8 + i)
    after = vectorize_loops(n.For(i, i64(0), i64(8), "vectorized", store))
    # no loop left: one unmasked store of 8 lanes, B[o*8 : o*8 + 8] = A[o*8 : o*8 + 8] + 1
    assert isinstance(after, n.Store) and after.predicate is None
    assert isinstance(after.index, n.Ramp) and after.index.lanes == 8
    assert isinstance(after.index.stride, n.IntImm) and after.index.stride.value == 1
    assert after.value.dtype == "float32x8"
    (load,) = [e for e in post_order(after.value) if isinstance(e, n.Load)]
    assert load.dtype == "float32x8" and isinstance(load.index, n.Ramp)
    a, b = np.arange(64, dtype="float32"), poisoned(64)
    run_ir(_func(n.For(o, i64(0), i64(8), "serial", after), buf_a, buf_b), a, b)
    np.testing.assert_array_equal(b, a + 1)


def test_vectorize_masks_a_lane_dependent_guard():
    buf = n.Buffer("B", "float32", (i64(64),))
    i = n.Var("i")
    body = n.IfThenElse(n.LT(i, i64(5)), n.Store(buf, n.FloatImm("float32", 0.0), i))
    after = vectorize_loops(n.For(i, i64(0), i64(8), "vectorized", body))
    assert isinstance(after, n.IfThenElse)  # runs only if some lane is active
    assert isinstance(after.condition, n.Call) and after.condition.name == "vector_any"
    store = after.then_case
    assert isinstance(store, n.Store) and store.predicate is not None
    assert store.predicate.dtype == "boolx8"
    b = poisoned(64)
    run_ir(_func(after, buf), b)
    # lanes 0..4 stored; lanes 5..7, masked off, keep their poison
    np.testing.assert_array_equal(b, np.concatenate([np.zeros(5), np.full(59, np.nan)]))


def test_vectorize_falls_back_on_a_lane_dependent_else():
    buf = n.Buffer("B", "float32", (i64(64),))
    i = n.Var("i")
    body = n.IfThenElse(n.LT(i, i64(5)), n.Store(buf, n.FloatImm("float32", 0.0), i),
                        n.Store(buf, n.FloatImm("float32", 1.0), i))
    after = vectorize_loops(n.For(i, i64(0), i64(8), "vectorized", body))
    assert isinstance(after, n.For) and after.kind == "serial"
    b = poisoned(64)
    run_ir(_func(after, buf), b)
    np.testing.assert_array_equal(b, np.concatenate([[0] * 5, [1] * 3, [np.nan] * 56]))


def test_unroll_copies_the_body():
    buf = n.Buffer("B", "float32", (i64(4),))
    i = n.Var("i")
    loop = n.For(i, i64(0), i64(3), "unrolled", n.Store(buf, n.FloatImm("float32", 1.0), i))
    after = unroll_loops(loop)
    assert not [s for s in post_order(after) if isinstance(s, n.For)]
    stores = [s for s in post_order(after) if isinstance(s, n.Store)]
    assert len(stores) == 3 and not [s for s in stores if uses_var(s.index, i)]
    b = poisoned(4)
    run_ir(_func(after, buf), b)
    np.testing.assert_array_equal(b, [1, 1, 1, np.nan])


def test_inject_virtual_threads_shares_shared_tiles_and_slices_private_buffers():
    # for vx in vthread(2):
    #   T = allocate(float32[4], local)         an accumulator per virtual thread
    #   T[j] = vx
    #   for k in range(3):
    #     S = allocate(float32[4], shared)      one tile, the same for every vx
    #     S[m] = A[k*4 + m]
    #     T[j] = T[j] + S[j]
    #   C[vx*4 + j] = T[j]                      vx + the column sums of A
    inp = n.Buffer("A", "float32", (i64(12),))
    out = n.Buffer("C", "float32", (i64(8),))
    tile = n.Buffer("S", "float32", (i64(4),), "shared")
    acc = n.Buffer("T", "float32", (i64(4),), "local")
    vx, k, j, m = n.Var("vx"), n.Var("k"), n.Var("j"), n.Var("m")
    init = n.For(j, i64(0), i64(4), "serial", n.Store(acc, n.Cast("float32", vx), j))
    fill = n.For(m, i64(0), i64(4), "serial",              # the same for every vx
                 n.Store(tile, n.Load("float32", inp, k * 4 + m), m))
    update = n.For(j, i64(0), i64(4), "serial", n.Store(
        acc, n.Add(n.Load("float32", acc, j), n.Load("float32", tile, j)), j))
    copy = n.For(j, i64(0), i64(4), "serial",
                 n.Store(out, n.Load("float32", acc, j), vx * 4 + j))
    body = n.Allocate(acc, i64(4), n.seq(
        init, n.For(k, i64(0), i64(3), "serial", n.Allocate(tile, i64(4), n.seq(fill, update))),
        copy))
    loop = n.For(vx, i64(0), i64(2), "vthread", body, "vthread")
    after = simplify(inject_virtual_threads(_func(loop, inp, out)))
    nodes = post_order(after.body)
    assert not [s for s in nodes if isinstance(s, n.For) and s.kind == "vthread"]
    # one tile for both virtual threads, an accumulator each
    assert sorted((a.buffer.name, a.extent.value, a.buffer.scope) for a in nodes
                  if isinstance(a, n.Allocate)) == [("S", 4, "shared"), ("T", 8, "local")]
    # the tile filled once; the two threads' updates interleave in one loop over k
    assert len([s for s in nodes if isinstance(s, n.Store) and s.buffer.name == "S"]) == 1
    (k_loop,) = [s for s in nodes if isinstance(s, n.For) and s.var is k]
    updates = [s for s in post_order(k_loop.body) if isinstance(s, n.For)
               and [x for x in post_order(s.body) if isinstance(x, n.Store)
                    and x.buffer.name == "T"]]
    assert len(updates) == 1
    assert len([x for x in post_order(updates[0].body)
                if isinstance(x, n.Store) and x.buffer.name == "T"]) == 2
    a, c = np.arange(12, dtype="float32"), poisoned(8)
    run_ir(after, a, c)
    sums = a.reshape(3, 4).sum(0)
    np.testing.assert_array_equal(c, np.concatenate([sums, sums + 1]))


def gpu_stencil():
    """The stencil on the GPU: B staged in shared memory per block, filled by the block's
    threads, so the GPU passes have barriers and guards to place."""
    A = td.placeholder((49,), name="A")
    B = td.compute((49,), lambda i: A[i] * 2.0, name="B")
    C = td.compute((47,), lambda i: B[i] + B[i + 2], name="C")
    s = td.create_schedule(C.op)
    bx, tx = s[C].split(C.op.axis[0], factor=16)
    s[C].bind(bx, td.thread_axis("blockIdx.x"))
    s[C].bind(tx, td.thread_axis("threadIdx.x"))
    s[B].set_scope("shared")
    s[B].compute_at(s[C], bx)
    s[B].bind(s[B].split(B.op.axis[0], factor=16)[1], td.thread_axis("threadIdx.x"))
    return s, [A, C]


CPU_PASS_NAMES = [name for name, _ in PASSES]
GPU_ONLY_PASS_NAMES = [name for name, _ in GPU_PASSES if name not in CPU_PASS_NAMES]


@pytest.mark.parametrize("name", PASS_NAMES)
def test_every_pass_can_be_shown_and_verified(name):
    """After every pass the IR passes the verifier (``verify_passes``), keeps the
    signature and the stores to the output; from storage flattening on, where the IR is
    loads and stores of flat buffers, the CPU's compiles as it stands and computes what
    numpy does -- on the stencil and on a blocked, vectorized, ragged matmul."""
    if name == "bound_inference":
        s, args = stencil()
        text = str(td.lower(s, args, stop_after=name, verify_passes=True))
        assert "C: i in range(0, 47)" in text.splitlines()
        return
    target = "cuda" if name in GPU_ONLY_PASS_NAMES else "llvm"
    s, args = gpu_stencil() if target == "cuda" else stencil()
    f = td.lower(s, args, stop_after=name, verify_passes=True, target=target)
    assert [p.name for p in f.params] == ["A", "C"] and [b.name for b in f.outputs] == ["C"]
    nodes = post_order(f.body)
    stores_to_c = [x for x in nodes if isinstance(x, n.Store) and x.buffer.name == "C"
                   or isinstance(x, n.ProducerStore) and x.tensor.name == "C"]
    assert stores_to_c, f"{name} dropped the stores to the output:\n{f}"
    if target == "cuda":
        tags = {x.thread_tag for x in nodes if isinstance(x, n.For) and x.kind == "thread_binding"}
        assert {"blockIdx.x", "threadIdx.x"} <= tags
        if GPU_ONLY_PASS_NAMES.index(name) >= GPU_ONLY_PASS_NAMES.index("insert_barriers"):
            assert [x for x in nodes if isinstance(x, n.Barrier)]  # B passes between threads
        return
    if name not in CPU_PASS_NAMES[CPU_PASS_NAMES.index("flatten_storage"):]:
        return
    rng = np.random.default_rng(5)
    a = rng.standard_normal(49).astype("float32")
    c = poisoned(47)
    run_ir(f, a, c)
    np.testing.assert_allclose(c, 2 * a[:-2] + 2 * a[2:], rtol=1e-6)
    s, args = blocked_matmul(5, 29, 37)
    a = rng.standard_normal((5, 37)).astype("float32")
    b = rng.standard_normal((37, 29)).astype("float32")
    c = poisoned((5, 29))
    run_ir(td.lower(s, args, stop_after=name, verify_passes=True), a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_unknown_pass_name():
    s, args = stencil()
    with pytest.raises(ValueError, match="stop_after"):
        td.lower(s, args, stop_after="nope")


def test_trace_round_trip_replays_the_same_program():
    A, Bt, C, k = matmul_def(64, 64, 64)
    s = td.create_schedule(C.op)
    CC = s.cache_write(C, "global")
    xo, yo, xi, yi = s[C].tile(C.op.axis[0], C.op.axis[1], 16, 16)
    s[CC].compute_at(s[C], yo)
    ko, ki = s[CC].split(s[CC].op.reduce_axis[0], factor=4)
    s[CC].reorder(ko, s[CC].op.axis[0], ki, s[CC].op.axis[1])
    s[CC].vectorize(s[CC].op.axis[1])
    s[C].parallel(xo)
    steps = loads(dumps(s.trace))
    s2 = replay(steps, [C.op])
    assert str(td.lower(s2, [A, Bt, C])) == str(td.lower(s, [A, Bt, C]))


def blocked_matmul(M, N, K, kc=16, nr=16, reduce="sum"):
    A = td.placeholder((M, K), name="A")
    B = td.placeholder((K, N), name="B")
    k = td.reduce_axis((0, K), "k")
    red = td.sum if reduce == "sum" else td.max
    C = td.compute((M, N), lambda i, j: red(A[i, k] * B[k, j], axis=k), name="C")
    s = td.create_schedule(C.op)
    i, j = C.op.axis
    jo, ji = s[C].split(j, factor=nr)
    ko, ki = s[C].split(k, factor=kc)
    s[C].reorder(i, jo, ko, ki, ji)
    s[C].vectorize(ji)
    return s, [A, B, C]


def test_local_accumulators_start_from_the_identity_and_fold_once():
    s, args = blocked_matmul(8, 32, 64)
    text = body_text(td.lower(s, args))
    acc = "C.acc[ramp(0, 1, 16)]"
    assert f"{acc} = x16(0.0f)" in text
    assert f"{acc} = {acc}:float32x16 + " in text          # inside the k loop
    assert f"+ {acc}:float32x16" in text                     # the fold after it
    assert "prefetch(C[" in text                             # C's lines before the loop
    before = body_text(td.lower(s, args, stop_after="unroll"))
    assert "acc" not in before and "prefetch" not in before


@pytest.mark.parametrize("reduce", ["sum", "max"])
@pytest.mark.parametrize("shape", [(8, 32, 64), (5, 29, 37)])
def test_local_accumulators_compute_the_same_result(reduce, shape):
    rng = np.random.default_rng(1)
    M, N, K = shape
    s, args = blocked_matmul(M, N, K, reduce=reduce)
    a = rng.standard_normal((M, K)).astype("float32")
    b = rng.standard_normal((K, N)).astype("float32")
    c = poisoned((M, N))
    td.build(s, args)(a, b, c)
    prod = a[:, :, None] * b[None, :, :]
    ref = prod.sum(1) if reduce == "sum" else prod.max(1)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4)


def test_local_accumulators_leave_a_loop_that_reads_its_own_output():
    # a prefix sum reads the element it updates from another iteration: not a reduction
    # into a fixed element, so the loop must stay as it is
    buf = n.Buffer("X", "float32", (n.IntImm("int64", 64),))
    k = n.Var("k")
    store = n.Store(buf, n.Add(n.Load("float32", buf, n.IntImm("int64", 0)),
                               n.Load("float32", buf, k)), n.IntImm("int64", 0))
    loop = n.For(k, n.IntImm("int64", 0), n.IntImm("int64", 64), "serial", store)
    from tensordsl.lower.local_accumulators import local_accumulators
    assert local_accumulators(loop) is loop


def test_ragged_k_inside_the_last_column_panel_becomes_a_loop_bound():
    s, args = blocked_matmul(4, 29, 37, kc=16, nr=16)
    text = body_text(td.lower(s, args))
    # both the full panels and the ragged one: full k blocks, then a 5-long last block,
    # with no guard on k left
    assert text.count("for k.inner in range(0, 5):") >= 2, text
    assert "k.outer*16 + k.inner < 37" not in text


def test_parallel_body_temporaries_get_one_workspace_slice_per_thread():
    A = td.placeholder((64, 4096), name="A")
    T = td.compute((64, 4096), lambda i, j: A[i, j] * 2.0, name="T")
    B = td.compute((64, 4096), lambda i, j: T[i, 4095 - j] + 1.0, name="B")
    s = td.create_schedule(B.op)
    o, i = s[B].split(B.op.axis[0], factor=8)
    s[T].compute_at(s[B], o)        # 8 x 4096 floats = 128 KiB per iteration of o
    s[B].parallel(o)
    f = td.lower(s, [A, B])
    text = str(f)
    assert "thread_index()*32768" in text and "team_size" in text
    assert "allocate" not in text
    a = np.random.default_rng(2).standard_normal((64, 4096)).astype("float32")
    b = poisoned(a.shape)
    td.build(s, [A, B])(a, b)
    np.testing.assert_allclose(b, a[:, ::-1] * 2 + 1, rtol=1e-6)


def test_a_guard_on_an_unrolled_pair_partitions_the_loop():
    # k split by 16 then by 2 (unrolled): in the last block the pair guard depends on the
    # unrolled variable, so the loop splits into guard-free pairs and a guarded edge
    A = td.placeholder((3, 37), name="A")
    k = td.reduce_axis((0, 37), "k")
    C = td.compute((3,), lambda i: td.sum(A[i, k] * 2.0, axis=k), name="C")
    s = td.create_schedule(C.op)
    ko, ki = s[C].split(k, factor=16)
    kio, kii = s[C].split(ki, factor=2)
    s[C].unroll(kii)
    text = body_text(td.lower(s, [A, C], stop_after="unswitch_guards"))
    loops = [line for line in text.splitlines() if line.startswith("for k.inner.outer")]
    assert len(loops) >= 2, text
    a = np.random.default_rng(3).standard_normal((3, 37)).astype("float32")
    c = poisoned(3)
    td.build(s, [A, C])(a, c)
    np.testing.assert_allclose(c, a.sum(1) * 2, rtol=1e-5, atol=1e-5)


def test_a_pragma_wraps_the_loop_body_in_the_ir():
    A = td.placeholder((64,), name="A")
    B = td.compute((64,), lambda i: A[i] + 1.0, name="B")
    s = td.create_schedule(B.op)
    o, i = s[B].split(B.op.axis[0], factor=16)
    s[B].pragma(o, "my_hint")
    s[B].vectorize(i)
    text = body_text(td.lower(s, [A, B]))
    assert text.splitlines()[:2] == ["for i.outer in range(0, 4):", "pragma my_hint:"]
    a = np.arange(64, dtype="float32")
    b = poisoned(a.shape)
    td.build(s, [A, B])(a, b)
    np.testing.assert_array_equal(b, a + 1)


def test_prefetch_hints_the_next_rows_lines():
    A = td.placeholder((8, 64), name="A")
    B = td.compute((8, 64), lambda i, j: A[i, j] * 3.0, name="B")
    s = td.create_schedule(B.op)
    s[B].prefetch(A, B.op.axis[0], 1)
    text = body_text(td.lower(s, [A, B]))
    # 64 floats = 4 lines of the next row, one hint per line
    assert "for A.pf1 in range(0, 4):" in text
    assert "prefetch(A[i*64 + A.pf1*16 + 64])" in text
    a = np.arange(512, dtype="float32").reshape(8, 64)
    b = poisoned(a.shape)
    td.build(s, [A, B])(a, b)
    np.testing.assert_array_equal(b, a * 3)


def test_a_blocked_reduction_initializes_each_tile_at_its_first_block():
    A, B, C, k = matmul_def(12, 32, 40)
    s = td.create_schedule(C.op)
    i, j = C.op.axis
    io, ii = s[C].split(i, factor=4)
    ko, ki = s[C].split(k, factor=16)
    s[C].reorder(ko, io, j, ki, ii)   # ko outside the tiles: GotoBLAS-style blocking
    s[C].unroll(ii)
    ops = body_text(td.lower(s, [A, B, C], stop_after="schedule_ops"))
    assert "if k.outer == 0:" in ops
    final = body_text(td.lower(s, [A, B, C]))
    # no separate zero sweep over C: the first block stores its sums directly
    assert "C[" not in final.split("for k.outer")[0]
    assert "if k.outer == 0:" in final and "= C.acc" in final
    a = np.random.default_rng(4).standard_normal((12, 40)).astype("float32")
    b = np.random.default_rng(5).standard_normal((40, 32)).astype("float32")
    c = poisoned((12, 32))
    td.build(s, [A, B, C])(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_padding_reads_the_interior_without_masks_or_selects():
    # a padded copy, vectorized along a ragged row: where the row is inside, the lanes
    # all read (no mask); the row test is a branch, not a per-lane select
    from kernels.dense import pad
    X = td.placeholder((3, 6, 40), name="X")
    P = pad(X, (0, 2, 0), (0, 1, 1), name="P")
    s = td.create_schedule(P.op)
    c, y, x = P.op.axis
    s[P].vectorize(s[P].split(x, factor=16)[1])
    text = str(td.lower(s, [X, P]))
    interior = [line for line in text.splitlines() if "i2.outer*16, 1, 16)] =" in line]
    assert len(interior) == 1 and "select" not in interior[0] and ") if (" not in interior[0]
    assert "if_then_else(i1 >= 2 && i1 < 8" in interior[0]
    a = np.random.default_rng(0).standard_normal((3, 6, 40)).astype("float32")
    out = poisoned((3, 9, 41))
    td.build(s, [X, P])(a, out)
    np.testing.assert_array_equal(out, np.pad(a, ((0, 0), (2, 1), (0, 1))))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.tuples(*[st.integers(0, 3)] * 4),
       st.sampled_from([4, 8, 16, 32]), st.booleans())
def test_vectorized_padding_matches_numpy(rows, cols, pads, factor, shift):
    # the lane-independent part of a pad's condition is a branch, the lane part a mask
    # that bounds may prove away: every split, tail handling and padding against np.pad
    from kernels.dense import pad
    top, left, bottom, right = pads
    if not any(pads):
        return  # no padding: pad() returns its input
    X = td.placeholder((rows, cols), name="X")
    P = pad(X, (top, left), (bottom, right), name="P")
    s = td.create_schedule(P.op)
    y, x = P.op.axis
    width = cols + left + right
    tail = "shift_inwards" if shift and width >= factor else "guard"
    s[P].vectorize(s[P].split(x, factor=factor, tail=tail)[1])
    a = np.random.default_rng(rows * 100 + cols).standard_normal((rows, cols)).astype("float32")
    out = poisoned((rows + top + bottom, width))
    td.build(s, [X, P])(a, out)
    np.testing.assert_array_equal(out, np.pad(a, ((top, bottom), (left, right))))


def test_local_accumulators_keep_ragged_rows_in_registers():
    # regression: with 12 columns, a 16-lane row of C overlaps the next row's start, but
    # only the first 12 lanes are enabled; the updates were taken as overlapping and the
    # micro-kernel read and wrote C in memory per step (12x slower)
    from schedules.cpu.matmul import schedule_product
    import kernels.dense as kd
    x = td.placeholder((64, 32), "float32", "x")
    w = td.placeholder((12, 32), "float32", "w")
    C = kd.matmul(x, w, transpose_b=True)
    s = td.create_schedule(C.op)
    schedule_product(s, s[C], {"nr": 16, "parts": 1})
    text = body_text(td.lower(s, [x, w, C]))
    assert "matmul.acc0 = allocate(float32[16], local)" in text
    a = np.random.default_rng(0).standard_normal((64, 32)).astype("float32")
    b = np.random.default_rng(1).standard_normal((12, 32)).astype("float32")
    c = poisoned((64, 12))
    td.build(s, [x, w, C])(a, b, c)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-4, atol=1e-4)
