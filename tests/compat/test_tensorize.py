"""TVM's tensorize tutorial (``tutorials/language/tensorize.py``), ported by renaming
``te.``/``tvm.``/``tvm.tir.`` to ``td.``: a GEMV intrinsic declared with
``td.decl_tensor_intrin``, its operands bound by ``td.decl_buffer``, carried out by a C
function called with ``td.call_extern`` — linked from LLVM IR (``pragma(...,
"import_llvm", code)``, TVM's way) or from a loaded library — and checked against numpy.
"""
import ctypes
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir

import tensordsl as td

GEMV_C = r"""
int gemv_update(float *cc, float *aa, float *bb, int m, int l, int stride) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < l; ++j)
      cc[i] += aa[j] * bb[i * stride + j];
  return 0;
}
int gemv_reset(float *cc, int m) {
  for (int i = 0; i < m; ++i)
    cc[i] = 0.0f;
  return 0;
}
int scale_rows(float *out, float *x, int n, float factor) {
  for (int i = 0; i < n; ++i)
    out[i] = x[i] * factor;
  return 0;
}
"""


@pytest.fixture(scope="module")
def gemv_library(tmp_path_factory):
    """The tutorial's C functions in a shared library the process loads globally, where
    the JIT finds them."""
    folder = tmp_path_factory.mktemp("gemv")
    (folder / "gemv.c").write_text(GEMV_C)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(folder / "gemv.c"), "-o",
                    str(folder / "libtd_gemv_test.so")], check=True)
    return ctypes.CDLL(str(folder / "libtd_gemv_test.so"), mode=ctypes.RTLD_GLOBAL)


def gemv_llvm_ir(prefix: str = "", scale: float = 1.0) -> str:
    """``gemv_update`` and ``gemv_reset`` written with llvmlite's IR builder (where TVM's
    tutorial compiles C with clang), named with ``prefix``; the update adds ``scale``
    times the product."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    ptr = f32.as_pointer()
    module = ir.Module(name="gemv")

    def counted_loop(builder, fn, count, body):
        entry = builder.block
        head, loop, done = (fn.append_basic_block(x) for x in ("head", "loop", "done"))
        builder.branch(head)
        builder.position_at_end(head)
        i = builder.phi(i32)
        i.add_incoming(ir.Constant(i32, 0), entry)
        builder.cbranch(builder.icmp_signed("<", i, count), loop, done)
        builder.position_at_end(loop)
        body(builder, i)
        i.add_incoming(builder.add(i, ir.Constant(i32, 1)), builder.block)
        builder.branch(head)
        builder.position_at_end(done)

    update = ir.Function(module, ir.FunctionType(i32, [ptr, ptr, ptr, i32, i32, i32]),
                         prefix + "gemv_update")
    cc, aa, bb, m, l, stride = update.args
    b = ir.IRBuilder(update.append_basic_block("entry"))

    def row(bd, i):
        def col(bd, j):
            c_ptr = bd.gep(cc, [i])
            prod = bd.fmul(bd.load(bd.gep(aa, [j])),
                           bd.load(bd.gep(bb, [bd.add(bd.mul(i, stride), j)])))
            prod = bd.fmul(prod, ir.Constant(f32, scale))
            bd.store(bd.fadd(bd.load(c_ptr), prod), c_ptr)
        counted_loop(bd, update, l, col)

    counted_loop(b, update, m, row)
    b.ret(ir.Constant(i32, 0))

    reset = ir.Function(module, ir.FunctionType(i32, [ptr, i32]), prefix + "gemv_reset")
    cc, m = reset.args
    b = ir.IRBuilder(reset.append_basic_block("entry"))
    counted_loop(b, reset, m, lambda bd, i: bd.store(ir.Constant(f32, 0.0), bd.gep(cc, [i])))
    b.ret(ir.Constant(i32, 0))
    return str(module)


def gemm(N, M, L):
    A = td.placeholder((N, L), name="A")
    B = td.placeholder((M, L), name="B")
    k = td.reduce_axis((0, L), name="k")
    C = td.compute((N, M), lambda i, j: td.sum(A[i, k] * B[j, k], axis=k), name="C")
    return A, B, C


def intrin_gemv(m, l, prefix="", reduce_update=False, b_strides=None, body_only=False):
    """The tutorial's ``intrin_gemv``: c[i] = sum_k a[k] * b[i, k]."""
    a = td.placeholder((l,), name="a")
    b = td.placeholder((m, l), name="b")
    k = td.reduce_axis((0, l), name="k")
    c = td.compute((m,), lambda i: td.sum(a[k] * b[i, k], axis=k), name="c")
    Ab = td.decl_buffer(a.shape, a.dtype, name="A", offset_factor=1, strides=[1])
    Bb = td.decl_buffer(b.shape, b.dtype, name="B", offset_factor=1,
                        strides=b_strides or [td.var("s1"), 1])
    Cb = td.decl_buffer(c.shape, c.dtype, name="C", offset_factor=1, strides=[1])

    def intrin_func(ins, outs):
        aa, bb = ins
        cc = outs[0]

        def _body():
            ib = td.ir_builder.create()
            ib.emit(td.call_extern("int32", prefix + "gemv_update", cc.access_ptr("w"),
                                   aa.access_ptr("r"), bb.access_ptr("r"), m, l,
                                   bb.strides[0]))
            return ib.get()

        def _reduce_reset():
            ib = td.ir_builder.create()
            ib.emit(td.call_extern("int32", prefix + "gemv_reset", cc.access_ptr("w"), m))
            return ib.get()

        if not reduce_update:
            return _body()
        # the whole reduction: reset, then one update
        whole = td.ir_builder.create()
        whole.emit(_reduce_reset())
        whole.emit(_body())
        return (None if body_only else whole.get()), _reduce_reset(), _body()

    return td.decl_tensor_intrin(c.op, intrin_func, binds={a: Ab, b: Bb, c: Cb})


def _data(N, M, L, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(N, L)).astype("float32"),
            rng.uniform(size=(M, L)).astype("float32"))


def test_tutorial_gemv_through_a_loaded_library(gemv_library):
    N, M, L = 1024, 512, 64
    A, B, C = gemm(N, M, L)
    s = td.create_schedule(C.op)
    factor = 16
    x, y = C.op.axis
    (z,) = C.op.reduce_axis
    yo, yi = s[C].split(y, factor=factor)
    s[C].reorder(x, yo, yi, z)
    s[C].tensorize(yi, intrin_gemv(factor, L))
    text = str(td.lower(s, [A, B, C], simple_mode=True))
    assert 'call_extern(int32, "gemv_update"' in text and "for k" not in text
    func = td.build(s, [A, B, C], target="llvm", name="gemv")
    a, b = _data(N, M, L)
    c = np.zeros((N, M), dtype=C.dtype)   # (the tutorial's intrinsic only accumulates)
    func(a, b, c)
    np.testing.assert_allclose(c, np.dot(a, b.T), rtol=1e-3)


def test_tutorial_reduce_update_linked_from_llvm_ir():
    """The tutorial's second part: the reduction split too, so the intrinsic gives a
    reset (where the initialization was) and an update; its C code imported as LLVM IR
    with the tutorial's pragma."""
    N, M, L = 64, 48, 64
    factor = 16
    A, B, C = gemm(N, M, L)
    s = td.create_schedule(C.op)
    x, y = C.op.axis
    (z,) = C.op.reduce_axis
    yo, yi = s[C].split(y, factor=factor)
    zo, zi = s[C].split(z, factor=factor)
    s[C].reorder(x, yo, zo, yi, zi)
    s[C].tensorize(yi, intrin_gemv(factor, factor, prefix="ll_", reduce_update=True))
    s[C].pragma(x, "import_llvm", gemv_llvm_ir("ll_"))
    text = str(td.lower(s, [A, B, C]))
    assert text.index('"ll_gemv_reset"') < text.index("for k.outer")
    assert "# import_llvm:" in text
    func = td.build(s, [A, B, C], target="llvm", name="gemv_update")
    a, b = _data(N, M, L, seed=1)
    c = np.full((N, M), np.nan, dtype=C.dtype)
    func(a, b, c)
    np.testing.assert_allclose(c, np.dot(a, b.T), rtol=1e-4)


def test_the_whole_reduction_inside_uses_the_body():
    N, M, L = 8, 32, 16
    A, B, C = gemm(N, M, L)
    s = td.create_schedule(C.op)
    yo, yi = s[C].split(C.op.axis[1], factor=16)
    s[C].tensorize(yi, intrin_gemv(16, L, prefix="whole_", reduce_update=True))
    s[C].pragma(C.op.axis[0], "import_llvm", gemv_llvm_ir("whole_"))
    func = td.build(s, [A, B, C])
    a, b = _data(N, M, L, seed=2)
    c = np.full((N, M), np.nan, dtype="float32")
    func(a, b, c)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5)


def test_the_import_changes_the_compiled_kernel():
    """The imported text is part of what the compile cache keys on: the same kernel
    linked with an update that adds twice the product computes twice the result."""
    N, M, L = 4, 16, 16
    a, b = _data(N, M, L, seed=3)
    results = []
    for scale in (1.0, 2.0):
        A, B, C = gemm(N, M, L)
        s = td.create_schedule(C.op)
        yo, yi = s[C].split(C.op.axis[1], factor=16)
        s[C].tensorize(yi, intrin_gemv(16, L, prefix="scaled_", reduce_update=True))
        s[C].pragma(C.op.axis[0], "import_llvm", gemv_llvm_ir("scaled_", scale))
        c = np.full((N, M), np.nan, dtype="float32")
        td.build(s, [A, B, C])(a, b, c)
        results.append(c)
    np.testing.assert_allclose(results[0], a @ b.T, rtol=1e-5)
    np.testing.assert_allclose(results[1], 2 * (a @ b.T), rtol=1e-5)


def _add8(fcompute=None):
    """c[i] = a[i] + b[i] over 8 elements, by default from the views' vload/vstore."""
    a = td.placeholder((8,), name="a")
    b = td.placeholder((8,), name="b")
    c = td.compute((8,), lambda i: a[i] + b[i], name="c")

    def body(ins, outs):
        ib = td.ir_builder.create()
        with ib.for_range(0, 8, name="v") as v:
            ib.emit(outs[0].vstore([v], ins[0].vload([v]) + ins[1].vload([v])))
        return ib.get()

    return td.decl_tensor_intrin(c.op, fcompute or body, name="add8")


def _add_stage(intrin, rows=4, cols=16):
    """Z = X + Y, its rows split by 8 and tensorized by ``intrin``."""
    X = td.placeholder((rows, cols), name="X")
    Y = td.placeholder((rows, cols), name="Y")
    Z = td.compute((rows, cols), lambda i, j: X[i, j] + Y[i, j], name="Z")
    s = td.create_schedule(Z.op)
    jo, ji = s[Z].split(Z.op.axis[1], factor=8)
    s[Z].tensorize(ji, intrin)
    return s, [X, Y, Z], jo, ji


def test_an_intrinsic_written_with_vload_and_vstore():
    """A body built with ``td.ir_builder`` from the views' ``vload``/``vstore`` (no C):
    8 sums at a time into a 2-D output, the views' leading dimension fixed."""
    s, args, _, _ = _add_stage(_add8(), rows=5, cols=24)
    f = td.build(s, args)
    rng = np.random.default_rng(4)
    x, y = rng.random((5, 24), dtype="float32"), rng.random((5, 24), dtype="float32")
    z = np.full((5, 24), np.nan, dtype="float32")
    f(x, y, z)
    np.testing.assert_array_equal(z, x + y)


def test_extern_calls_a_c_function_on_whole_tensors(gemv_library):
    n = 37
    X = td.placeholder((n,), name="X")
    Y = td.extern((n,), [X], lambda ins, outs: td.call_extern(
        "int32", "scale_rows", outs[0], ins[0], n, 2.5), name="Y")
    Z = td.compute((n,), lambda i: Y[i] + 1.0, name="Z")
    f = td.build(td.create_schedule(Z.op), [X, Z])
    x = np.arange(n, dtype="float32")
    z = np.full(n, np.nan, dtype="float32")
    f(x, z)
    np.testing.assert_allclose(z, x * 2.5 + 1.0)


def _tutorial_schedule(intrin, factor=16, split_k=None, shape=(64, 48, 64),
                       parallel=False):
    """The tutorial's GEMM, its columns split by ``factor`` (and its reduction by
    ``split_k``) and tensorized by ``intrin``."""
    A, B, C = gemm(*shape)
    s = td.create_schedule(C.op)
    x, y = C.op.axis
    yo, yi = s[C].split(y, factor=factor)
    if split_k:
        zo, zi = s[C].split(C.op.reduce_axis[0], factor=split_k)
        s[C].reorder(x, yo, zo, yi, zi)
    if parallel:
        s[C].parallel(x)
    s[C].tensorize(yi, intrin)
    return s, [A, B, C]


@pytest.mark.parametrize("intrin, factor, split_k, error, message", [
    (dict(m=16, l=64, prefix="missing_"), 16, None, td.BuildError,
     r"call_extern 'missing_gemv_update' \(used by the kernel\): no such function.*"
     r"import_llvm.*RTLD_GLOBAL"),
    (dict(m=16, l=64), 8, None, td.ScheduleError,
     r"expected loops of kinds .* and extents \(16, 64\).*got .*\('8', '64'\)"),
    (dict(m=16, l=64, b_strides=[32, 1]), 16, None, td.BuildError,
     "buffer 'B' bound to 'B'.*declares a stride of 32 where the tensor's dimension 0 "
     "has 64"),
    (dict(m=16, l=16), 16, 16, td.ScheduleError,
     r"must return \(body, reset, update\) with an? (reset|update)"),
    (dict(m=16, l=64, reduce_update=True, body_only=True), 16, None, td.ScheduleError,
     "fcompute returned no body"),
])
def test_the_tutorial_schedule_refused(intrin, factor, split_k, error, message):
    """A missing function, loops of another shape, a declared stride the tensor lacks,
    a split reduction without reset and update, no body: each named."""
    s, args = _tutorial_schedule(intrin_gemv(**intrin), factor=factor, split_k=split_k)
    with pytest.raises(error, match=message):
        td.build(s, args)


@pytest.mark.parametrize("body, message", [
    # a sum of a + b where the stage sums products
    (lambda a, b, i, k: a[k] + b[i, k], "the stage computes .*A.*\\*.*the intrinsic"),
    # b read backwards: the stage's B[j, k] is no corner plus this index
    (lambda a, b, i, k: a[k] * b[i, 63 - k], "'B' is indexed .* not its region's corner"),
])
def test_another_computation_is_refused(body, message):
    a = td.placeholder((64,), name="a")
    b = td.placeholder((16, 64), name="b")
    k = td.reduce_axis((0, 64), name="k")
    c = td.compute((16,), lambda i: td.sum(body(a, b, i, k), axis=k), name="c")
    s, args = _tutorial_schedule(td.decl_tensor_intrin(
        c.op, lambda ins, outs: td.call_extern("int32", "f")))
    with pytest.raises(td.ScheduleError, match=message):
        td.lower(s, args)


def test_bad_declarations_are_refused():
    a = td.placeholder((4,), name="a")
    c = td.compute((4,), lambda i: a[i] * 2.0, name="c")
    with pytest.raises(TypeError, match="op must be a compute's op"):
        td.decl_tensor_intrin(a.op, lambda ins, outs: None)
    with pytest.raises(TypeError, match="binds maps tensors to td.decl_buffer"):
        td.decl_tensor_intrin(c.op, lambda ins, outs: None, binds={a: "A"})
    with pytest.raises(ValueError, match="strides must be a list of 1 entries"):
        td.decl_buffer((4,), "float32", name="A", strides=[1, 1])
    with pytest.raises(TypeError, match="func_name must be a C identifier"):
        td.call_extern("int32", "not a name")
    s = td.create_schedule(c.op)
    with pytest.raises(td.ScheduleError, match="import_llvm.*must be LLVM IR text"):
        s[c].pragma(c.op.axis[0], "import_llvm", None)


def test_unparsable_llvm_ir_is_a_build_error():
    s, args = _tutorial_schedule(intrin_gemv(16, 64, prefix="bad_"))
    s[args[2]].pragma(args[2].op.axis[0], "import_llvm", "define oops")
    with pytest.raises(td.BuildError, match="import_llvm.*does not parse"):
        td.build(s, args)


def test_a_trace_with_a_declared_intrinsic_is_refused_on_replay():
    from tensordsl.schedule.trace import replay
    s, args = _tutorial_schedule(intrin_gemv(16, 64))
    step = [st for st in s.trace if st.kind == "tensorize"]
    assert step and step[0].args["declared"]
    A, B, C = gemm(64, 48, 64)
    with pytest.raises(td.ScheduleError, match="declared by td.decl_tensor_intrin"):
        replay(s.trace, [C])


def test_export_builds_imported_functions_in_and_refuses_library_ones(gemv_library,
                                                                      tmp_path):
    a, b = _data(64, 48, 64, seed=5)
    s, args = _tutorial_schedule(intrin_gemv(16, 16, prefix="exp_", reduce_update=True),
                                 split_k=16)
    s[args[2]].pragma(args[2].op.axis[0], "import_llvm", gemv_llvm_ir("exp_"))
    td.export([td.build(s, args, name="gemv_exported")], tmp_path / "libgemv.so")
    c = np.full((64, 48), np.nan, dtype="float32")
    td.load_module(tmp_path / "libgemv.so")(a, b, c)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-4)

    s, args = _tutorial_schedule(intrin_gemv(16, 64))
    with pytest.raises(td.BuildError, match="export: kernel .* calls the C function "
                                             "'gemv_update'.*import_llvm"):
        td.export([td.build(s, args, name="gemv_library")], tmp_path / "libno.so")


def test_a_function_the_gpu_lacks_is_nvrtcs_error_naming_it():
    s, (A, B, C) = _tutorial_schedule(intrin_gemv(16, 64))
    s[C].bind(C.op.axis[0], td.thread_axis("blockIdx.x"))
    with pytest.raises(td.BuildError, match='identifier "gemv_update" is undefined'):
        td.build(s, [A, B, C], target="cuda")


@settings(max_examples=20, deadline=None, derandomize=True)
@given(m=st.sampled_from([4, 8, 16]), tiles=st.integers(1, 3), l_tiles=st.integers(1, 3),
       rows=st.integers(1, 5), split_k=st.booleans(), parallel=st.booleans())
def test_random_gemv_tensorizations_match_numpy(m, tiles, l_tiles, rows, split_k, parallel):
    """Random shapes and placements of the GEMV intrinsic (whole or split reduction,
    serial or parallel rows), against numpy."""
    l = 8
    L = l * l_tiles if split_k else l
    s, (A, B, C) = _tutorial_schedule(
        intrin_gemv(m, l, prefix="rand_", reduce_update=True), factor=m,
        split_k=l if split_k else None, shape=(rows, m * tiles, L), parallel=parallel)
    s[C].pragma(C.op.axis[0], "import_llvm", gemv_llvm_ir("rand_"))
    a, b = _data(rows, m * tiles, L, seed=m * 100 + tiles * 10 + rows)
    c = np.full((rows, m * tiles), np.nan, dtype="float32")
    td.build(s, [A, B, C])(a, b, c)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5)


# ---------------------------------------------------------------- what is refused, and why

TWICE_IR = """
define float @{name}(float %x) {{
  %y = fmul float %x, 2.0
  ret float %y
}}
"""


def _rowsum_stage(combine_stage, combine_intrin):
    """A row reduction of 8 tensorized by an intrinsic of its own combiner."""
    def reducer(fn):
        return td.comm_reducer(fn, lambda t: td.const(0, t), name="comm_reducer")

    a = td.placeholder((8,), name="a")
    k = td.reduce_axis((0, 8), name="k")
    c = td.compute((1,), lambda i: reducer(combine_intrin)(a[k], axis=k), name="c")
    A = td.placeholder((4, 8), name="A")
    K = td.reduce_axis((0, 8), name="K")
    C = td.compute((4, 1), lambda i, j: reducer(combine_stage)(A[i, K], axis=K), name="C")
    intrin = td.decl_tensor_intrin(c.op, lambda ins, outs: td.call_extern("int32", "f"))
    s = td.create_schedule(C.op)
    s[C].tensorize(C.op.axis[1], intrin)
    return s, [A, C]


def test_a_reducer_of_the_same_name_but_another_combine_is_refused():
    s, args = _rowsum_stage(lambda x, y: td.max(x, y), lambda x, y: x + y)
    with pytest.raises(td.ScheduleError, match="the stage computes .*max"):
        td.lower(s, args)


def test_a_store_predicate_is_not_dropped_under_tensorize():
    s, (X, Y, Z), jo, _ = _add_stage(_add8())
    s[Z].set_store_predicate(Z.op.axis[0] < 2)
    with pytest.raises(td.ScheduleError, match="store predicate"):
        td.lower(s, [X, Y, Z])


def test_a_stage_computed_inside_the_tensorized_loops_is_refused():
    X = td.placeholder((4, 16), name="X")
    T = td.compute((4, 16), lambda i, j: X[i, j] * 2.0, name="T")
    Z = td.compute((4, 16), lambda i, j: T[i, j] + X[i, j], name="Z")
    s = td.create_schedule(Z.op)
    jo, ji = s[Z].split(Z.op.axis[1], factor=8)
    s[T].compute_at(s[Z], ji)
    s[Z].tensorize(ji, _add8())
    with pytest.raises(td.ScheduleError, match="'T' is computed at 'j.inner', inside the "
                                               "tensorized loops"):
        td.lower(s, [X, Z])


def test_a_compact_declaration_of_a_size_dependent_stride_is_a_build_error():
    L = td.var("L")
    A = td.placeholder((4, 64), name="A")
    B = td.placeholder((16, L), name="B")
    k = td.reduce_axis((0, 64), name="k")
    C = td.compute((4, 16), lambda i, j: td.sum(A[i, k] * B[j, k], axis=k), name="C")
    s = td.create_schedule(C.op)
    s[C].tensorize(C.op.axis[1], intrin_gemv(16, 64, b_strides=[64, 1]))
    with pytest.raises(td.BuildError, match="declares a stride of 64 where the tensor's "
                                             "dimension 0 has the size-dependent L"):
        td.lower(s, [A, B, C])


def test_an_import_needing_a_missing_function_is_a_build_error():
    code = TWICE_IR.format(name="needs_missing").replace(
        "%y = fmul float %x, 2.0", "%y = call float @nowhere_defined_here(float %x)") + \
        "declare float @nowhere_defined_here(float)\n"
    X = td.placeholder((4,), name="X")
    Z = td.compute((4,), lambda i: td.call_extern("float32", "needs_missing", X[i]), name="Z")
    s = td.create_schedule(Z.op)
    s[Z].pragma(Z.op.axis[0], "import_llvm", code)
    with pytest.raises(td.BuildError, match=r"'nowhere_defined_here' \(used by the imported "
                                             r"LLVM IR\): no such function"):
        td.build(s, [X, Z])


def test_a_call_of_other_types_than_the_definition_is_a_build_error():
    X = td.placeholder((4,), name="X")
    Z = td.compute((4,), lambda i: td.call_extern("float64", "twice_sig", X[i]), name="Z")
    s = td.create_schedule(Z.op)
    s[Z].pragma(Z.op.axis[0], "import_llvm", TWICE_IR.format(name="twice_sig"))
    with pytest.raises(td.BuildError, match=r"'twice_sig': called as double \(float\), but "
                                             r"the imported LLVM IR defines it as float "
                                             r"\(float\)"):
        td.build(s, [X, Z])


def test_the_return_type_is_part_of_the_compiled_program():
    """Two kernels that differ only in call_extern's return type print differently, so
    the compile cache keeps them apart."""
    code = """
define i64 @wide_{k}(i64 %x) {{
  %y = add i64 %x, 8589934592
  ret i64 %y
}}
define i32 @narrow_{k}(i64 %x) {{
  %y = trunc i64 %x to i32
  ret i32 %y
}}
"""
    X = td.placeholder((4,), dtype="int64", name="X")
    outs = []
    for dtype, fn in (("int64", "wide_0"), ("int32", "narrow_0")):
        Z = td.compute((4,), lambda i: td.call_extern(dtype, fn, X[i]).astype("int64"),
                       name="Z")
        s = td.create_schedule(Z.op)
        s[Z].pragma(Z.op.axis[0], "import_llvm", code.format(k=0))
        z = np.full(4, -1, dtype="int64")
        td.build(s, [X, Z])(np.arange(4, dtype="int64"), z)
        outs.append(z)
    np.testing.assert_array_equal(outs[0], np.arange(4) + (1 << 33))
    np.testing.assert_array_equal(outs[1], np.arange(4))


def test_an_intrinsic_reading_one_tensor_twice():
    a = td.placeholder((8,), name="a")
    c = td.compute((8,), lambda i: a[i] * a[i], name="c")

    def square(ins, outs):
        ib = td.ir_builder.create()
        with ib.for_range(0, 8, name="v") as v:
            ib.emit(outs[0].vstore([v], ins[0].vload([v]) * ins[0].vload([v])))
        return ib.get()

    X = td.placeholder((16,), name="X")
    Z = td.compute((16,), lambda i: X[i] * X[i], name="Z")
    s = td.create_schedule(Z.op)
    io, ii = s[Z].split(Z.op.axis[0], factor=8)
    s[Z].tensorize(ii, td.decl_tensor_intrin(c.op, square))
    x = np.linspace(-2, 2, 16, dtype="float32")
    z = np.full(16, np.nan, dtype="float32")
    td.build(s, [X, Z])(x, z)
    np.testing.assert_array_equal(z, x * x)


def test_binds_are_checked_against_the_intrinsic():
    a = td.placeholder((8,), name="a")
    other = td.placeholder((8,), name="other")
    c = td.compute((8,), lambda i: a[i] * 2.0, name="c")
    fc = lambda ins, outs: td.call_extern("int32", "f")   # noqa: E731
    with pytest.raises(ValueError, match=r"buffer 'Cb' is float32\[4\], the tensor 'c' "
                                         r"bound to it float32\[8\]"):
        td.decl_tensor_intrin(c.op, fc, binds={c: td.decl_buffer((4,), name="Cb")})
    with pytest.raises(ValueError, match="'other'.*neither read nor computed by op 'c'"):
        td.decl_tensor_intrin(c.op, fc, binds={other: td.decl_buffer((8,), name="O")})


@pytest.mark.parametrize("result, message", [
    (lambda ins, outs: ins[0].vload([0]) + ins[1].vload([0]),
     "body must be a statement .* or a td.call_extern call, got X\\[.*\\] \\+ "),
    (lambda ins, outs: [outs[0].vstore([0], 1.0)] * 3, "no reduction, so fcompute returns "
                                                       "one statement"),
    (lambda ins, outs: outs[0].vstore([0], ins[0].vload([8])), "vload of buffer 'a' at "
                                                               "index 8 .* extent 8"),
])
def test_what_fcompute_returns_is_checked(result, message):
    s, args, _, _ = _add_stage(_add8(result))
    with pytest.raises(td.ScheduleError, match=message):
        td.lower(s, args)


def test_a_value_call_in_a_vectorized_loop_runs_lane_by_lane():
    X = td.placeholder((16,), name="X")
    Z = td.compute((16,), lambda i: td.call_extern("float32", "twice_vec", X[i]) + 1.0,
                   name="Z")
    s = td.create_schedule(Z.op)
    io, ii = s[Z].split(Z.op.axis[0], factor=8)
    s[Z].vectorize(ii)
    s[Z].pragma(io, "import_llvm", TWICE_IR.format(name="twice_vec"))
    assert "call_extern(float32x8" in str(td.lower(s, [X, Z]))
    x = np.arange(16, dtype="float32")
    z = np.full(16, np.nan, dtype="float32")
    td.build(s, [X, Z])(x, z)
    np.testing.assert_array_equal(z, 2 * x + 1)


def test_an_address_varying_with_a_vectorized_loop_is_refused():
    s, args, jo, _ = _add_stage(_add8(
        lambda ins, outs: td.call_extern("int32", "add_rows", outs[0].access_ptr("w"),
                                         ins[0].access_ptr("r"), 8)))
    s[args[2]].vectorize(jo)
    with pytest.raises(td.BuildError, match="an address given to call_extern varies with "
                                             "the vectorized loop 'j.outer'"):
        td.lower(s, args)


def test_kernels_sharing_an_import_export_together(tmp_path):
    funcs = []
    for name in ("first", "second"):
        X = td.placeholder((4,), name="X")
        Z = td.compute((4,), lambda i: td.call_extern("float32", "twice_shared", X[i]),
                       name="Z")
        s = td.create_schedule(Z.op)
        code = TWICE_IR.format(name="twice_shared")
        s[Z].pragma(Z.op.axis[0], "import_llvm", code)
        s[Z].pragma(Z.op.axis[0], "import_llvm", code)     # the same text: linked once
        funcs.append(td.build(s, [X, Z], name=name))
    module = td.load_module(td.export(funcs, tmp_path / "libshared.so")[0])
    x = np.arange(4, dtype="float32")
    for name in ("first", "second"):
        z = np.full(4, np.nan, dtype="float32")
        module[name](x, z)
        np.testing.assert_array_equal(z, 2 * x)


def test_a_c_library_function_exports(tmp_path):
    X = td.placeholder((5,), name="X")
    Z = td.compute((5,), lambda i: td.call_extern("float32", "sqrtf", X[i]), name="Z")
    f = td.build(td.create_schedule(Z.op), [X, Z], name="roots")
    module = td.load_module(td.export([f], tmp_path / "libroots.so")[0])
    x = np.arange(5, dtype="float32")
    z = np.full(5, np.nan, dtype="float32")
    module["roots"](x, z)
    np.testing.assert_allclose(z, np.sqrt(x), rtol=1e-6)
