"""Training the bundled models on scikit-learn's digits (``tensordsl train
mlp|cnn|capsnet``).

    history = train("mlp", step="compiled")
    history.test_accuracy[-1]                         # about 0.98
    history.model.save("mlp.npz")

The data: ``sklearn.datasets.load_digits`` (1797 8x8 images shipped with scikit-learn,
nothing downloaded), features scaled to [0, 1] (/16), split once into 1437 training and
360 test images by a fixed permutation, so every run and every ``--seed`` tests on the
same images (``--seed`` draws the initial weights and the batch order).

The models (``build_model``): ``mlp`` is the issue's benchmark network 64 -> 256 -> 256 ->
10 with ReLUs; ``cnn`` two 3x3 convolutions (16 and 32 channels, each with ReLU and 2x2
max pooling) and a linear layer 128 -> 10; ``capsnet`` a small CapsNet (Sabour et al.,
2017) sized for 8x8 images: a 3x3 convolution 1 -> 32 with ReLU, primary capsules (8
types of 8 dimensions from a 3x3 stride-2 convolution: 8 x 4 x 4 = 128 capsules), digit
capsules (10 of 16 dimensions, 3 routing iterations), trained on the margin loss with
Adam; its prediction is the longest digit capsule (``predictions``).

One optimizer step is one function, ``loss = step(x_batch, y_batch)`` (numpy batches in,
the loss as a float out): ``eager_step`` runs the forward, the loss, the backward through
the tape and the optimizer's update kernel by kernel; ``nn.TrainStep`` (``--step
compiled``) traces the same step into one program. Every op of either is a generated
kernel, and the two compute the same losses.
Batches are all ``batch_size`` long (the rest of a shuffled epoch is left out, PyTorch's
``drop_last``), so each kernel is compiled for one shape.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import functional as F
from .capsules import CapsuleLayer, PrimaryCapsules, capsule_lengths
from .data import DataLoader
from .layers import Conv2d, Flatten, MaxPool2d
from .modules import Linear, Module, ReLU, Sequential
from .optim import SGD, Adam
from .tensor import Tensor, no_grad

MODELS = ("mlp", "cnn", "capsnet")
TEST_SIZE = 360         # a fifth of the 1797 images
SPLIT_SEED = 0          # the train/test split is fixed; --seed does not move it


@dataclass(frozen=True)
class Defaults:
    """What ``tensordsl train MODEL`` uses unless told otherwise (measured on 2 cores:
    ``mlp`` >= 97% test accuracy in well under a minute, ``cnn`` >= 98%, ``capsnet`` >=
    98% in 7 s with a warm compile cache). The learning rate follows a cosine from ``lr``
    down to 0 over the epochs (PyTorch's ``CosineAnnealingLR`` stepped per epoch): with a
    constant rate the last epoch's accuracy wanders by a percent from seed to seed. ``optimizer``:
    "sgd" (with ``momentum``) or "adam" (PyTorch's defaults otherwise; the capsnet's
    routing trains faster with it, as in the paper)."""
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    optimizer: str = "sgd"

    def describe(self, lr: float) -> str:
        """``SGD lr 0.1 (cosine) momentum 0.9`` or ``Adam lr 0.01 (cosine)``."""
        if self.optimizer == "adam":
            return f"Adam lr {lr:g} (cosine)"
        return f"SGD lr {lr:g} (cosine) momentum {self.momentum:g}"


DEFAULTS = {"mlp": Defaults(epochs=20, batch_size=64, lr=0.1),
            "cnn": Defaults(epochs=30, batch_size=64, lr=0.1),
            "capsnet": Defaults(epochs=10, batch_size=64, lr=0.01, optimizer="adam")}


@dataclass
class Digits:
    """The digits split: images as float32 in [0, 1] (N, 64), labels int64 (N,)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits() -> Digits:
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ValueError("tensordsl train needs scikit-learn for its data set "
                         "(pip install 'tensordsl[train]')") from None
    data = sklearn_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int64")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return Digits(x[train], y[train], x[test], y[test])


def build_model(name: str, rng: np.random.Generator) -> Module:
    """A fresh ``mlp``, ``cnn`` or ``capsnet`` with weights drawn from ``rng``."""
    if name == "mlp":
        return Sequential(Linear(64, 256, rng=rng), ReLU(), Linear(256, 256, rng=rng), ReLU(),
                          Linear(256, 10, rng=rng))
    if name == "cnn":
        return Sequential(Conv2d(1, 16, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2),
                          Conv2d(16, 32, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2),
                          Flatten(), Linear(32 * 2 * 2, 10, rng=rng))
    if name == "capsnet":
        return Sequential(Conv2d(1, 32, 3, padding=1, rng=rng), ReLU(),
                          PrimaryCapsules(32, types=8, caps_dim=8, kernel_size=3, stride=2,
                                          padding=1, rng=rng),
                          CapsuleLayer(8 * 4 * 4, 8, 10, 16, iterations=3, rng=rng))
    raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {name!r}")


def model_input(name: str, images: np.ndarray) -> np.ndarray:
    """The images as the model reads them: (N, 64) rows for the mlp, (N, 1, 8, 8) for
    the convolutional ones."""
    return images if name == "mlp" else images.reshape(len(images), 1, 8, 8)


def loss_function(name: str):
    """``loss = f(output, labels)`` of a model: the margin loss of the capsnet's
    capsules, the cross-entropy of the others' logits (both means over the batch)."""
    return F.margin_loss if name == "capsnet" else F.cross_entropy


def make_optimizer(name: str, parameters, lr: float):
    d = DEFAULTS[name]
    if d.optimizer == "adam":
        return Adam(parameters, lr=lr)
    return SGD(parameters, lr=lr, momentum=d.momentum)


def predictions(output) -> np.ndarray:
    """The predicted classes (N,): the largest logit, or the longest capsule of a
    capsule output (N, classes, dim)."""
    scores = capsule_lengths(output) if output.ndim == 3 else output.data
    return scores.argmax(axis=1)


STEPS = ("eager", "compiled")


def eager_step(model: Module, loss_fn, optimizer):
    """``loss = step(x, y)``: one optimizer step on a batch, run op by op on the tape
    (the contract of ``nn.TrainStep``, which compiles the same step)."""
    def step(x, y) -> float:
        loss = loss_fn(model(Tensor(x)), Tensor(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def make_step(kind: str, model: Module, loss_fn, optimizer):
    """``eager_step`` or ``nn.TrainStep`` (``kind``: "eager" or "compiled")."""
    if kind == "eager":
        return eager_step(model, loss_fn, optimizer)
    if kind == "compiled":
        from .step import TrainStep
        return TrainStep(model, loss_fn, optimizer)
    raise ValueError(f"--step: expected one of {', '.join(STEPS)}, got {kind!r}")


def evaluate(model: Module, x: np.ndarray, y: np.ndarray,
             loss_fn=F.cross_entropy) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on one batch of all of ``x`` (``loss_fn``:
    ``loss_function`` of the model)."""
    with no_grad():
        output = model(Tensor(x))
        loss = loss_fn(output, y).item()
    return loss, float((predictions(output) == y).mean())


@dataclass
class History:
    """Per epoch: mean training loss, test loss and accuracy, seconds; and the model."""
    model: Module
    train_loss: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


def train(model_name: str, epochs: int | None = None, batch_size: int | None = None,
          lr: float | None = None, seed: int = 0, train_size: int | None = None,
          data: Digits | None = None, step: str = "compiled", on_epoch=None,
          on_step=None) -> History:
    """Train ``model_name`` on the digits; ``on_epoch(k, history)`` after each epoch,
    ``on_step()`` after each batch. ``train_size`` keeps only the first images (a
    smoke run); ``step``: "eager" or "compiled" (``make_step``). Unset arguments take
    ``DEFAULTS[model_name]``."""
    if model_name not in MODELS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {model_name!r}")
    d = DEFAULTS[model_name]
    epochs = d.epochs if epochs is None else epochs
    batch_size = d.batch_size if batch_size is None else batch_size
    lr = d.lr if lr is None else lr
    data = data or load_digits()
    x_train, y_train = data.x_train, data.y_train
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    check_arguments(epochs, batch_size, lr, len(x_train))
    rng = np.random.default_rng(seed)
    model = build_model(model_name, rng)
    optimizer = make_optimizer(model_name, model.parameters(), lr)
    loss_fn = loss_function(model_name)
    run_step = make_step(step, model, loss_fn, optimizer)
    x_train = model_input(model_name, x_train)
    x_test = model_input(model_name, data.x_test)
    loader = DataLoader((x_train, y_train), batch_size, shuffle=True, rng=rng,
                        drop_last=True)
    history = History(model)
    for epoch in range(epochs):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = cosine_rate(lr, epoch, epochs)
        model.train()
        losses = []
        for x, y in loader:
            losses.append(run_step(x, y))
            if on_step is not None:
                on_step()
        model.eval()
        test_loss, test_accuracy = evaluate(model, x_test, data.y_test, loss_fn)
        history.train_loss.append(float(np.mean(losses)))
        history.test_loss.append(test_loss)
        history.test_accuracy.append(test_accuracy)
        history.seconds.append(time.perf_counter() - start)
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history


def cosine_rate(lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` (from 0): ``lr`` at the first, falling to 0."""
    return lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def check_arguments(epochs: int, batch_size: int, lr: float, n: int):
    """Refuse what cannot train: no epochs, a batch larger than the ``n`` images, a
    learning rate that is not positive."""
    if epochs < 1:
        raise ValueError(f"--epochs: expected a positive number, got {epochs}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"--batch-size: expected 1 to {n} (the training images), "
                         f"got {batch_size}")
    if not lr > 0:
        raise ValueError(f"--lr: expected a positive learning rate, got {lr}")


def plot(history: History, path: str, title: str):
    """Loss and accuracy per epoch, as a PNG (matplotlib, Agg)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib (pip install 'tensordsl[train]')") from None
    epochs = np.arange(1, len(history.train_loss) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(epochs, history.train_loss, marker="o", label="train")
    left.plot(epochs, history.test_loss, marker="o", label="test")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, history.test_accuracy, marker="o", color="C1")
    right.set_xlabel("epoch")
    right.set_ylabel("test accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
