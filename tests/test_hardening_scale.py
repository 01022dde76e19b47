"""Load and scale invariants (issue 7): long tests, run by scripts/test-hardening.

The timings are the benchmarks' business (bench/webhook_burst.py, bench/inlet_load.py,
bench/scale.py; figures in docs/hardening.md); these tests assert only what must always hold.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hardening


async def test_webhook_burst_loses_nothing(tmp_path):
    """A burst of signed push deliveries to three followed repositories, with two workers
    syncing all along: every delivery acknowledged, pushes coalesced into fewer jobs whose
    counts add up to the deliveries, no job failed, every index at its branch head."""
    from bench.webhook_burst import burst

    report = await burst(tmp_path, deliveries=60, seconds=4.0, repos=3, workers=2)
    checks = report["invariants"]
    assert checks["all_acknowledged_2xx"], report["failures"]
    assert checks["delivery_rows_match"], checks
    assert checks["pushes_add_up"], checks["repos"]
    assert checks["coalesced"], checks["repos"]
    assert checks["no_job_failed"], checks["repos"]
    assert checks["every_index_at_head"], checks["repos"]
