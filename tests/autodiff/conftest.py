import pytest

from tests.helpers import poison_allocations


@pytest.fixture(autouse=True)
def _poisoned_results(monkeypatch):
    """Results of td.ops, their backward functions and programs start as NaN."""
    poison_allocations(monkeypatch)
