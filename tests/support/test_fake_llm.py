"""The fake OpenAI-compatible model server: routes, streaming, recording."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.fake_llm import DEFAULT_REPLY, FakeLLM, read_records

REPO = Path(__file__).resolve().parents[2]


def post(url: str, payload: dict, key: str | None = None) -> bytes:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_models_listed():
    with FakeLLM(models=["a", "b"]) as llm:
        data = get(llm.base_url + "/models")
    assert [m["id"] for m in data["data"]] == ["a", "b"]


def test_non_streaming_answer_and_recording(tmp_path):
    record = tmp_path / "req.jsonl"
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    with FakeLLM(record_path=record) as llm:
        answer = json.loads(post(llm.base_url + "/chat/completions", body, key="sk-x"))
        assert llm.requests[0]["body"] == body
        assert llm.requests[0]["auth"] == "Bearer sk-x"
    assert answer["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert [r["body"] for r in read_records(record)] == [body]


def test_streaming_answer_joins_to_reply():
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    with FakeLLM(models=["m"], reply="one two three") as llm:
        raw = post(llm.url + "/chat/completions", body).decode()  # without /v1 works too
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)


def test_api_key_enforced():
    with FakeLLM(api_key="sk-good") as llm:
        with pytest.raises(urllib.error.HTTPError) as err:
            post(llm.base_url + "/chat/completions", {"messages": []}, key="sk-bad")
        assert err.value.code == 401
        post(llm.base_url + "/chat/completions", {"messages": []}, key="sk-good")
        assert len(llm.requests) == 2  # rejected requests are recorded too


def test_runs_as_a_process(tmp_path):
    record = tmp_path / "req.jsonl"
    with FakeLLM() as probe:  # borrow a free port
        port = probe.port
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_llm", "--port", str(port), "--record", record],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        post(url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}]})
        assert len(get(url + "/_requests")) == 1
        deadline = time.monotonic() + 5
        while not read_records(record) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(read_records(record)) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_scripted_tool_calls_stream_as_openai_deltas():
    """A scripted model answers with tool calls, then (seeing the tool result) with text."""
    from tests.support.fake_llm import ToolCall

    def script(body: dict):
        if any(m.get("role") == "tool" for m in body["messages"]):
            return "done: " + body["messages"][-1]["content"]
        return [ToolCall("search", {"query": "cart total"}, id="call_1"), ToolCall("list")]

    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "q"}]}
    with FakeLLM(models=["m"], script=script) as llm:
        raw = post(llm.base_url + "/chat/completions", body).decode()
        events = [json.loads(line[6:]) for line in raw.splitlines()[:-2] if line[6:7] == "{"]
        calls: dict[int, dict] = {}
        for event in events:
            for d in event["choices"][0]["delta"].get("tool_calls") or []:
                call = calls.setdefault(d["index"], {"id": None, "name": "", "arguments": ""})
                call["id"] = d.get("id") or call["id"]
                call["name"] += d.get("function", {}).get("name", "")
                call["arguments"] += d.get("function", {}).get("arguments", "")
        assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
        assert calls[0] == {
            "id": "call_1",
            "name": "search",
            "arguments": '{"query": "cart total"}',
        }
        assert calls[1]["name"] == "list" and json.loads(calls[1]["arguments"]) == {}

        answered = {
            **body,
            "stream": False,
            "messages": [
                *body["messages"],
                {"role": "tool", "tool_call_id": "call_1", "content": "found"},
            ],
        }
        reply = json.loads(post(llm.base_url + "/chat/completions", answered))
        assert reply["choices"][0]["message"]["content"] == "done: found"
        assert len(llm.requests) == 2
