"""DataLoader: every sample once per epoch, in order or shuffled deterministically."""
from __future__ import annotations

import numpy as np
import pytest

from tensordsl.nn import DataLoader


def test_in_order_batches_cover_everything_and_keep_pairs_together():
    X = np.arange(10 * 3).reshape(10, 3)
    y = np.arange(10) * 7
    batches = list(DataLoader((X, y), batch_size=4))
    assert [len(xb) for xb, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), X)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0] // 3 * 7, yb)
    assert len(DataLoader((X, y), batch_size=4)) == 3
    assert len(DataLoader((X, y), batch_size=4, drop_last=True)) == 2
    assert [len(b) for b in DataLoader(X, batch_size=4, drop_last=True)] == [4, 4]


def test_shuffled_epochs_are_permutations_fixed_by_the_seed():
    y = np.arange(23)

    def epochs(loader, n=3):
        return [np.concatenate([yb for (yb,) in loader]) for _ in range(n)]

    first = epochs(DataLoader((y,), batch_size=5, shuffle=True, seed=7))
    again = epochs(DataLoader((y,), batch_size=5, shuffle=True, seed=7))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.sort(a), y)        # every sample once
    assert not np.array_equal(first[0], first[1])            # a new order each epoch
    assert not np.array_equal(first[0], y)
    other = epochs(DataLoader((y,), batch_size=5, shuffle=True,
                              rng=np.random.default_rng(8)), 1)
    assert not np.array_equal(other[0], first[0])


def test_bad_datasets_are_refused():
    with pytest.raises(ValueError, match="one length, got \\[3, 4\\]"):
        DataLoader((np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        DataLoader(np.zeros(3), batch_size=0)
    with pytest.raises(ValueError, match="rng or seed, not both"):
        DataLoader(np.zeros(3), rng=np.random.default_rng(), seed=1)
