"""The one random seed of the fault tests: drawn once per run, or taken from
VICTOR_FAULT_SEED, printed in the run's header and in the report of every failed test that
drew from it, so that a failure at a random fault point can be run again at the same point.

A pytest plugin (tests/conftest.py loads it): tests ask for the `fault_rng` fixture.
"""

from __future__ import annotations

import os
import random

import pytest

VARIABLE = "VICTOR_FAULT_SEED"
SEED = int(os.environ.get(VARIABLE) or random.SystemRandom().randrange(1_000_000))
# the run's pytest-xdist workers are its children: they take the seed its header shows
os.environ.setdefault(VARIABLE, str(SEED))
_DREW = pytest.StashKey[bool]()


def rerun_hint() -> str:
    return f"fault seed {SEED}: run again with {VARIABLE}={SEED}"


@pytest.fixture
def fault_rng(request: pytest.FixtureRequest) -> random.Random:
    """Random fault points for one test, from the run's seed. Each test starts the sequence
    afresh, so its points do not depend on which tests ran before it."""
    request.node.stash[_DREW] = True
    return random.Random(SEED)


def pytest_report_header(config: pytest.Config) -> str:
    return f"{rerun_hint()} (tests that use fault_rng)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and item.stash.get(_DREW, False):
        report.sections.append(("fault seed", rerun_hint()))
    return report
