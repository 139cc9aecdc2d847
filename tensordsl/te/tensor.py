"""Tensors and the operations that produce them (TVM's classic ``te`` graph).

A ``PlaceholderOp`` is an input; a ``ComputeOp`` defines each output element by an
expression of its axis variables. Operations are immutable; a schedule that rewrites
the graph (cache_read, cache_write, rfactor) creates new operations.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import nodes as n
from ..ir.op import convert
from ..ir.visitor import Visitor


@dataclass(frozen=True)
class Tensor:
    """Output ``value_index`` of ``op``. ``T[i, j]`` reads it inside an expression."""
    op: "Operation"
    value_index: int = 0

    @property
    def shape(self) -> tuple[n.Expr, ...]:
        return self.op.output_shape(self.value_index)

    @property
    def dtype(self) -> str:
        return self.op.output_dtype(self.value_index)

    @property
    def ndim(self) -> int:
        return len(self.op.shape)

    @property
    def name(self) -> str:
        return self.op.name if self.op.num_outputs == 1 else f"{self.op.name}.v{self.value_index}"

    def __getitem__(self, indices):
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) < self.ndim:
            return TensorSlice(self, indices)
        if len(indices) != self.ndim:
            raise IndexError(f"tensor {self.name} has {self.ndim} dimensions, indexed "
                             f"with {len(indices)}")
        idx = []
        for i in indices:
            e = convert(i)
            if e.dtype != "int64":
                from ..ir import dtype as dt
                if not dt.is_int(e.dtype) or dt.lanes(e.dtype) != 1:
                    raise TypeError(f"index of {self.name}: expected an integer "
                                    f"expression, got {e.dtype}")
                e = n.Cast("int64", e)
            idx.append(e)
        return n.TensorRead(self, tuple(idx))

    def __call__(self, *indices):
        return self[indices]

    def __repr__(self):
        return f"Tensor({self.name}, shape={list(self.shape)}, {self.dtype})"


class TensorSlice:
    """``T[i]`` of a tensor with more dimensions: ``T[i][j]`` reads ``T[i, j]`` (TVM's
    chained indexing). Only a complete index reads an element."""

    def __init__(self, tensor: Tensor, indices: tuple):
        self.tensor, self.indices = tensor, indices

    def __getitem__(self, indices):
        if not isinstance(indices, tuple):
            indices = (indices,)
        return self.tensor[self.indices + indices]

    def _incomplete(self, *_):
        raise TypeError(f"tensor {self.tensor.name} has {self.tensor.ndim} dimensions but "
                        f"is read with {len(self.indices)} of them indexed: give one index "
                        "per dimension")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _incomplete
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _incomplete
    __mod__ = __rmod__ = __neg__ = __lt__ = __le__ = __gt__ = __ge__ = _incomplete
    astype = _incomplete

    def __repr__(self):
        return (f"TensorSlice({self.tensor.name}, {len(self.indices)} of "
                f"{self.tensor.ndim} indices)")


# The tag of a derived adjoint computed by accumulating over the reading domain, for want
# of a gather form (autodiff/reverse.py); lowering marks its loop nest with a pragma.
ACCUMULATE_TAG = "gradient: accumulate"
# The tag of a compute that autodiff treats as a constant (``td.stop_gradient``; the
# max that softmax subtracts for stability, whose derivative is zero).
STOP_GRADIENT_TAG = "stop_gradient"


class Operation:
    name: str
    shape: tuple[n.Expr, ...]

    @property
    def num_outputs(self) -> int:
        return 1

    def output(self, i: int = 0) -> Tensor:
        return Tensor(self, i)

    def output_shape(self, i: int) -> tuple[n.Expr, ...]:
        return self.shape

    @property
    def outputs(self) -> tuple[Tensor, ...]:
        return tuple(Tensor(self, i) for i in range(self.num_outputs))

    @property
    def input_tensors(self) -> list[Tensor]:
        return []


class PlaceholderOp(Operation):
    def __init__(self, name: str, shape, dtype: str):
        self.name, self.shape, self.dtype = name, shape, dtype

    def output_dtype(self, i: int) -> str:
        return self.dtype

    def __repr__(self):
        return f"PlaceholderOp({self.name})"


class ComputeOp(Operation):
    """``outputs[k][axis] = body[k]``; a reduction's body is ``Reduce`` nodes sharing one
    combiner and one set of reduce axes."""

    def __init__(self, name: str, axis: tuple[n.IterVar, ...], body: tuple[n.Expr, ...],
                 tag: str = ""):
        self.name, self.axis, self.body, self.tag = name, tuple(axis), tuple(body), tag
        self.shape = tuple(iv.dom.extent for iv in self.axis)
        first = self.body[0]
        self.reduce_axis = first.axis if isinstance(first, n.Reduce) else ()

    @property
    def num_outputs(self) -> int:
        return len(self.body)

    def output_dtype(self, i: int) -> str:
        return self.body[i].dtype

    @property
    def input_tensors(self) -> list[Tensor]:
        return tensors_read(self.body)

    def __repr__(self):
        return f"ComputeOp({self.name})"


class ScanOp(Operation):
    """A recurrence (TVM's ``te.scan``): output ``k`` holds ``init[k]`` in its first
    ``init_len`` rows, then, for ``t`` from ``init_len`` up, row ``t`` of ``update[k]``,
    whose definition reads ``state[k]`` — the scan's output so far — at earlier rows.

    ``scan_axis`` counts the loop's iterations from 0 (row ``scan_axis + init_len``).
    The update stages, and the stages between a state and an update, are computed
    inside that loop; lowering stores their rows (and the init's) straight into the
    scan's outputs and reads the states from them (``lower/scan.py``)."""

    def __init__(self, name: str, scan_axis: n.IterVar, init, update, state, inputs,
                 tag: str = ""):
        self.name, self.scan_axis, self.tag = name, scan_axis, tag
        self.init, self.update, self.state = tuple(init), tuple(update), tuple(state)
        self.inputs = tuple(inputs)
        self.axis, self.reduce_axis = (), ()
        self.shape = self.update[0].shape
        self.init_len = self.init[0].shape[0]

    @property
    def num_outputs(self) -> int:
        return len(self.update)

    def output_shape(self, i: int) -> tuple[n.Expr, ...]:
        return self.update[i].shape

    def output_dtype(self, i: int) -> str:
        return self.update[i].dtype

    @property
    def input_tensors(self) -> list[Tensor]:
        return list(self.init) + list(self.update)

    def body_ops(self) -> list["ComputeOp"]:
        """The operations computed inside the scan's loop, rows indexed by time: the
        updates and every operation they read that reads a state (directly or not)."""
        states = {st.op for st in self.state}
        updates = [u.op for u in self.update]
        reads_state: dict = {}

        def depends(op) -> bool:
            if op not in reads_state:
                reads_state[op] = op in states or (isinstance(op, ComputeOp) and any(
                    depends(t.op) for t in op.input_tensors))
            return reads_state[op]

        body, todo = [], list(updates)
        while todo:
            op = todo.pop()
            if op in body or not isinstance(op, ComputeOp):
                continue
            if op in updates or depends(op):
                body.append(op)
                todo.extend(t.op for t in op.input_tensors)
        return body

    def __repr__(self):
        return f"ScanOp({self.name})"


class ExternOp(Operation):
    """Outputs computed by code the caller writes (TVM's ``te.extern``): ``body``, a
    statement built with ``td.ir_builder``, or ``call``, ``td.call_packed(name,
    *tensors)`` — run once where the stage runs (always at root), with ``inputs``
    computed before it."""

    def __init__(self, name: str, shapes, dtypes, inputs, tag: str = ""):
        self.name, self.tag = name, tag
        self.shapes, self.dtypes, self.inputs = tuple(shapes), tuple(dtypes), tuple(inputs)
        self.axis, self.reduce_axis = (), ()
        self.shape = self.shapes[0]
        self.call: n.Expr | None = None     # set once the outputs exist
        self.body: n.Stmt | None = None     # or the statement of a td.ir_builder

    @property
    def num_outputs(self) -> int:
        return len(self.shapes)

    def output_shape(self, i: int) -> tuple[n.Expr, ...]:
        return self.shapes[i]

    def output_dtype(self, i: int) -> str:
        return self.dtypes[i]

    @property
    def input_tensors(self) -> list[Tensor]:
        return list(self.inputs)

    def __repr__(self):
        return f"ExternOp({self.name})"


class _ReadCollector(Visitor):
    def __init__(self):
        self.tensors: dict[Tensor, None] = {}

    def visit_TensorRead(self, node):
        self.tensors[node.tensor] = None
        self.generic_visit(node)


def tensors_read(exprs) -> list[Tensor]:
    """Tensors read by the expressions, in order of first read."""
    c = _ReadCollector()
    for e in exprs:
        c.visit(e)
    return list(c.tensors)
