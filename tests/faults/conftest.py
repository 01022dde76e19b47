"""Fault injection: what the tests here share.

- `own_pg`: a PostgreSQL of the module's own that a test stops and starts again (the session
  server must keep running for everything else).
- `figures`: each fault test records what it injected, what happened, how long recovery took
  and what was lost; the table is printed at the end of the run and, with
  VICTOR_FAULT_FIGURES=path, written there as JSON (docs/hardening.md quotes it).
- `fault_rng` (tests/support/fault_seed.py): random fault points drawn from one seed per run,
  VICTOR_FAULT_SEED to repeat them; a failed test that drew from it shows the seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import pytest

from tests.support.pg import RestartablePostgres


@dataclass
class Figure:
    scenario: str
    injected: int  # how many times the fault was injected
    happened: str  # what Victor did
    recovery_s: float | None  # from the fault's end to everything right again
    lost: str = "nothing"


FIGURES: list[Figure] = []


@pytest.fixture(scope="session")
def figures():
    def record(scenario: str, injected: int, happened: str, recovery_s: float | None, **kw):
        FIGURES.append(Figure(scenario, injected, happened, recovery_s, **kw))

    return record


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("fault figures")
    for f in FIGURES:
        recovery = "-" if f.recovery_s is None else f"{f.recovery_s:.2f} s"
        terminalreporter.write_line(
            f"{f.scenario} | x{f.injected} | {f.happened} | recovery {recovery} | lost: {f.lost}"
        )
    path = os.environ.get("VICTOR_FAULT_FIGURES")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump([asdict(f) for f in FIGURES], out, indent=2)


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory):
    server = RestartablePostgres(tmp_path_factory.mktemp("own-pg"))
    yield server
    server.close()


@pytest.fixture
def own_pg_up(own_pg):
    """The module's PostgreSQL, running again after the test whatever the test did to it."""
    yield own_pg
    if not own_pg.running:
        own_pg.start()
