"""tensordsl.nn: PyTorch-shaped training whose every op is a generated kernel.

``Tensor`` (a numpy array with ``requires_grad``, ``grad`` and the tape entry that made
it) and ``no_grad()``; ``nn.functional``: every ``td.ops`` operator as a differentiable
function, plus ``torch.nn.functional``'s names (``F.linear``, ``F.conv2d``,
``F.cross_entropy``, ...). Forward and backward are both generated kernels —
``td.ops.<op>`` and ``td.ops.<op>_backward`` (derived by ``td.vjp``), each compiled once
per shape and cached. Modules (``modules.py``, ``layers.py``, ``normalization.py``),
optimizers whose updates are one kernel per class of parameters (``optim.py``), a batch
iterator (``data.py``), capsule layers and the margin loss (``capsules.py``) and a whole
training step traced into one program (``step.py``).

    import tensordsl.nn as nn
    import tensordsl.nn.functional as F
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = nn.Adam(model.parameters(), lr=1e-3)
    for xb, yb in nn.DataLoader((X, y), batch_size=32, shuffle=True, seed=0):
        opt.zero_grad()
        F.cross_entropy(model(nn.Tensor(xb)), yb).backward()
        opt.step()
"""
from . import functional, optim
from .capsules import CapsuleLayer, PrimaryCapsules
from .data import DataLoader
from .function import Function
from .layers import GELU, Conv2d, Dropout, Embedding, Flatten, MaxPool2d, Sigmoid, Tanh
from .modules import Linear, Module, Parameter, ReLU, Sequential
from .normalization import BatchNorm2d, LayerNorm
from .optim import SGD, Adam, AdamW
from .sparse import GraphAttention, SparseFunction, SparseLinear
from .step import TrainStep
from .tensor import Tensor, no_grad

__all__ = ["Adam", "AdamW", "BatchNorm2d", "CapsuleLayer", "Conv2d", "DataLoader", "Dropout",
           "Embedding", "Flatten", "Function", "GELU", "GraphAttention", "LayerNorm", "Linear",
           "MaxPool2d", "Module", "PrimaryCapsules", "SparseFunction", "SparseLinear",
           "Parameter", "ReLU", "SGD", "Sequential", "Sigmoid", "Tanh", "Tensor", "TrainStep",
           "functional", "no_grad", "optim"]
