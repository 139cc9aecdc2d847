"""Illegal schedules are refused when they are made, naming the stage and the axis."""
import pytest

import tensordsl as td
from tensordsl import ScheduleError


@pytest.fixture
def mm():
    A = td.placeholder((16, 16), name="A")
    B = td.placeholder((16, 16), name="B")
    k = td.reduce_axis((0, 16), "k")
    C = td.compute((16, 16), lambda i, j: td.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C, k


def test_vectorize_a_reduction_axis(mm):
    # a sum's reduction axis may be vectorized (its lanes added as a tree at the end);
    # any other reduction's lanes would combine into one element: refused
    A, B, C, k = mm
    td.create_schedule(C.op)[C].vectorize(k)
    r = td.reduce_axis((0, A.shape[1]), "r")
    M = td.compute((A.shape[0],), lambda i: td.max(A[i, r], axis=r), name="M")
    s = td.create_schedule(M.op)
    with pytest.raises(ScheduleError, match=r"stage 'M'.*reduction axis 'r'"):
        s[M].vectorize(r)


def test_parallelize_a_reduction_axis(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(ScheduleError, match=r"stage 'C'.*parallelize reduction axis 'k'"):
        s[C].parallel(k)


def test_reorder_an_axis_that_was_split_away(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    i, j = C.op.axis
    s[C].split(i, factor=4)
    with pytest.raises(ScheduleError, match=r"stage 'C'.*axis 'i'.*split or fused away"):
        s[C].reorder(j, i)


def test_axis_of_another_stage(mm):
    A, B, C, k = mm
    D = td.compute((16, 16), lambda i, j: C[i, j] + 1.0, name="D")
    s = td.create_schedule(D.op)
    with pytest.raises(ScheduleError, match=r"stage 'D'.*'i'.*does not belong"):
        s[D].split(C.op.axis[0], factor=2)


def test_compute_at_a_stage_that_does_not_consume(mm):
    A, B, C, k = mm
    D = td.compute((16,), lambda i: A[i, 0] * 2.0, name="D")
    E = td.compute((16,), lambda i: D[i] + C[i, i], name="E")
    s = td.create_schedule(E.op)
    with pytest.raises(ScheduleError, match=r"stage 'D'.*'C' does not read 'D'"):
        s[D].compute_at(s[C], C.op.axis[0])


def test_compute_at_an_axis_split_afterwards(mm):
    A, B, C, k = mm
    P = td.compute((16, 16), lambda i, j: A[i, j] * 2.0, name="P")
    D = td.compute((16, 16), lambda i, j: P[i, j] + 1.0, name="D")
    s = td.create_schedule(D.op)
    s[P].compute_at(s[D], D.op.axis[0])
    s[D].split(D.op.axis[0], factor=4)
    with pytest.raises(ScheduleError, match=r"stage 'P'.*axis 'i' of 'D'"):
        td.lower(s, [A, D])


def test_compute_at_while_another_consumer_reads_outside(mm):
    A, B, C, k = mm
    P = td.compute((16,), lambda i: A[i, 0] * 2.0, name="P")
    D = td.compute((16,), lambda i: P[i] + 1.0, name="D")
    E = td.compute((16,), lambda i: P[i] * D[i], name="E")
    s = td.create_schedule(E.op)
    s[P].compute_at(s[D], D.op.axis[0])
    with pytest.raises(ScheduleError, match=r"'E' also reads it outside"):
        td.lower(s, [A, E])


def test_inline_output_or_reduction(mm):
    A, B, C, k = mm
    D = td.compute((16, 16), lambda i, j: C[i, j] + 1.0, name="D")
    s = td.create_schedule(D.op)
    with pytest.raises(ScheduleError, match="stage 'D'.*output"):
        s[D].compute_inline()
    with pytest.raises(ScheduleError, match="stage 'C'.*reduction cannot be inlined"):
        s[C].compute_inline()


def test_split_factor_must_be_positive_int(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(ScheduleError, match=r"stage 'C'.*split of 'i'.*positive int"):
        s[C].split(C.op.axis[0], factor=0)
    with pytest.raises(ScheduleError, match="exactly one"):
        s[C].split(C.op.axis[0], factor=2, nparts=2)


def test_fuse_needs_adjacent_axes_of_one_kind(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    i, j = C.op.axis
    with pytest.raises(ScheduleError, match="adjacent"):
        s[C].fuse(i, k)
    with pytest.raises(ScheduleError, match="reduction axis with a data-parallel"):
        s[C].fuse(j, k)


def test_schedule_a_placeholder(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(ScheduleError, match="placeholder"):
        s[A].split(A.op.shape[0], factor=2)


def test_cache_read_by_a_stage_that_does_not_read(mm):
    A, B, C, k = mm
    D = td.compute((16, 16), lambda i, j: C[i, j] + 1.0, name="D")
    s = td.create_schedule(D.op)
    with pytest.raises(ScheduleError, match="stage 'D' does not read 'A'"):
        s.cache_read(A, "local", [D])


def test_cache_write_after_split(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    s[C].split(C.op.axis[0], factor=4)
    with pytest.raises(ScheduleError, match="cache_write must come before"):
        s.cache_write(C, "global")


def test_rfactor_of_a_data_parallel_axis(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(ScheduleError, match="not a reduction axis"):
        s.rfactor(C, C.op.axis[0])


def test_bad_scope(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(ScheduleError, match="scope"):
        s.cache_read(A, "texture", [C])


def test_output_missing_from_args(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(td.BuildError, match="output 'C'.*missing"):
        td.lower(s, [A, B])


def test_input_missing_from_args(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(td.BuildError, match="'B'.*pass it in args"):
        td.lower(s, [A, C])


def test_prefetch_of_a_tensor_the_stage_does_not_read():
    A = td.placeholder((8,), name="A")
    other = td.placeholder((8,), name="other")
    B = td.compute((8,), lambda i: A[i] + 1.0, name="B")
    s = td.create_schedule(B.op)
    with pytest.raises(td.ScheduleError, match="prefetch: this stage does not read 'other'"):
        s[B].prefetch(other, B.op.axis[0])
    with pytest.raises(td.ScheduleError, match="offset must be a positive int, got 0"):
        s[B].prefetch(A, B.op.axis[0], 0)


def test_indexing_a_schedule_by_a_list(mm):
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    with pytest.raises(ScheduleError, match="expected a tensor, an operation or a stage, "
                                            "got list"):
        s[[C]]


def test_cache_write_of_tensors_of_two_operations(mm):
    A, B, C, k = mm
    D = td.compute((16, 16), lambda i, j: C[i, j] + 1.0, name="D")
    s = td.create_schedule(D.op)
    with pytest.raises(ScheduleError, match=r"\['C', 'D'\] must be outputs of one operation"):
        s.cache_write([C, D], "local")
    with pytest.raises(ScheduleError, match="non-empty list of tensors"):
        s.cache_write([], "local")


def test_rfactor_of_a_loop_whose_extent_depends_on_the_output_index():
    A = td.placeholder((16,), name="A")

    def prefix(i):
        k = td.reduce_axis((0, i + 1), name="k")
        return td.sum(A[k], axis=k)
    B = td.compute((16,), prefix, name="B")
    s = td.create_schedule(B.op)
    ko, ki = s[B].split(s[B].op.reduce_axis[0], factor=4)
    with pytest.raises(ScheduleError, match="extent of 'k.outer' depends on the output index"):
        s.rfactor(B, ko)


def test_compute_at_through_a_stage_left_at_root(mm):
    A, B, C, k = mm
    P = td.compute((16, 16), lambda i, j: A[i, j] * 2.0, name="P")
    Q = td.compute((16, 16), lambda i, j: P[i, j] + 1.0, name="Q")
    R = td.compute((16, 16), lambda i, j: Q[i, j] * Q[j, i], name="R")
    s = td.create_schedule(R.op)
    s[P].compute_at(s[R], R.op.axis[0])      # accepted: R reads P through Q ...
    with pytest.raises(ScheduleError, match="'P' is computed at loop 'i' of 'R', but 'Q' "
                                            "also reads it outside that loop"):
        td.lower(s, [A, R])                  # ... but Q stays at root


def test_thread_axis_narrower_than_the_bound_loop():
    A = td.placeholder((64,), name="A")
    B = td.compute((64,), lambda i: A[i] + 1.0, name="B")
    s = td.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=8)
    s[B].bind(bx, td.thread_axis("blockIdx.x"))
    s[B].bind(tx, td.thread_axis((0, 4), "threadIdx.x"))
    with pytest.raises(td.BuildError, match="'i.inner' has extent 8 but is bound to "
                                            "threadIdx.x declared with extent 4"):
        td.lower(s, [A, B], target="cuda")
    with pytest.raises(TypeError, match=r"dom must be \(0, extent\)"):
        td.thread_axis((1, 4), "threadIdx.x")


def test_bind_a_reduction_axis_to_a_block_index(mm):
    """Every block would initialize C and accumulate its share into it, unsynchronized
    (a reduction axis may go to threadIdx.x: a cross-thread reduction)."""
    A, B, C, k = mm
    s = td.create_schedule(C.op)
    ko, ki = s[C].split(k, nparts=4)
    with pytest.raises(ScheduleError, match=r"stage 'C'.*reduction axis 'k.outer'.*"
                                            r"blockIdx.x.*rfactor"):
        s[C].bind(ko, td.thread_axis("blockIdx.x"))
    s[C].bind(ki, td.thread_axis("threadIdx.x"))   # legal: combined across threads


def _cumsum():
    X = td.placeholder((8, 5), name="X")
    state = td.placeholder((8, 5), name="state")
    init = td.compute((1, 5), lambda _, i: X[0, i], name="init")
    update = td.compute((8, 5), lambda t, i: state[t - 1, i] + X[t, i], name="update")
    return X, state, init, update


def test_scan_update_moved_out_of_the_scan_loop():
    X, state, init, update = _cumsum()
    scan = td.scan(init, update, state, inputs=[X])
    s = td.create_schedule(scan.op)
    s[update].compute_root()
    with pytest.raises(ScheduleError, match=r"'update' is the update of scan 'scan'"):
        td.lower(s, [X, scan])


def test_scan_of_mismatched_states():
    X, state, init, update = _cumsum()
    other = td.placeholder((8, 6), name="other")
    with pytest.raises(ValueError, match="one shape"):
        td.scan(init, update, other)
    with pytest.raises(ValueError, match="as many tensors"):
        td.scan([init], [update, update], [state])


def test_scan_on_the_gpu_is_refused_naming_the_scan():
    X, state, init, update = _cumsum()
    scan = td.scan(init, update, state, inputs=[X])
    s = td.create_schedule(scan.op)
    for stage in (init, update):
        s[stage].bind(s[stage].op.axis[1], td.thread_axis("threadIdx.x"))
    with pytest.raises(td.BuildError, match="stage 'scan'.*outside any GPU kernel"):
        td.lower(s, [X, scan], target="cuda")


def _extern_add_one(name="errors.unregistered"):
    A = td.placeholder((8,), name="A")
    B = td.extern(A.shape, [A], lambda ins, outs: td.call_packed(name, ins[0], outs[0]),
                  name="B")
    C = td.compute((8,), lambda i: B[i] * 2.0, name="C")
    return A, B, C


def test_extern_stage_is_computed_at_root():
    A, B, C = _extern_add_one()
    s = td.create_schedule(C.op)
    with pytest.raises(ScheduleError, match="stage 'B'.*extern.*computed at root"):
        s[B].compute_at(s[C], C.op.axis[0])
    with pytest.raises(ScheduleError, match="stage 'B'.*only a compute"):
        s[B].compute_inline()


def test_extern_calls_a_function_nobody_registered():
    import numpy as np
    A, B, C = _extern_add_one("errors.nobody_registered_this")
    f = td.build(td.create_schedule(C.op), [A, C])
    with pytest.raises(ValueError, match="no function is registered as "
                                         "'errors.nobody_registered_this'"):
        f(np.zeros(8, "float32"), np.zeros(8, "float32"))


def test_extern_needs_call_packed_and_tensor_or_int_arguments():
    A = td.placeholder((8,), name="A")
    with pytest.raises(TypeError, match="fcompute must return td.call_packed"):
        td.extern(A.shape, [A], lambda ins, outs: ins[0][0] + 1.0)
    with pytest.raises(TypeError, match="argument 1 must be a tensor or an integer"):
        td.extern(A.shape, [A], lambda ins, outs: td.call_packed("f", ins[0], 0.5))
    td.register_func("errors.once", lambda x: None, override=True)
    with pytest.raises(ValueError, match="registered already"):
        td.register_func("errors.once", lambda x: None)


def test_extern_on_the_gpu_is_refused():
    A, B, C = _extern_add_one()
    s = td.create_schedule(B.op)
    with pytest.raises(td.BuildError, match="td.extern calling 'errors.unregistered'.*host"):
        td.lower(s, [A, B], target="cuda")
