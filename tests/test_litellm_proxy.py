"""Victor's LiteLLM hook in the real LiteLLM proxy (PyPI `litellm[proxy]` 1.108.7), on 127.0.0.1.

The proxy runs deploy/litellm/config.yaml with every model routed to a stand-in OpenAI-compatible
server that records what it receives (tests/support/fake_llm.py). The hook reads the sample shop
project indexed in a real PostgreSQL, reached over TCP through a relay the tests can freeze, and
embeds queries with the Ollama stand-in. The proxy is installed in its own venv by
scripts/test-litellm (VICTOR_LITELLM_VENV, default .venv-litellm): these tests skip without it,
and fail instead with VICTOR_LITELLM_REQUIRE=1 (CI).
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import time
from pathlib import Path

import httpx
import pytest
import yaml

from indexer.chat import bodies
from indexer.config import Settings
from indexer.search.context import Context, budget_chars
from indexer.service import open_victor
from tests.conftest import ROOT, SAMPLE
from tests.support import pg
from tests.support.fake_llm import DEFAULT_REPLY, FakeLLM
from tests.support.pipelines import Proc, free_port
from tests.support.require import missing
from tests.support.tcp_relay import TcpRelay
from victor.litellm_config import HookSettings

pytestmark = pytest.mark.litellm

CONFIG = ROOT / "deploy" / "litellm" / "config.yaml"
ALIAS = "claude-lua"
PLAIN = "claude-sonnet-4-5"
TIMEOUT = 2.0  # VICTOR_LITELLM_TIMEOUT in these tests
SLACK = 1.5  # the proxy, HTTP and a busy 2-core machine
QUESTION = "How is the total of the cart computed, with the discount?"
TAG = "<lua_codebase_context>"
TIMINGS: dict[str, float] = {}
# the hook's defaults, which these tests leave as they are
TOP_K = HookSettings.model_fields["top_k"].default
CONTEXT_TOKENS = HookSettings.model_fields["context_tokens"].default


def litellm_venv() -> Path:
    return Path(os.environ.get("VICTOR_LITELLM_VENV") or ROOT / ".venv-litellm")


@pytest.fixture(scope="module")
def litellm_exe() -> Path:
    exe = litellm_venv() / "bin" / "litellm"
    if not exe.is_file():
        message = f"LiteLLM is not installed in {litellm_venv()}: run ./scripts/test-litellm"
        missing("litellm", message)
    return exe


@pytest.fixture(scope="module")
async def shop_url(pg_admin_url, ollama_server, tmp_path_factory) -> str:
    url = await pg.create_database(pg_admin_url, prefix="litellm")
    settings = Settings(
        database_url=url,
        ollama_host=ollama_server.url,
        embed_model="all-minilm",
        data_dir=tmp_path_factory.mktemp("victor"),
        parse_workers=1,
    )
    async with open_victor(settings) as victor:
        await victor.index(str(SAMPLE), name="shop")
        await victor.index(str(SAMPLE), name="secret-project")  # not in VICTOR_LITELLM_REPOS
    return url


@pytest.fixture(scope="module")
def relay(pg_server):
    """PostgreSQL on a TCP port, as the proxy would see the user's server on 5433."""
    socket_dir = Path(pg_server.get_postmaster_info().socket_dir)
    (sock,) = socket_dir.glob(".s.PGSQL.*[0-9]")
    running = TcpRelay(str(sock)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def llm():
    with FakeLLM(models=["fake-model"]) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(litellm_exe, shop_url, relay, llm, ollama_server, tmp_path_factory):
    """The real proxy with the example config, its models pointed at the stand-in."""
    run_dir = tmp_path_factory.mktemp("litellm")
    config = yaml.safe_load(CONFIG.read_text())
    for entry in config["model_list"]:
        entry["litellm_params"] = {
            "model": "openai/fake-model",
            "api_base": llm.base_url,
            "api_key": "sk-fake-upstream",
        }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))

    database = shop_url.split("?")[0].rsplit("/", 1)[1]
    master_key = "sk-" + secrets.token_hex(16)
    password = "pw-" + secrets.token_hex(8)  # PostgreSQL trusts the socket; must never be logged
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    env.pop("DATABASE_URL", None)
    env |= {
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "VICTOR_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{relay.port}/{database}",
        "PGPASSWORD": password,
        "OLLAMA_HOST": ollama_server.url,
        "VICTOR_EMBED_MODEL": "all-minilm",
        "VICTOR_LITELLM_TIMEOUT": str(TIMEOUT),
        "VICTOR_LITELLM_REPOS": "shop,engine",  # the repositories this proxy may search
        "PYTHONPATH": str(ROOT),  # this checkout's `indexer`
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    proc = Proc(
        "litellm",
        [
            str(litellm_exe),
            *("--config", str(run_dir / "config.yaml")),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        run_dir / "litellm.log",
        run_dir,
        env,
    )
    try:
        TIMINGS["proxy_ready_s"] = proc.wait_ready(
            f"http://127.0.0.1:{port}/health/liveliness", timeout=120
        )
        yield Proxy(proc, f"http://127.0.0.1:{port}", master_key, password, llm)
    finally:
        proc.stop()
    print(f"\nLiteLLM proxy timings: {json.dumps(TIMINGS)}")


class Proxy:
    def __init__(self, proc: Proc, url: str, key: str, password: str, llm: FakeLLM):
        self.proc, self.url, self.key, self.password, self.llm = proc, url, key, password, llm

    def chat(
        self, model: str, messages: list[dict], headers: dict | None = None, **extra
    ) -> tuple[httpx.Response, dict, float]:
        """POST a chat; return the answer, the body the model received and the seconds."""
        self.llm.clear()
        started = time.monotonic()
        response = httpx.post(
            f"{self.url}/v1/chat/completions",
            json={"model": model, "messages": messages, **extra},
            headers={"Authorization": f"Bearer {self.key}", **(headers or {})},
            timeout=60,
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        (received,) = [r["body"] for r in self.llm.snapshot()]
        return response, received, elapsed

    def log(self) -> str:
        return self.proc.log.read_text(errors="replace")


async def expected_context(shop_url: str, ollama_url: str, tmp_path: Path) -> Context:
    """What the hook should retrieve, asked of the core directly with its default valves."""
    settings = Settings(
        database_url=shop_url, ollama_host=ollama_url, embed_model="all-minilm", data_dir=tmp_path
    )
    async with open_victor(settings) as victor:
        return await victor.retrieve(
            QUESTION,
            top_k=TOP_K,
            budget=budget_chars(tokens=CONTEXT_TOKENS),
            repos=["shop", "engine"],
        )


def context_blocks(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "system" and TAG in m["content"]]


async def test_the_alias_gets_the_code(proxy, shop_url, ollama_server, tmp_path):
    expected = await expected_context(shop_url, ollama_server.url, tmp_path)
    assert expected.sources and expected.sources[0].path == "src/shop/cart.lua"
    sent = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": QUESTION},
    ]
    response, received, _ = proxy.chat(ALIAS, sent)

    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert received["model"] == "fake-model"  # the alias is LiteLLM's; upstream gets the model
    messages = received["messages"]
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert messages[0] == sent[0] and messages[2] == sent[1]
    (block,) = context_blocks(messages)
    assert block.startswith(TAG + "\nBelow is code retrieved from the user's Lua codebase")
    assert block.endswith(expected.text.rstrip() + "\n</lua_codebase_context>")
    assert "src/shop/cart.lua:" in block


def test_streaming_request_gets_the_code(proxy):
    messages = [{"role": "user", "content": QUESTION}]
    response, received, _ = proxy.chat(ALIAS, messages, stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    text = "".join(
        (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in response.text.splitlines()
        if line.startswith("data: {")
    )
    assert text == DEFAULT_REPLY
    assert received["stream"] is True
    assert len(context_blocks(received["messages"])) == 1


def test_another_alias_gets_nothing(proxy):
    messages = [{"role": "user", "content": QUESTION}]
    _, received, _ = proxy.chat(PLAIN, messages)
    assert received["messages"] == messages


def test_header_narrows_the_repositories(proxy):
    messages = [{"role": "user", "content": QUESTION}]
    _, elsewhere, _ = proxy.chat(ALIAS, messages, headers={"X-Victor-Repos": "engine"})
    assert elsewhere["messages"] == messages  # allowed, but no code of the shop
    _, other, _ = proxy.chat(ALIAS, messages, headers={"X-Victor-Repos": "secret-project"})
    assert other["messages"] == messages  # it has the code, but is not in VICTOR_LITELLM_REPOS
    _, shop, _ = proxy.chat(ALIAS, messages, headers={"X-Victor-Repos": "engine, shop"})
    assert len(context_blocks(shop["messages"])) == 1


def test_context_from_the_open_webui_filter_is_not_added_twice(proxy):
    """An Open WebUI chat with the toggle on, sent to the alias: the filter's block is there."""
    question = [{"role": "user", "content": QUESTION}]
    with_filter = bodies.with_context(question, "-- code --")  # what the filter adds
    _, received, _ = proxy.chat(ALIAS, with_filter)
    assert received["messages"] == with_filter

    # A later turn gets its own context: the block above belongs to the earlier turn.
    later = [*with_filter, {"role": "assistant", "content": "ok"}, *question]
    _, received, _ = proxy.chat(ALIAS, later)
    assert len(context_blocks(received["messages"])) == 2


def test_every_alias_request_gets_its_code_within_the_hook_timeout(proxy):
    """Request after request, the hook's retrieval ends within VICTOR_LITELLM_TIMEOUT: each
    one reaches the model with its context block, never the fail-open path's bare body. The
    medians are printed with the other timings, for information (speed lives in bench/)."""
    messages = [{"role": "user", "content": QUESTION}]
    plain, lua = [], []
    for _ in range(7):
        plain.append(proxy.chat(PLAIN, messages)[2])
        _, received, seconds = proxy.chat(ALIAS, messages)
        assert len(context_blocks(received["messages"])) == 1, received["messages"]
        lua.append(seconds)
    TIMINGS["plain_request_ms_p50"] = round(statistics.median(plain) * 1000, 1)
    TIMINGS["alias_request_ms_p50"] = round(statistics.median(lua) * 1000, 1)


def test_a_degraded_retrieval_is_one_warning_per_cause(proxy, ollama_server):
    """The embedder hung, then down: the requests still get keyword context, and
    the proxy's log says so at WARNING once per cause (two requests, one line), again when it
    is over, and never with a secret. The proxy prints the hook's lines through Python's
    last-resort handler, which shows WARNING and above only: a line here is a WARNING."""
    messages = [{"role": "user", "content": QUESTION}]
    before = len(proxy.log().splitlines())
    try:
        for trouble in ({"delay": 10.0}, {"fail_status": 503}):  # hung, then down
            for name, value in trouble.items():
                setattr(ollama_server, name, value)
            for _ in range(2):
                _, received, _ = proxy.chat(ALIAS, messages)
                assert len(context_blocks(received["messages"])) == 1  # keyword search's code
            ollama_server.reset()
            proxy.chat(ALIAS, messages)  # all is well again
    finally:
        ollama_server.reset()
    lines = proxy.log().splitlines()[before:]
    said = "\n".join(lines)
    degraded = [line for line in lines if "victor: embedder unavailable (" in line]
    back = [line for line in lines if "victor: code context complete again" in line]
    assert len(degraded) == 2 and len(back) == 2, said
    assert "no answer within" in degraded[0] or "did not answer" in degraded[0], said
    assert "simulated failure 503" in degraded[1], said
    assert "snippets from" not in said  # the hook's INFO lines are not shown
    for secret in (proxy.password, proxy.key, "sk-fake-upstream"):
        assert secret not in said


def test_database_that_hangs_costs_at_most_the_timeout(proxy, relay):
    """PostgreSQL stops answering: the request is answered, without code, within the bound;
    once it answers again, so does the hook."""
    messages = [{"role": "user", "content": QUESTION}]
    relay.freeze()
    try:
        response, received, elapsed = proxy.chat(ALIAS, messages)
    finally:
        relay.thaw()
    TIMINGS["database_hung_request_s"] = round(elapsed, 2)
    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert received["messages"] == messages
    assert TIMEOUT <= elapsed < TIMEOUT + SLACK, elapsed
    assert f"no answer within {TIMEOUT:g} s" in proxy.log()

    _, received, _ = proxy.chat(ALIAS, messages)
    assert len(context_blocks(received["messages"])) == 1


def test_database_down_the_request_still_succeeds(proxy, relay):
    """Last: the relay is gone for good."""
    messages = [{"role": "user", "content": QUESTION}]
    relay.stop()  # nothing listens on the port any more: connections are refused
    response, received, elapsed = proxy.chat(ALIAS, messages)
    TIMINGS["database_down_request_s"] = round(elapsed, 2)
    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert received["messages"] == messages
    assert elapsed < TIMEOUT + SLACK
    log = proxy.log()
    assert "victor: no code context" in log
    assert proxy.password not in log
