"""End-to-end: a real Open WebUI 0.12.4, the real Pipelines server running Victor's "Lua Codebase"
filter over the sample shop project indexed in a real PostgreSQL, the "Lua Codebase" Function
installed by `victor openwebui install-function`, and headless Chromium.

One scenario (module fixture), several checks:
  chat 1 with the toggle ON, chat 2 with it OFF (same question), chat 3 with the "Claude · Lua"
  preset, whose toggle is on by default; then the filter's database URL is broken and chat 4
  (toggle ON) must still be answered, with the notice shown.
See tests/e2e/README.md. Skipped when tests/e2e/setup.sh has not been run, unless
VICTOR_E2E_REQUIRE=1 (CI, scripts/test-e2e) makes that a failure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.search.context import Context
from tests.e2e.harness import (
    MODEL_ID,
    E2EConfig,
    Stack,
    break_index,
    get_chat,
    install_function,
    rss_mib,
    run_browser,
    start_stack,
)
from tests.support.fake_llm import DEFAULT_REPLY, message_text
from tests.support.require import missing
from victor.openwebui import PRESET_SYSTEM_PROMPT

pytestmark = pytest.mark.e2e

CONTEXT_TAG = "<lua_codebase_context>"
DOWN_QUESTION = "How are prices formatted for display?"


@dataclass
class Run:
    cfg: E2EConfig
    stack: Stack
    browser: dict
    down: dict  # the browser's chat with the index unreachable
    expected: Context  # what the filter retrieves for the question
    expected_preset: Context  # ... and for the preset's question

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.expected.sources]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = E2EConfig.from_env()
    problems = cfg.missing()
    if problems:
        message = "e2e prerequisites missing (run tests/e2e/setup.sh): " + "; ".join(problems)
        missing("e2e", message)
    started = time.monotonic()
    stack = start_stack(cfg, tmp_path_factory.mktemp("owui-e2e"))
    try:
        expected = stack.index.retrieve(cfg.question)
        expected_preset = stack.index.retrieve(cfg.preset_question)
        browser = run_browser(stack, cfg.screenshots_dir)
        stack.timings["browser_s"] = browser.get("seconds")
        break_index(stack)
        down = run_browser(stack, cfg.screenshots_dir, mode="unavailable", question=DOWN_QUESTION)
        stack.timings["browser_down_s"] = down.get("seconds")
        yield Run(cfg, stack, browser, down, expected, expected_preset)
        stack.timings["openwebui_rss_mib_after"] = round(rss_mib(stack.owui.popen.pid))
    finally:
        stack.stop()
        stack.timings["total_s"] = round(time.monotonic() - started, 1)
        (stack.run_dir / "timings.json").write_text(json.dumps(stack.timings, indent=1))
        print(f"\ne2e timings: {stack.timings} (logs in {stack.run_dir})")


def _one_request(run: Run, question: str, count: int) -> list[dict]:
    requests = run.stack.chat_requests(question)
    assert len(requests) == count, (
        f"expected {count} chat requests with {question!r}, got {len(requests)}: "
        f"{[r['body'].get('messages') for r in requests]}"
    )
    return [r["body"] for r in requests]


def _system_text(body: dict) -> str:
    return "\n".join(message_text(m) for m in body.get("messages") or [] if m["role"] == "system")


def test_browser_flow_completed(run):
    b = run.browser
    assert b.get("exit_code") == 0, f"browser failed at {b.get('steps')}: {b.get('error')}"
    assert b["on"]["toggle"]["after"] is True
    assert b["off"]["toggle"]["after"] is False
    assert DEFAULT_REPLY in b["on"]["answerText"]
    assert DEFAULT_REPLY in b["off"]["answerText"]


def test_code_context_reaches_the_model_only_with_the_toggle_on(run):
    on, off = _one_request(run, run.cfg.question, 2)
    context = _system_text(on)
    assert CONTEXT_TAG in context, on["messages"]
    assert "function Cart:add(sku, quantity)" in context  # the code the question is about
    for label in run.labels:  # the headers the model is told to cite
        assert f"`{label}" in context
    # just before the question
    assert on["messages"][-2]["role"] == "system" and CONTEXT_TAG in on["messages"][-2]["content"]
    assert CONTEXT_TAG not in _system_text(off)
    assert all("function Cart:add" not in message_text(m) for m in off["messages"])
    # Open WebUI strips metadata: the hand-over to the Function never reaches the model.
    assert "metadata" not in on and "metadata" not in off


def test_task_requests_get_no_context(run):
    if not run.cfg.tasks:
        pytest.skip("task generations are off (VICTOR_E2E_TASKS=1 switches them on)")
    tasks = run.stack.task_requests()
    assert tasks, "no title/tags/follow-up request reached the model"
    for entry in tasks:
        assert CONTEXT_TAG not in _system_text(entry["body"]), entry["body"]["messages"]


def test_sources_and_status_shown_under_the_answer(run):
    on, off = run.browser["on"], run.browser["off"]
    labels = run.labels
    assert labels and any(label.startswith("src/shop/cart.lua:") for label in labels)
    expected_button = "1 Source" if len(labels) == 1 else f"{len(labels)} Sources"
    assert on.get("sourcesButtonText") == expected_button
    assert on.get("chips") == labels
    assert on.get("firstSourceDialog")  # the snippet opens
    # ... showing the code as it is in the file (a fenced block, not Markdown):
    # every line, indentation included, `---` comments and `%`/`$` patterns untouched
    dialog = on["firstSourceDialog"]
    for line in run.expected.sources[0].text.split("\n"):
        assert not line.strip() or line.rstrip() in dialog, line
    files = len({s.path for s in run.expected.sources})
    snippets = "1 snippet" if len(labels) == 1 else f"{len(labels)} snippets"
    status = f"Lua Codebase: {snippets} from {files} file" + ("s" if files != 1 else "")
    assert status in on["fullText"]
    assert off.get("sourcesButtonCount") == 0
    assert "Lua Codebase:" not in off["fullText"]


def test_sources_saved_with_chat(run):
    for side, want in (("on", run.labels), ("off", [])):
        b = run.browser[side]
        chat = get_chat(run.stack, b["chatId"])
        message = chat["chat"]["history"]["messages"][b["messageId"]]
        names = [m.get("name") for s in message.get("sources") or [] for m in s["metadata"]]
        assert names == want, side


def test_preset_has_the_toggle_on_by_default_and_its_system_prompt(run):
    preset = run.browser["preset"]
    assert preset["toggle"]["before"] is True, "the preset's chat did not start with the toggle on"
    assert DEFAULT_REPLY in preset["answerText"]
    (body,) = _one_request(run, run.cfg.preset_question, 1)
    assert body["model"] == MODEL_ID  # the preset runs on its base model
    system = _system_text(body)
    assert PRESET_SYSTEM_PROMPT.splitlines()[0] in system
    assert CONTEXT_TAG in system
    assert "function M.lookup(sku)" in system
    n = len(run.expected_preset.sources)
    assert preset.get("sourcesButtonText") == ("1 Source" if n == 1 else f"{n} Sources")


def test_installer_updates_in_place_and_explains_failures(run):
    stack = run.stack
    again = install_function(stack, stack.token, "--preset", MODEL_ID)
    assert again.returncode == 0, again.stderr
    assert "Function lua_codebase updated" in again.stderr
    assert "claude-lua) updated" in again.stderr

    bad = install_function(stack, "not-a-token")
    assert bad.returncode == 1
    assert "refused the token (401" in bad.stderr and "Traceback" not in bad.stderr

    missing = install_function(stack, stack.token, "--preset", "no-such-model")
    assert missing.returncode == 1
    assert "no model 'no-such-model'" in missing.stderr and MODEL_ID in missing.stderr


def test_index_unavailable_is_shown_and_the_chat_goes_on(run):
    down = run.down
    assert down.get("exit_code") == 0, f"browser failed at {down.get('steps')}: {down.get('error')}"
    assert down["down"]["toggle"]["after"] is True
    assert DEFAULT_REPLY in down["down"]["answerText"]
    assert (
        "Lua Codebase: index unavailable — answered without code context (database unavailable)"
        in down["down"]["fullText"]
    )
    assert down["down"]["sourcesButtonCount"] == 0
    (body,) = _one_request(run, DOWN_QUESTION, 1)
    assert CONTEXT_TAG not in _system_text(body)
    assert "Cannot connect" in run.stack.pipelines.log_text()  # the details are in its log


def test_screenshots_saved(run):
    shots = [Path(p) for p in run.browser.get("screenshots", []) + run.down.get("screenshots", [])]
    names = {p.name for p in shots}
    assert {
        "01-toggle-menu-on.png",
        "02-answer-toggle-on.png",
        "03-sources-open.png",
        "04-source-detail.png",
        "05-toggle-menu-off.png",
        "06-answer-toggle-off.png",
        "07-preset-toggle-default-on.png",
        "08-preset-answer.png",
        "09-index-unavailable.png",
    } <= names
    for p in shots:
        assert p.parent == run.cfg.screenshots_dir
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
