import os
import tempfile

import numpy as np
import pytest

# Tests never touch the user's cache: one fresh directory per test session.
os.environ.setdefault("TENSORDSL_CACHE_DIR", tempfile.mkdtemp(prefix="tensordsl-test-cache-"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
