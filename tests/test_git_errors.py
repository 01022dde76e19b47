"""git's failures reach the operator as git's own error line (a job's error, `victor sync`)."""

from __future__ import annotations

import pytest

from indexer.errors import SourceError
from indexer.sync import git


def test_a_missing_repository_is_named(tmp_path):
    with pytest.raises(SourceError) as failed:
        git.run(None, "ls-remote", (tmp_path / "moved.git").as_uri())
    assert str(failed.value) == (
        f"git ls-remote failed: fatal: '{tmp_path / 'moved.git'}' does not appear to be a git "
        "repository"
    )


def test_the_error_line_is_chosen_over_advice():
    advice = (
        b"fatal: 'x.git' does not appear to be a git repository\n"
        b"fatal: Could not read from remote repository.\n\n"
        b"Please make sure you have the correct access rights\nand the repository exists.\n"
    )
    assert git.git_error(advice) == "fatal: 'x.git' does not appear to be a git repository"
    assert git.git_error(b"warning: something\nthe last word\n") == "the last word"
    assert git.git_error(b"") == ""
