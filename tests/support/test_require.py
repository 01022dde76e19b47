"""The skip-or-fail rule of tests/support/require.py."""

from __future__ import annotations

import pytest

from tests.support.require import TIERS, missing


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_a_missing_tool_skips_unless_its_tier_requires_it(tier, monkeypatch):
    monkeypatch.delenv(TIERS[tier], raising=False)
    with pytest.raises(pytest.skip.Exception, match="nginx is not installed"):
        missing(tier, "nginx is not installed")
    monkeypatch.setenv(TIERS[tier], "1")
    with pytest.raises(pytest.fail.Exception, match=f"not installed \\({TIERS[tier]}=1\\)"):
        missing(tier, "nginx is not installed")
