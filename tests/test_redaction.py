"""The one redactor: passwords in URLs, PGPASSWORD and tokens never leave a process."""

from __future__ import annotations

from pydantic import SecretStr

from indexer.config import Settings
from indexer.redaction import redact, redact_url, settings_secrets


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql://victor:s3cret@db:5433/victor") == (
        "postgresql://victor:***@db:5433/victor"
    )
    assert redact_url("postgresql://victor@db/victor") == "postgresql://victor@db/victor"
    assert redact_url("not a url [") == "not a url ["


def test_every_secret_of_the_settings_is_redacted(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "from-the-env")
    settings = Settings(
        database_url=SecretStr("postgresql://victor:in-the-url@db/victor"),
        github_token=SecretStr("ghp_token"),
        webhook_secret=SecretStr("hook-secret"),
        jobs_token=SecretStr("jobs-token"),
    )
    text = "in-the-url from-the-env ghp_token hook-secret jobs-token and the rest"
    assert redact(text, settings_secrets(settings)) == "*** *** *** *** *** and the rest"


def test_a_secret_inside_another_is_masked_whole():
    assert redact("abcdef", ["abc", "abcdef"]) == "***"
    assert redact("nothing", [None, ""]) == "nothing"
