import os
import tempfile

import numpy as np
import pytest

# Tests never touch the user's cache: one fresh directory per test session.
os.environ.setdefault("TENSORDSL_CACHE_DIR", tempfile.mkdtemp(prefix="tensordsl-test-cache-"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_report_header(config):
    from tests.property.test_fuzz import FRESH_SEED
    return [f"fuzz: fresh seed {FRESH_SEED} (replay with TENSORDSL_FUZZ_SEED={FRESH_SEED})"]
