"""Layers over a fixed sparsity pattern: a pruned weight (``SparseLinear``) or a graph
(``GraphAttention``). The pattern is a CSR ``td.nd`` sparse array; the layer's compute
is a ``kernels/sparse.py`` definition over a ``td.sparse_placeholder`` of it, and its
gradients are ``td.vjp`` of the same definition — over the pattern's entries only (the
gradient of a weight's stored values is an SDDMM, never a dense matrix; a dense operand's
reads through the columns go through the transposed pattern, derived once).

    W = scipy.sparse.random(256, 784, density=0.05, format="csr", dtype="float32")
    layer = nn.SparseLinear(W)                 # its stored values are the parameter
    y = layer(x)                               # x (batch, 784) -> (batch, 256)

    gat = nn.GraphAttention(64, 16, graph)     # graph: (n, n) adjacency, CSR
    out = gat(features)                        # (n, 64) -> (n, 16)
"""
from __future__ import annotations

import numpy as np

from .function import taped_call
from .modules import Module, Parameter
from .tensor import Tensor
from .trace import active


def _pattern(matrix, what: str):
    """The pattern as a CSR td.nd sparse array (checked once)."""
    from ..sparse import SparseArray, sparse_array
    from ..sparse.interop import is_scipy, is_torch_sparse
    if not (isinstance(matrix, SparseArray) or is_scipy(matrix) or is_torch_sparse(matrix)):
        raise TypeError(f"{what}: the pattern must be a scipy.sparse matrix, a torch sparse "
                        f"tensor or a td.nd sparse array, got {type(matrix).__name__}")
    pattern = sparse_array(matrix, format="csr")
    if pattern.dtype not in ("float32", "float64"):
        pattern = pattern.astype("float32")
    return pattern


class SparseFunction:
    """``define(A, *dense)`` — a compute over a sparse placeholder ``A`` of ``pattern``'s
    shape and dense placeholders — as a differentiable function of the pattern's values
    and the dense operands (nn.Tensors): compiled once per dense shapes and dtypes, the
    gradient of each operand built on first use (``td.vjp``)."""

    def __init__(self, define, pattern, name: str):
        self.define, self.pattern, self.name = define, pattern, name
        self._kernels: dict = {}

    def __call__(self, values, *dense) -> Tensor:
        operands = [x if isinstance(x, Tensor) else Tensor(x) for x in (values, *dense)]
        if active() is not None:
            raise NotImplementedError(
                f"{self.name}: a sparse layer is not traced into nn.TrainStep yet; train "
                "it with the eager tape (loss.backward(), optimizer.step())")
        if operands[0].shape != self.pattern.vals.shape:
            raise ValueError(f"{self.name}: values must have the pattern's "
                             f"{self.pattern.vals.shape} shape, got {operands[0].shape}")
        kernels = self._compiled(operands)
        names = ["values"] + [f"in{k}" for k in range(len(dense))]
        return taped_call(self.name, operands, names, kernels)

    def _compiled(self, operands) -> "_SparseKernels":
        dtype = self.pattern.dtype
        for k, x in enumerate(operands):
            if x.dtype.name != dtype:
                raise TypeError(f"{self.name}: operand {k} must be {dtype} like the "
                                f"pattern's values, got {x.dtype}")
        key = tuple(x.shape for x in operands[1:])
        kernels = self._kernels.get(key)
        if kernels is None:
            import tensordsl as td
            A = td.sparse_placeholder(self.pattern.shape, "csr", dtype, name="A")
            dense = [td.placeholder(shape, dtype, f"in{k}") for k, shape in enumerate(key)]
            out = self.define(A, *dense)
            kernels = self._kernels[key] = _SparseKernels(self.pattern, A, dense, out)
        return kernels


class _SparseKernels:
    """The forward of one set of dense shapes and, on first use, each gradient."""

    def __init__(self, pattern, A, dense, out):
        import tensordsl as td
        from ..arith.simplify import const_int
        self.pattern, self.A, self.dense, self.out = pattern, A, dense, out
        self.shape = tuple(const_int(d) for d in out.shape)
        self.dtype = np.dtype(out.dtype)
        self.forward_args = [*A.placeholders(), *dense]
        self.forward_kernel = td.build(self.forward_args + [out], target="llvm")
        self.gradients: dict = {}

    def _arrays(self, placeholders, values, dense_arrays) -> list:
        """The arrays of ``placeholders`` (the pattern's components — ``values`` as its
        ``vals`` — and the dense operands)."""
        by_tensor = dict(zip(map(id, self.dense), dense_arrays))
        arrays = []
        for t in placeholders:
            if id(t) in by_tensor:
                arrays.append(by_tensor[id(t)])
            elif t is self.A.vals:
                arrays.append(values)
            else:
                arrays.append(self.pattern.component(t.name.split(".", 1)[1]))
        return arrays

    def forward(self, arrays) -> np.ndarray:
        from ..nd import aligned_numpy
        result = aligned_numpy(self.shape, self.dtype)
        self.forward_kernel(*self._arrays(self.forward_args, arrays[0], arrays[1:]), result)
        return result

    def backward(self, arrays, cotangent, wanted) -> list:
        from ..nd import aligned_numpy
        head = np.ascontiguousarray(cotangent, dtype=self.dtype)
        grads = []
        for k, want in enumerate(wanted):
            if not want:
                grads.append(None)
                continue
            kernel, args, shape = self._gradient(k)
            g = aligned_numpy(shape, self.dtype)
            kernel(*self._arrays(args, arrays[0], arrays[1:]), head, g)
            grads.append(g)
        return grads

    def _gradient(self, k: int):
        """``td.vjp(out, [operand k])`` (0: the values), built over the placeholders it
        reads — the pattern's derived arrays (its rows, its transpose) among them."""
        hit = self.gradients.get(k)
        if hit is None:
            import tensordsl as td
            from ..arith.simplify import const_int
            target = self.A.vals if k == 0 else self.dense[k - 1]
            (g,), head = td.vjp(self.out, [target])
            args = [*self.A.placeholders(), *self.dense]
            kernel = td.build(args + [head, g], target="llvm")
            # (the values' adjoint has their symbolic size: this pattern's)
            shape = self.pattern.vals.shape if k == 0 else tuple(const_int(d) for d in g.shape)
            hit = self.gradients[k] = (kernel, args, shape)
        return hit


class SparseLinear(Module):
    """``y = x @ W.T + b`` with ``W`` (out_features, in_features) of a fixed pattern —
    ``weight`` (a scipy.sparse matrix or td.nd sparse array; its stored values are the
    initial parameter ``values``, nnz of them) — and a bias (out_features,)."""

    def __init__(self, weight, bias: bool = True):
        super().__init__()
        import kernels.sparse as definitions
        self.pattern = _pattern(weight, "SparseLinear")
        self.out_features, self.in_features = self.pattern.shape
        self.values = Parameter(np.array(self.pattern.vals, copy=True))
        self.bias = Parameter(np.zeros(self.out_features, self.pattern.dtype)) \
            if bias else None
        self._product = SparseFunction(
            lambda W, x: definitions.sparse_dense(x, W), self.pattern, "sparse_dense")

    def forward(self, x) -> Tensor:
        from . import functional as F
        y = self._product(self.values, x)
        return y if self.bias is None else F.add(y, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={self.pattern.nnz}, bias={self.bias is not None}")


class GraphAttention(Module):
    """One graph-attention head (GAT): ``h = x @ W``, attention over the edges of
    ``graph`` (an (n, n) pattern; row i: the nodes i attends to) from ``a_src . h[i] +
    a_dst . h[j]`` (leaky ReLU, softmax over each row's edges), ``out[i] = sum_j
    alpha[i, j] h[j]`` (``kernels.sparse.graph_attention``)."""

    def __init__(self, in_features: int, out_features: int, graph,
                 negative_slope: float = 0.2, seed: int = 0):
        super().__init__()
        import kernels.sparse as definitions
        self.graph = _pattern(graph, "GraphAttention")
        n_nodes = self.graph.shape[0]
        if self.graph.shape != (n_nodes, n_nodes):
            raise ValueError(f"GraphAttention: graph must be square, got {self.graph.shape}")
        rng = np.random.default_rng(seed)
        dtype = self.graph.dtype
        scale = np.sqrt(2.0 / (in_features + out_features))
        self.weight = Parameter((rng.standard_normal((in_features, out_features)) * scale)
                                .astype(dtype))
        self.a_src = Parameter((rng.standard_normal(out_features) * 0.1).astype(dtype))
        self.a_dst = Parameter((rng.standard_normal(out_features) * 0.1).astype(dtype))
        self.in_features, self.out_features = in_features, out_features
        slope = float(negative_slope)
        self._attend = SparseFunction(
            lambda A, h, a1, a2: definitions.graph_attention(A, h, a1, a2, slope),
            self.graph, "graph_attention")

    def forward(self, x) -> Tensor:
        from . import functional as F
        h = F.matmul(x, self.weight)
        # the graph's values are not read: a constant operand, never differentiated
        return self._attend(Tensor(self.graph.vals), h, self.a_src, self.a_dst)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nodes={self.graph.shape[0]}, edges={self.graph.nnz}")
