"""``DataLoader``: numpy batches of arrays that share their first dimension, in order or
shuffled (PyTorch's ``DataLoader`` over a ``TensorDataset``, without worker processes).

    loader = DataLoader((X, y), batch_size=32, shuffle=True, seed=0)
    for xb, yb in loader:          # each epoch a new order, the same for the same seed
        ...
"""
from __future__ import annotations

import numpy as np


class DataLoader:
    """Batches of ``dataset`` (an array, or a tuple/list of arrays with one length).

    ``shuffle``: each pass (epoch) visits the samples in a new random order drawn from
    ``rng`` (a ``numpy.random.Generator``) or from ``numpy.random.default_rng(seed)``, so
    a seed fixes the whole sequence of epochs. ``drop_last``: leave out a last batch
    smaller than ``batch_size``. A batch is a tuple of arrays (an array for one).
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, rng=None,
                 seed: int | None = None, drop_last: bool = False):
        single = isinstance(dataset, np.ndarray)
        arrays = [dataset] if single else list(dataset)
        if not arrays:
            raise ValueError("DataLoader: dataset must hold at least one array")
        arrays = [np.asarray(a) for a in arrays]
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"DataLoader: the arrays of dataset must have one length, got "
                             f"{[len(a) for a in arrays]}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got "
                             f"{batch_size!r}")
        if rng is not None and seed is not None:
            raise ValueError("DataLoader: give rng or seed, not both")
        self.arrays, self.single = arrays, single
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.arrays[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.arrays[0])
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for k in range(len(self)):
            picked = order[k * self.batch_size:(k + 1) * self.batch_size]
            batch = tuple(a[picked] for a in self.arrays)
            yield batch[0] if self.single else batch
