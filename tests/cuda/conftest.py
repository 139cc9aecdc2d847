"""A failing GPU test names the seed of its last emulated run, to replay the thread order
(``TENSORDSL_EMU_SEED=<seed> python -m pytest ...``)."""
import pytest

from targets.cuda import emulate


@pytest.fixture(autouse=True)
def _forget_the_last_seed():
    emulate.last_seed = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and emulate.last_seed is not None:
        report.sections.append(("emulator", f"the last emulated run used seed "
                                f"{emulate.last_seed}: replay with "
                                f"{emulate.SEED_VARIABLE}={emulate.last_seed}"))
