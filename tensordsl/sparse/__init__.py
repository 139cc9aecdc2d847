"""Sparse tensors (TACO's formats and iteration): ``format.py`` the level formats,
``tensor.py`` sparse operands of a compute (``td.sparse_placeholder``), ``array.py``
sparse arrays at run time (``td.nd.sparse_array``: ``assemble.py`` builds a format's
arrays from coordinates, ``interop.py`` exchanges them with scipy.sparse and
torch.sparse, ``validate.py`` checks their structure)."""
from .format import Format, Level, as_format
from .tensor import SparseTensor, sparse_placeholder
from .array import SparseArray, sparse_array
from .validate import validate
from .coiterate import Assembly, assemble

__all__ = ["Assembly", "assemble", "Format", "Level", "SparseArray", "SparseTensor", "as_format", "sparse_array",
           "sparse_placeholder", "validate"]
