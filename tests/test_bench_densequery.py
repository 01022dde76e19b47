"""Tests of the dense-side query clean-up rule measured in bench/retrieval/densequery.py."""

from __future__ import annotations

import pytest

from bench.retrieval.densequery import dense_query


@pytest.mark.parametrize(
    ("typed", "cleaned"),
    [
        ("What happens when I press Ctrl+S?", "press Ctrl+S"),
        ("why might my rule be ignored?", "rule be ignored"),
        ("How does the editor pick a plugin?", "the editor pick a plugin"),
        ("Where is my original mapping for a key run?", "original mapping for a key run"),
        ("is there a way to stop the I/O loop?", "stop the I/O loop"),
    ],
)  # fmt: skip
def test_drops_the_frame_the_asker_and_the_question_mark(typed, cleaned):
    assert dense_query(typed) == cleaned


@pytest.mark.parametrize(
    "query",
    ["Picker:get_selection", "where_is_my_config", "M.my.i", "when `my` is nil, call me_too()"],
)
def test_identifiers_are_left_alone(query):
    out = dense_query(query)
    for ident in ("get_selection", "where_is_my_config", "M.my.i", "`my`", "me_too()"):
        if ident in query:
            assert ident in out


def test_a_query_that_is_only_phrasing_stays_as_typed():
    assert dense_query("How does?") == "How does?"
    assert dense_query("What is my") == "What is my"
