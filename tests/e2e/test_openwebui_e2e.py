"""End-to-end: a real Open WebUI 0.12.4, the real Pipelines server, headless Chromium.

One scenario (module fixture), several checks:
  chat 1 with the "Lua Codebase" toggle ON, chat 2 with it OFF, same question.
The filter and Function under test default to the stand-ins next to this file; point
VICTOR_E2E_FILTER / VICTOR_E2E_FUNCTION (and VICTOR_E2E_MARKER, VICTOR_E2E_LABELS, ...) at the
real ones. See tests/e2e/README.md. Skipped when tests/e2e/setup.sh has not been run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import (
    E2EConfig,
    Stack,
    function_calls,
    get_chat,
    rss_mib,
    run_browser,
    start_stack,
)
from tests.support.fake_llm import DEFAULT_REPLY, message_text

pytestmark = pytest.mark.e2e


@dataclass
class Run:
    cfg: E2EConfig
    stack: Stack
    browser: dict


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = E2EConfig.from_env()
    problems = cfg.missing()
    if problems:
        pytest.skip("e2e prerequisites missing (run tests/e2e/setup.sh): " + "; ".join(problems))
    started = time.monotonic()
    stack = start_stack(cfg, tmp_path_factory.mktemp("owui-e2e"))
    try:
        browser = run_browser(stack, cfg.screenshots_dir)
        stack.timings["browser_s"] = browser.get("seconds")
        yield Run(cfg, stack, browser)
        stack.timings["openwebui_rss_mib_after"] = round(rss_mib(stack.owui.popen.pid))
    finally:
        stack.stop()
        stack.timings["total_s"] = round(time.monotonic() - started, 1)
        (stack.run_dir / "timings.json").write_text(json.dumps(stack.timings, indent=1))
        print(f"\ne2e timings: {stack.timings} (logs in {stack.run_dir})")


def _model_requests(run: Run) -> tuple[dict, dict]:
    """The two chat requests that reached the model: toggle ON first, then OFF."""
    requests = run.stack.chat_requests(run.cfg.question)
    assert len(requests) == 2, (
        f"expected 2 chat requests with the question, got {len(requests)}: "
        f"{[r['body'].get('messages') for r in requests]}"
    )
    return requests[0]["body"], requests[1]["body"]


def _has_marker(body: dict, marker: str) -> bool:
    return any(marker in message_text(m) for m in body.get("messages") or [])


def test_browser_flow_completed(run):
    b = run.browser
    assert b.get("exit_code") == 0, f"browser failed at {b.get('steps')}: {b.get('error')}"
    assert b["on"]["toggle"]["after"] is True
    assert b["off"]["toggle"]["after"] is False
    assert DEFAULT_REPLY in b["on"]["answerText"]
    assert DEFAULT_REPLY in b["off"]["answerText"]


def test_context_reaches_model_only_with_toggle_on(run):
    on, off = _model_requests(run)
    assert _has_marker(on, run.cfg.marker), f"no {run.cfg.marker!r} in {on['messages']}"
    assert not _has_marker(off, run.cfg.marker), f"{run.cfg.marker!r} leaked: {off['messages']}"
    # Open WebUI strips metadata: nothing the pipeline left there reaches the model.
    assert "metadata" not in on and "metadata" not in off


def test_task_requests_get_no_context(run):
    if not run.cfg.tasks:
        pytest.skip("task generations are off (VICTOR_E2E_TASKS=1 switches them on)")
    tasks = run.stack.task_requests()
    assert tasks, "no title/tags/follow-up request reached the model"
    for entry in tasks:
        assert not _has_marker(entry["body"], run.cfg.marker), entry["body"]["messages"]


def test_sources_shown_under_answer(run):
    on, off = run.browser["on"], run.browser["off"]
    labels = run.cfg.expected_labels
    expected_button = "1 Source" if len(labels) == 1 else f"{len(labels)} Sources"
    assert on.get("sourcesButtonText") == expected_button
    assert on.get("chips") == labels
    assert off.get("sourcesButtonCount") == 0


def test_sources_saved_with_chat(run):
    for side, want in (("on", run.cfg.expected_labels), ("off", [])):
        b = run.browser[side]
        chat = get_chat(run.stack, b["chatId"])
        message = chat["chat"]["history"]["messages"][b["messageId"]]
        names = [m.get("name") for s in message.get("sources") or [] for m in s["metadata"]]
        assert names == want, side


def test_function_received_pipeline_metadata(run):
    calls = function_calls(run.stack)
    if not calls:
        pytest.skip("the Function under test records nothing (only the stand-in does)")
    # The Function ran once: for the toggle-ON chat only.
    assert len(calls) == 1
    call = calls[0]
    info = call["body_metadata_lua_codebase"]
    assert info and [f"{s['path']}:{s['start_line']}-{s['end_line']}" for s in info["sources"]] == (
        run.cfg.expected_labels
    )
    # __metadata__ is Open WebUI's own dict from before the pipeline: our key is not in it.
    assert call["dunder_metadata_lua_codebase"] is None
    assert call["dunder_metadata_filter_ids"] == [run.cfg.function_id]


def test_screenshots_saved(run):
    shots = [Path(p) for p in run.browser.get("screenshots", [])]
    names = {p.name for p in shots}
    assert {"02-answer-toggle-on.png", "03-sources-open.png", "06-answer-toggle-off.png"} <= names
    for p in shots:
        assert p.parent == run.cfg.screenshots_dir
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
