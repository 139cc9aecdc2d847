"""Sparse tensors (TACO's formats and iteration): ``format.py`` the level formats,
``tensor.py`` sparse operands of a compute (``td.sparse_placeholder``)."""
from .format import Format, Level, as_format
from .tensor import SparseTensor, sparse_placeholder

__all__ = ["Format", "Level", "SparseTensor", "as_format", "sparse_placeholder"]
