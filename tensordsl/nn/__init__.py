"""tensordsl.nn: tensors that remember how they were computed, for training.

The first part of the training layer (issue 14): ``Tensor`` (a numpy array with
``requires_grad``, ``grad`` and the tape entry that made it), ``no_grad()``, and
``nn.functional``: every ``td.ops`` operator as a differentiable function. Forward and
backward are both generated kernels — ``td.ops.<op>`` and ``td.ops.<op>_backward``
(derived by ``td.vjp``), each compiled once per shape and cached.

    import tensordsl.nn as nn
    import tensordsl.nn.functional as F
    x = nn.Tensor(np.random.rand(8, 4))
    w = nn.Tensor(np.random.rand(3, 4), requires_grad=True)
    loss = F.reduce_sum(F.relu(F.dense(x, w)))
    loss.backward()
    w.grad                                 # d loss / d w, a numpy array
"""
from . import functional, optim
from .data import DataLoader
from .function import Function
from .layers import GELU, Conv2d, Dropout, Embedding, Flatten, MaxPool2d, Sigmoid, Tanh
from .modules import Linear, Module, Parameter, ReLU, Sequential
from .normalization import BatchNorm2d, LayerNorm
from .optim import SGD, Adam, AdamW
from .step import TrainStep
from .tensor import Tensor, no_grad

__all__ = ["Adam", "AdamW", "BatchNorm2d", "Conv2d", "DataLoader", "Dropout", "Embedding",
           "Flatten", "Function", "GELU", "LayerNorm", "Linear", "MaxPool2d", "Module",
           "Parameter", "ReLU", "SGD", "Sequential", "Sigmoid", "Tanh", "Tensor", "TrainStep",
           "functional", "no_grad", "optim"]
