"""Load and scale invariants: long tests, run by scripts/test-hardening.

The timings are the benchmarks' business (bench/webhook_burst.py, bench/inlet_load.py,
bench/scale.py; figures in docs/hardening.md); these tests assert only what must always hold.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hardening


async def test_webhook_burst_loses_nothing(tmp_path):
    """A burst of signed push deliveries to three followed repositories, with two workers
    syncing all along: every delivery acknowledged, never more jobs than pushes and their
    counts adding up to the deliveries, no job failed, every index at its branch head.

    How many pushes share a job depends on how fast the workers are (a push coalesces into a
    job still pending): that is the benchmark's figure, and tests/test_webhook_jobs.py pins
    the coalescing itself."""
    from bench.webhook_burst import burst

    report = await burst(tmp_path, deliveries=60, seconds=4.0, repos=3, workers=2)
    checks = report["invariants"]
    assert checks["all_acknowledged_2xx"], report["failures"]
    assert checks["delivery_rows_match"], checks
    assert checks["pushes_add_up"], checks["repos"]
    assert checks["no_more_jobs_than_pushes"], checks["repos"]
    assert checks["no_job_failed"], checks["repos"]
    assert checks["every_index_at_head"], checks["repos"]
