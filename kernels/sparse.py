"""Sparse operators as tensor expressions (compute definitions only; no schedules).

The sparse operand is a ``td.sparse_placeholder`` in CSR (``format="csr"``: rows dense,
columns compressed); its stored entries are visited through ``nonzeros`` (a reduction
axis bounded by ``pos``, TACO's iteration of a compressed level). A result with the
operand's pattern (``sddmm``, ``sparse_mul``, ``sparse_softmax``) is the ``vals`` of a
new matrix sharing the operand's ``pos`` and ``crd``: a compute over the stored
positions, which reads each position's row from ``row_ids``.

    A = td.sparse_placeholder((m, n), "csr", name="A")
    y = spmv(A, x)                  # y[i] = sum over the stored (i, j) of A[i, j] x[j]

A result whose pattern is assembled from its operands' (``sparse_add``) is a
``td.sparse.Assembly``: a count kernel and a fill kernel over the merged rows.
"""
from __future__ import annotations

import tensordsl as td
from tensordsl.ir import nodes as n
from tensordsl.te.tensor import STOP_GRADIENT_TAG


def _dim(e):
    return e.value if isinstance(e, n.IntImm) else e


def _shape(t) -> tuple:
    return tuple(_dim(d) for d in t.shape)


def _csr(A, what: str):
    from tensordsl.sparse import SparseTensor
    if not isinstance(A, SparseTensor):
        raise TypeError(f"{what}: the sparse operand must be a td.sparse_placeholder, got "
                        f"{type(A).__name__}")
    kinds = [lv.kind for lv in A.format.levels]
    if kinds != ["dense", "compressed"] or A.format.order != (0, 1) or A.format.block:
        raise ValueError(f"{what}: expected a CSR operand (dense rows, compressed "
                         f"columns), got {A.format}")


def _csr_or_bsr(A, what: str) -> tuple:
    """``(r, c)``: the block of a BSR operand, () for CSR."""
    from tensordsl.sparse import SparseTensor
    if isinstance(A, SparseTensor) and A.format.block:
        kinds = [lv.kind for lv in A.format.levels]
        if kinds[:2] != ["dense", "compressed"] or A.format.order != (0, 1):
            raise ValueError(f"{what}: expected a CSR or BSR operand, got {A.format}")
        return A.format.block
    _csr(A, what)
    return ()


def _check(cond: bool, msg: str):
    if not cond:
        raise ValueError(msg)


def spmv(A, x, name: str = "spmv"):
    """``y = A @ x``: ``A`` sparse (m, n) CSR or BSR, ``x`` dense (n,) → (m,); for BSR
    blocks of (r, c), (m / r, r): the rows by block (``reshape(m)`` is ``y``).

    >>> y = td.ops.spmv(a, x)          # a: scipy.sparse or td.nd.sparse_array
    """
    block = _csr_or_bsr(A, "spmv")
    m, ncols = A.shape
    _check(_shape(x) == (ncols,), f"spmv: x must have shape ({ncols},), got {_shape(x)}")
    if block:
        r, c = block

        def block_row(ib, ii):
            q, jb = A.nonzeros(ib)
            jj = td.reduce_axis((0, c), "jj")
            return td.sum(A.vals[q, ii, jj] * x[jb * c + jj], axis=[q, jj])
        return td.compute((m // r, r), block_row, name=name)

    def row(i):
        q, j = A.nonzeros(i)
        return td.sum(A.vals[q] * x[j], axis=q)
    return td.compute((m,), row, name=name)


def spmv_sliced(A, x, name: str = "spmv"):
    """``y = A @ x`` for a CSR ``A`` over its rows as sliced ELLPACK
    (``tensordsl/sparse/sliced.py``, derived from the CSR arrays by the runtime): a
    slice's rows summed side by side, one a lane, over the slice's steps (a padded step
    is a select of 0, never a product), then each row's sum read from its lane."""
    _csr(A, "spmv")
    m, ncols = A.shape
    _check(_shape(x) == (ncols,), f"spmv: x must have shape ({ncols},), got {_shape(x)}")
    layout = A.sliced()
    spos, scrd, svals, slen, slane = (layout[k] for k in
                                      ("spos", "scrd", "svals", "slen", "slane"))
    count, lanes = _shape(slen)

    def lane_sum(s, r):
        k = td.reduce_axis((spos[s].astype("int64"), spos[s + 1].astype("int64")),
                           f"{name}.step")
        # (in 32 bits: one vector compare against a slice's lengths)
        stored = (k - spos[s].astype("int64")).astype("int32") < slen[s, r]
        return td.sum(td.if_then_else(stored, svals[k, r] * x[scrd[k, r]], 0.0), axis=k)
    by_lane = td.compute((count, lanes), lane_sum, name=f"{name}.lanes")
    def row_sum(i):
        lane = slane[i].astype("int64")    # (a 64-bit index: the two read as one, lane)
        return by_lane[lane // lanes, lane % lanes]
    return td.compute((m,), row_sum, name=name)


def spmm(A, B, name: str = "spmm"):
    """``C = A @ B``: ``A`` sparse (m, n) CSR or BSR (blocks of (r, c): each stored
    block a dense r x c product with c rows of ``B``), ``B`` dense (n, f) → dense (m, f);
    for BSR (m / r, r, f), the rows by block (``reshape(m, f)`` is ``C``).

    >>> c = td.ops.spmm(a, b, schedule="nonzeros")
    """
    block = _csr_or_bsr(A, "spmm")
    m, ncols = A.shape
    _check(len(B.shape) == 2 and _dim(B.shape[0]) == ncols,
           f"spmm: B must have shape ({ncols}, f), got {_shape(B)}")
    if block:
        r, c = block

        def block_element(ib, ii, col):
            q, jb = A.nonzeros(ib)
            jj = td.reduce_axis((0, c), "jj")
            return td.sum(A.vals[q, ii, jj] * B[jb * c + jj, col], axis=[q, jj])
        return td.compute((m // r, r, B.shape[1]), block_element, name=name)

    def element(i, c):
        q, j = A.nonzeros(i)
        return td.sum(A.vals[q] * B[j, c], axis=q)
    return td.compute((m, B.shape[1]), element, name=name)


def sddmm(S, X, Y, name: str = "sddmm"):
    """Sampled dense-dense product: ``S ⊙ (X @ Y.T)`` at ``S``'s stored entries, ``S``
    sparse (m, n) CSR, ``X`` (m, f), ``Y`` (n, f) → the values of a matrix with ``S``'s
    pattern (its ``nnz`` values). The gradient of ``spmm`` with respect to the sparse
    values is one (with ``S``'s values 1).

    >>> g = td.ops.sddmm(a, x, y)       # a's pattern, a's kind (scipy in, scipy out)
    """
    _csr(S, "sddmm")
    m, ncols = S.shape
    _check(len(X.shape) == 2 and _dim(X.shape[0]) == m,
           f"sddmm: X must have shape ({m}, f), got {_shape(X)}")
    _check(len(Y.shape) == 2 and _dim(Y.shape[0]) == ncols and
           _dim(Y.shape[1]) == _dim(X.shape[1]),
           f"sddmm: Y must have shape ({ncols}, {_dim(X.shape[1])}), got {_shape(Y)}")
    rows, cols = S.row_ids(1), S.crd[1]
    k = td.reduce_axis((0, X.shape[1]), "k")
    # the dot products, then S's values: one multiplication per entry, not one per term
    dot = td.compute(S.vals.shape, lambda p: td.sum(
        X[rows[p].astype("int64"), k] * Y[cols[p].astype("int64"), k], axis=k),
        name=f"{name}.dot")
    return td.compute(S.vals.shape, lambda p: S.vals[p] * dot[p], name=name)


def sparse_mul(A, D, name: str = "sparse_mul"):
    """``A ⊙ D`` at ``A``'s stored entries (``D`` dense, ``A``'s shape): the values of a
    matrix with ``A``'s pattern.

    >>> p = td.ops.sparse_mul(a, b)
    """
    _csr(A, "sparse_mul")
    _check(_shape(D) == tuple(_dim(d) for d in A.shape),
           f"sparse_mul: D must have A's shape {A.shape}, got {_shape(D)}")
    rows, cols = A.row_ids(1), A.crd[1]
    return td.compute(A.vals.shape, lambda p: A.vals[p] * D[rows[p].astype("int64"),
                                                            cols[p].astype("int64")],
                      name=name)


def sparse_dense(X, W, name: str = "sparse_dense"):
    """``X @ W.T`` with ``W`` sparse (out, in) CSR and ``X`` dense (batch, in) → (batch,
    out): a linear layer whose weight has a fixed pattern (TVM's ``sparse_dense``).

    >>> y = sparse_dense(x, W)          # W = td.sparse_placeholder((out, k), "csr")
    """
    _csr(W, "sparse_dense")
    out_features, in_features = W.shape
    _check(len(X.shape) == 2 and _dim(X.shape[1]) == in_features,
           f"sparse_dense: X must have shape (batch, {in_features}), got {_shape(X)}")

    def element(b, o):
        q, j = W.nonzeros(o)
        return td.sum(W.vals[q] * X[b, j], axis=q)
    return td.compute((X.shape[0], out_features), element, name=name)


def graph_attention(A, H, a_src, a_dst, negative_slope: float = 0.2,
                    name: str = "graph_attention"):
    """One graph-attention head (GAT, Velickovic et al. 2018) over the edges of ``A``
    (n, n) CSR (row i: the neighbours j that i attends to, itself included if it should
    be), node features ``H`` (n, f), attention vectors ``a_src``, ``a_dst`` (f,):

        e[i, j] = leaky_relu(a_src . H[i] + a_dst . H[j])     at A's entries only
        alpha   = softmax of each row of e over its entries
        out[i]  = sum over A's entries (i, j) of alpha[i, j] H[j]

    ``A``'s values are not read (only its pattern). Every step is a compute over the
    pattern, so ``td.grad`` of it keeps to the edges.

    >>> out = graph_attention(A, H, a_src, a_dst)        # (n, f)
    """
    _csr(A, "graph_attention")
    n_nodes, f = _dim(A.shape[0]), _dim(H.shape[1])
    _check(_shape(H)[0] == n_nodes and _dim(A.shape[1]) == n_nodes,
           f"graph_attention: A must be square and H (n, f) with n = {n_nodes}, got A "
           f"{tuple(map(_dim, A.shape))}, H {_shape(H)}")
    _check(_shape(a_src) == (f,) and _shape(a_dst) == (f,),
           f"graph_attention: a_src and a_dst must have shape ({f},), got "
           f"{_shape(a_src)}, {_shape(a_dst)}")
    k = td.reduce_axis((0, f), "k")
    src = td.compute((n_nodes,), lambda i: td.sum(H[i, k] * a_src[k], axis=k),
                     name=f"{name}.src")
    k2 = td.reduce_axis((0, f), "k")
    dst = td.compute((n_nodes,), lambda i: td.sum(H[i, k2] * a_dst[k2], axis=k2),
                     name=f"{name}.dst")
    rows, cols = A.row_ids(1), A.crd[1]

    def score(p):
        e = src[rows[p].astype("int64")] + dst[cols[p].astype("int64")]
        return td.select(e > 0, e, e * negative_slope)
    scores = td.compute(A.vals.shape, score, name=f"{name}.score")

    def row_max(i):
        q, _ = A.nonzeros(i)
        return td.max(scores[q], axis=q)
    peak = td.compute((n_nodes,), row_max, name=f"{name}.max")

    def row_sum(i):
        q, _ = A.nonzeros(i)
        return td.sum(td.exp(scores[q] - peak[i]), axis=q)
    total = td.compute((n_nodes,), row_sum, name=f"{name}.sum")
    alpha = td.compute(A.vals.shape, lambda p: td.exp(
        scores[p] - peak[rows[p].astype("int64")]) / total[rows[p].astype("int64")],
        name=f"{name}.alpha")

    def aggregate(i, c):
        q, j = A.nonzeros(i)
        return td.sum(alpha[q] * H[j, c], axis=q)
    return td.compute((n_nodes, f), aggregate, name=name)


def sparse_add(A, B, name: str = "sparse_add"):
    """``A + B`` over the union of the patterns (both CSR with sorted, unique columns,
    one shape and dtype): a sparse result assembled in two kernels, count then fill
    (``td.sparse.assemble``, TACO's co-iteration). Entries that sum to zero are kept.

    >>> c = td.ops.sparse_add(a, b)      # scipy in, scipy out
    """
    _csr(A, "sparse_add")
    _csr(B, "sparse_add")
    return td.sparse.assemble(A + B, name=name)


def sparse_softmax(A, name: str = "sparse_softmax"):
    """Softmax of each row over its stored entries only (graph attention): the values
    of a matrix with ``A``'s pattern; a row without entries has none.

    >>> attention = td.ops.sparse_softmax(scores)
    """
    _csr(A, "sparse_softmax")
    m = A.shape[0]

    def row_max(i):
        q, _ = A.nonzeros(i)
        return td.max(A.vals[q], axis=q)

    # subtracted for stability only: the result does not depend on it, nor its gradient
    peak = td.compute((m,), row_max, name=f"{name}.max", tag=STOP_GRADIENT_TAG)

    def row_sum(i):
        q, _ = A.nonzeros(i)
        return td.sum(td.exp(A.vals[q] - peak[i]), axis=q)

    total = td.compute((m,), row_sum, name=f"{name}.sum")
    rows = A.row_ids(1)
    return td.compute(A.vals.shape, lambda p: td.exp(
        A.vals[p] - peak[rows[p].astype("int64")]) / total[rows[p].astype("int64")],
        name=name)
