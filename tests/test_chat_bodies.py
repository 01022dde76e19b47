"""Odd chat bodies into the Pipelines filter's `inlet`, against a real index (hypothesis).

Open WebUI sends what its users and plugins put together: missing or odd messages, content as
a list of parts (text, images, audio, junk), huge messages, stray NUL and surrogate characters,
prompts that look like SQL. Whatever comes in, `inlet` must not raise (that would fail the
chat), must give back a chat body (the messages it was given, in order, plus at most one
system message of its own, JSON-serialisable), and SQL-looking prompts are only text: the
index is intact afterwards.
"""

from __future__ import annotations

import asyncio
import copy
import json

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from indexer.chat import bodies as chat
from indexer.service import open_victor
from tests.conftest import SAMPLE
from tests.plugins import FILTER_FILE, load
from tests.support import tally

lc = load(FILTER_FILE, "lua_codebase_pipeline_bodies")

SQLISH = [
    "'; DROP TABLE chunks; --",
    "Cart:add'); DELETE FROM repos WHERE ('1'='1",
    "\" OR 1=1; UPDATE chunks SET text = 'pwned' --",
    "$1; TRUNCATE sync_jobs; SELECT pg_sleep(10) --",
    "Robert'); DROP TABLE students;-- where is the cart total computed",
    "\\x00 \0 NUL in the middle: Cart:add\0; DROP TABLE files",
    "lone surrogate \ud800 in Cart:add",
    "%s %(x)s {0} {x} ${x} `rm -rf /`",
]
HUGE = ["Cart:add " * 30_000, "x" * 300_000, "where is the total computed? " * 10_000]

texts = st.one_of(
    st.text(max_size=200),
    st.sampled_from(SQLISH),
    st.sampled_from(SQLISH),
    st.sampled_from(HUGE),
    st.just("Where is Cart:add defined?"),
)
junk = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(), texts)
parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.just({"url": "data:image/png;base64,AA"})}
    ),
    st.fixed_dictionaries(
        {"type": st.just("input_audio"), "input_audio": st.just({"data": "AA", "format": "wav"})}
    ),
    st.fixed_dictionaries({"type": st.just("text"), "text": junk}),  # text that is not text
    st.dictionaries(st.text(max_size=5), junk, max_size=3),
    junk,
)
roles = st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), junk)
contents = st.one_of(texts, st.lists(parts, max_size=5), junk)
messages = st.one_of(
    st.fixed_dictionaries({"role": roles, "content": contents}),
    st.fixed_dictionaries({"role": st.just("user"), "content": texts}),
    st.dictionaries(st.sampled_from(["role", "content", "name", "tool_calls"]), junk, max_size=4),
    junk,
)
metadata = st.one_of(
    st.fixed_dictionaries(
        {"filter_ids": st.one_of(st.just(["lua_codebase"]), st.lists(junk, max_size=2), junk)},
        optional={"task": st.one_of(st.none(), st.just("title_generation"), junk)},
    ),
    junk,
)
chats = st.fixed_dictionaries(  # what Open WebUI sends, with odd messages among them
    {
        "messages": st.lists(
            st.one_of(
                st.fixed_dictionaries({"role": st.just("user"), "content": texts}),
                st.fixed_dictionaries(
                    {"role": st.just("user"), "content": st.lists(parts, max_size=4)}
                ),
                messages,
            ),
            min_size=1,
            max_size=6,
        ),
        "metadata": st.just({"filter_ids": ["lua_codebase"]}),
    }
)
junk_bodies = st.fixed_dictionaries(
    {},
    optional={
        "messages": st.one_of(st.lists(messages, max_size=6), junk),
        "metadata": metadata,
        "model": st.just("claude-lua"),
        "stream": st.booleans(),
    },
)
bodies = st.one_of(chats, junk_bodies)


async def index_state(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        tables = ("repos", "files", "chunks", "sync_jobs", "victor_meta", "embedding_cache")
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
    finally:
        await conn.close()


@pytest.mark.hardening
def test_odd_chat_bodies_never_break_inlet(settings, ollama, caplog):
    url = settings.database_url.get_secret_value()
    loop = asyncio.new_event_loop()

    async def build() -> None:
        async with open_victor(settings) as victor:
            await victor.index(str(SAMPLE), name="shop")

    loop.run_until_complete(build())
    before = loop.run_until_complete(index_state(url))
    pipeline = lc.Pipeline()
    pipeline.valves = pipeline.Valves(
        database_url=url,
        ollama_host=settings.ollama_host,
        embed_model=settings.embed_model,
        timeout_seconds=10,
    )
    seen = {"examples": 0, "searched": 0, "context": 0}

    @hsettings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies, toggle_required=st.booleans())
    def check(body, toggle_required):
        pipeline.valves.require_toggle = toggle_required
        given_messages = copy.deepcopy(body.get("messages"))
        out = loop.run_until_complete(pipeline.inlet(copy.deepcopy(body), None))  # never raises
        seen["examples"] += 1
        assert isinstance(out, dict)
        json.dumps(out)  # still a JSON chat body
        info = (
            (out.get("metadata") or {}).get(lc.HANDOVER_KEY)
            if isinstance(out.get("metadata"), dict)
            else None
        )
        if info is not None:
            seen["searched"] += 1
            assert info["status"] in ("ok", "empty", "degraded", "unavailable"), info
            assert len(info["query"]) <= chat.MAX_QUERY_CHARS
        if out.get("messages") == given_messages:
            return
        # the only change to the messages: one system message of ours, before the last user's
        assert isinstance(given_messages, list), (given_messages, out.get("messages"))
        added = [m for m in out["messages"] if m not in given_messages]
        assert len(added) == 1 and added[0]["role"] == "system", added
        assert added[0]["content"].startswith(f"<{chat.CONTEXT_TAG}>")
        assert [m for m in out["messages"] if m is not added[0]] == given_messages
        seen["context"] += 1

    try:
        check()
        after = loop.run_until_complete(index_state(url))
    finally:
        loop.run_until_complete(pipeline.on_shutdown())
        loop.close()
    assert after == before, f"the index changed under chat bodies: {before} -> {after}"
    crashed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
    assert not crashed, f"inlet hit an error inside (caught, but a bug): {crashed[:3]}"
    assert seen["searched"] > 0 and seen["context"] > 0, seen  # the searches really ran
    tally.record(
        "odd chat bodies into the Pipelines filter's inlet (hypothesis)",
        seen["examples"],
        seen["examples"],
        note=f"{seen['searched']} searched, {seen['context']} got context; index intact",
    )


def test_a_pasted_blob_is_judged_in_linear_time():
    """A message made of one very long word (a pasted base64 blob) must not hang the inlet:
    the code-token check once took minutes on 300,000 characters. Here it must finish within
    a bound far above what a linear scan needs, whatever the machine's load."""
    import threading

    results: list[bool] = []
    blob = "QUJD" * 75_000
    worker = threading.Thread(
        target=lambda: results.extend([chat.is_specific(blob), chat.is_specific(blob + "(")])
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "is_specific did not finish on a 300,000-character word"
    assert results == [False, True]


@pytest.mark.parametrize(
    "text, specific",
    [
        ("why does Cart:add fail", True),
        ("see shop.cart", True),
        ("call lookup( with nil", True),
        ("apply_discount is wrong", True),
        ("getSelection returns nothing", True),
        ("hi there", False),
        ("ok", False),
    ],
)
def test_code_tokens_still_count_as_specific(text, specific):
    assert chat.is_specific(text) is specific
