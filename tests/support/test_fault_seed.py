"""The fault seed (tests/support/fault_seed.py): taken from VICTOR_FAULT_SEED, the same
points again with the same seed, and printed with the failure of a test that drew from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT

TESTS = """
def test_draws_and_fails(fault_rng):
    print("drew", fault_rng.randint(0, 10**9))
    assert False

def test_draws_and_passes(fault_rng):
    fault_rng.random()

def test_fails_without_drawing():
    assert False
"""


def run(folder, seed: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "VICTOR_FAULT_SEED"}
    env["PYTHONPATH"] = str(ROOT)
    if seed is not None:
        env["VICTOR_FAULT_SEED"] = seed
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.support.fault_seed",
            "-p",
            "no:cacheprovider",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # two tests fail
    return done.stdout


def sections(out: str) -> list[str]:
    return re.findall(r"^-+ fault seed -+\n(.*)$", out, flags=re.M)


def test_the_seed_is_shown_with_the_failures_that_drew_from_it(tmp_path):
    (tmp_path / "test_points.py").write_text(TESTS)
    chosen = run(tmp_path, None)  # no variable: a seed is drawn, and shown
    # one section, for the failed test that drew; none for the failure that did not
    (hint,) = sections(chosen)
    seed = re.fullmatch(r"fault seed (\d+): run again with VICTOR_FAULT_SEED=\1", hint)[1]
    assert hint in chosen.split("collected", 1)[0]  # the run's header
    drew = re.findall(r"^drew \d+$", chosen, flags=re.M)
    assert len(drew) == 1

    again = run(tmp_path, seed)  # as the hint says: the same seed, the same points
    assert sections(again) == [hint]
    assert re.findall(r"^drew \d+$", again, flags=re.M) == drew
