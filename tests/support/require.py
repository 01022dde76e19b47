"""Skip a test whose outside tool is missing, or fail it where that tool is required.

A developer without nginx, LiteLLM or Open WebUI installed gets a skip that says how to
install it; the script that installs the tool (scripts/test-deploy, test-litellm, test-e2e,
each run by CI) sets the tier's VICTOR_*_REQUIRE=1, and then a missing tool is a failure:
a CI run can never pass by skipping what it was meant to check.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

TIERS = {
    "deploy": "VICTOR_DEPLOY_REQUIRE",
    "litellm": "VICTOR_LITELLM_REQUIRE",
    "e2e": "VICTOR_E2E_REQUIRE",
}


def missing(tier: str, message: str) -> NoReturn:
    """Stop the test: a failure when the tier's VICTOR_*_REQUIRE is 1, else a skip."""
    variable = TIERS[tier]
    if os.environ.get(variable) == "1":
        pytest.fail(f"{message} ({variable}=1)")
    pytest.skip(message)
