"""Reading chat bodies and adding the context block (indexer/bodies.py), as both chat adapters
do: the Pipelines filter and the LiteLLM hook."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.chat import bodies


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# --- query building --------------------------------------------------------------------------


def test_query_is_the_last_user_message():
    messages = [
        user("How is the cart total computed?"),
        assistant("..."),
        user("Where is Cart:add?"),
    ]
    assert bodies.build_query(messages) == "Where is Cart:add?"


def test_query_reads_text_parts_and_skips_images():
    parts = [
        {"type": "text", "text": "What does this picker"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "selection code do?"},
    ]
    assert bodies.build_query([user(parts)]) == "What does this picker\nselection code do?"


def test_vague_follow_up_uses_the_earlier_question():
    messages = [
        user("How does the shop apply the loyalty discount?"),
        assistant("In prices.lua ..."),
        user("and the other one?"),
    ]
    assert bodies.build_query(messages) == (
        "How does the shop apply the loyalty discount?\nand the other one?"
    )


def test_follow_up_spans_at_most_max_turns():
    messages = [user("ok"), user("yes"), user("hmm"), user("and?"), user("that one?")]
    assert bodies.build_query(messages).split("\n") == ["hmm", "and?", "that one?"]


@pytest.mark.parametrize(
    "text",
    [
        "Cart:add?",
        "what calls apply_discount",
        "getSelection",
        "is lookup( safe",
        "How is the total computed?",
    ],
)
def test_specific_questions_stand_alone(text):
    assert bodies.build_query([user("Tell me about the string helpers"), user(text)]) == text


def test_query_is_capped_and_empty_without_user_text():
    assert len(bodies.build_query([user("cart " * 1000)])) == bodies.MAX_QUERY_CHARS
    assert bodies.build_query([{"role": "system", "content": "You are helpful"}]) == ""
    assert bodies.build_query([user("   "), user([{"type": "image_url", "image_url": {}}])]) == ""


# --- where the context goes, and only once -----------------------------------------------------


def test_context_goes_just_before_the_last_user_message():
    messages = [
        {"role": "system", "content": "You are a code assistant."},
        user("first"),
        assistant("answer"),
        user("second"),
    ]
    out = bodies.with_context(messages, "## Relevant Lua code\n...")
    assert [m["role"] for m in out] == ["system", "user", "assistant", "system", "user"]
    assert out[3]["content"].startswith(f"<{bodies.CONTEXT_TAG}>\n")
    assert "`path:start-end`" in out[3]["content"]
    assert out[3]["content"].endswith(f"</{bodies.CONTEXT_TAG}>")
    assert messages[3] == user("second")  # the input is not modified


def test_context_of_an_earlier_turn_does_not_count_for_this_one():
    earlier = bodies.with_context([user("first")], "code")
    assert bodies.context_in_current_turn(earlier)
    assert not bodies.context_in_current_turn([*earlier, assistant("a"), user("next")])
    # continuing a partial answer is still the same turn
    assert bodies.context_in_current_turn([*earlier, assistant("partial")])
    # a user quoting the tag is not our context
    assert not bodies.context_in_current_turn([user(f"what is <{bodies.CONTEXT_TAG}>?")])


def test_odd_messages_are_read_as_no_text():
    odd = [None, 3, "hi", {"role": "user"}, {"role": "user", "content": [None, {"type": "text"}]}]
    assert bodies.build_query(odd) == ""
    assert not bodies.context_in_current_turn(odd)
    out = bodies.with_context(odd, "code")
    assert out[:4] == odd[:4] and out[5:] == odd[4:] and out[4]["role"] == "system"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": JSON})
MESSAGE = JSON | st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool", None]),
        "content": st.text(max_size=200) | st.lists(PART, max_size=3) | JSON,
    }
)


@given(st.lists(MESSAGE, max_size=8), st.text(max_size=50))
def test_any_messages_are_read_without_error(messages, code):
    """What a client sends is read, never trusted: a query of plain text within its cap, and
    the block added exactly once, before the last user message."""
    query = bodies.build_query(messages)
    assert isinstance(query, str) and len(query) <= bodies.MAX_QUERY_CHARS and "\0" not in query
    query.encode("utf-8")  # no lone surrogates: it must travel to PostgreSQL
    out = bodies.with_context(messages, code)
    added = [m for m in out if m not in messages]
    assert len(out) == len(messages) + 1 and len(added) == 1
    assert bodies.context_in_current_turn(out)
