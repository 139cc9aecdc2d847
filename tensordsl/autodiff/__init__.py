"""Automatic differentiation of tensor expressions: te graph in, te graph out.

    x = td.placeholder((n, 64), name="x")
    y = td.compute((n, 64), lambda i, j: td.tanh(x[i, j]) * x[i, j], name="y")
    gx = td.grad(y, x)                   # reverse mode; head (dL/dy) defaults to ones
    (gx,), head = td.vjp(y, [x])         # head: a new placeholder "y.grad" of y's shape
    ty, (tx,) = td.jvp(y, [x])           # forward mode; tangents: new placeholders "x.tangent"
    hv, v = td.hvp(y, x)                 # Hessian of sum(y) times v (forward over reverse)
    step = td.build_program([x, v], [y, gx, hv])   # the graph as a sequence of kernels

Every result is an ordinary tensor of ``ComputeOp``s: schedule it, tune it, build it
(``td.build([x, head, gx])`` auto-schedules) like any other.

* ``grad(y, xs, head=None)``: the adjoint of each ``x`` in ``xs`` for the cotangent
  ``head`` of ``y`` (default: ones, i.e. the gradient of ``sum(y)``). ``xs`` a tensor:
  one tensor back; a list: a list back. An ``x`` that ``y`` does not depend on gets zeros.
* ``vjp(y, xs, head=None)`` -> ``(adjoints, head)``: as ``grad``, but a ``head`` left
  out is created as a placeholder named ``<y.name>.grad`` and returned, to be passed in.
* ``jvp(y, xs, tangents=None)`` -> ``(tangent_y, tangents)``: the directional
  derivative of ``y`` along ``tangents`` (one per x; placeholders ``<x.name>.tangent``
  created when left out).
* ``hvp(y, x, v=None, head=None)`` -> ``(hv, v)``: ``H v`` where ``H`` is the Hessian
  of ``sum(head * y)`` with respect to ``x`` (``y`` usually a one-element loss), by
  forward mode over the reverse-mode gradient; ``v`` created as a placeholder
  ``<x.name>.tangent`` when left out. ``x`` (and ``v``) may be lists: the Hessian of
  all of them together.
* ``gradient(y, xs, head=None)``: TVM's ``te.gradient`` (always a list).
* ``stop_gradient(x)``: ``x`` as a constant to all of the above.

Rules (``derivative.py``): arithmetic, every intrinsic, ``if_then_else``/``select``
(the derivative of the chosen arm), casts (integers carry no derivative), ``max``/``min``
of two values (the derivative of the one chosen; on a tie the second operand's, so
``relu``'s derivative at 0 is 0, as in PyTorch). Reductions (``reductions.py``): ``sum``;
``max``/``min`` through an argmax mask: on a tie the element first in the reduction's
row-major order gets all of the derivative, as PyTorch's ``max_pool2d`` does; any other
``comm_reducer`` raises ``TensorDSLError`` naming it.

Reverse mode (``reverse.py``) solves the index equations of each read exactly
(``solve.py``), so adjoints are gathers: the adjoint of a convolution's input is a
convolution of the output adjoint. A read whose indices cannot be solved (``x[idx[i]]``
read through data) is differentiated by a correct accumulation over the reading domain,
marked ``gradient: accumulate`` in ``td.lower``'s output — except the reads of a sparse
operand's structure (``segments.py``): a loop over a row's entries ``[pos[i], pos[i +
1])`` inverts to the row of a position (``rows[p]``), ``crd[q] == j`` to a loop over the
entries of column ``j`` of the transpose (``tpos``, ``perm``), so the gradient of an SpMM
with respect to the values is an SDDMM over the pattern and with respect to the dense
operand an SpMM with ``A.T``. Those derived arrays are placeholders of the sparse operand:
build over ``A.placeholders()`` after differentiating, pass ``S.arrays(like=A)``.
"""
from .api import grad, gradient, hvp, jvp, stop_gradient, vjp

__all__ = ["grad", "gradient", "hvp", "jvp", "stop_gradient", "vjp"]
