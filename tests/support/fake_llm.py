"""A small OpenAI-compatible model server for tests.

It listens on 127.0.0.1, serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (streaming
as server-sent events, or not), answers with a fixed text, and records every chat request body so
a test can assert what reached the model.

In a test::

    with FakeLLM(reply="hello") as llm:
        ...  # point the client at llm.base_url  (http://127.0.0.1:<port>/v1)
        assert llm.requests[-1]["body"]["messages"][-1]["content"] == "hi"

As a process::

    python -m tests.support.fake_llm --port 8111 --record /tmp/requests.jsonl

A model that calls tools: give ``script``, a function of the request body that returns the
tool calls to answer with (``[ToolCall(name, arguments)]``, streamed as OpenAI's
``tool_calls`` deltas, finish reason ``tool_calls``), a text, or None for the fixed reply.
It sees every request, so it can read the ``tool`` messages of earlier calls, as a model does.

Extra routes for a test that runs it as a process: ``GET /_requests`` returns the recorded
requests as a JSON list, ``DELETE /_requests`` forgets them, ``GET /health`` answers ``ok``.
Paths work with or without the ``/v1`` prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_REPLY = "FAKE-LLM-ANSWER: this is the fake model's fixed answer."
DEFAULT_MODELS = ("fake-model",)


@dataclass(frozen=True)
class ToolCall:
    """A function call the model makes (OpenAI `tool_calls`)."""

    name: str
    arguments: dict = field(default_factory=dict)
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:12])


Script = Callable[[dict], "list[ToolCall] | str | None"]


class FakeLLM:
    """The server, run in a background thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
        reply: str = DEFAULT_REPLY,
        record_path: str | Path | None = None,
        api_key: str | None = None,
        chunk_delay: float = 0.0,
        script: Script | None = None,
    ):
        self.models = list(models)
        self.reply = reply
        self.record_path = Path(record_path) if record_path else None
        self.api_key = api_key
        self.chunk_delay = chunk_delay
        self.script = script
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Root URL, without ``/v1``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client wants as its base URL."""
        return self.url + "/v1"

    def start(self) -> FakeLLM:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)
            if self.record_path is not None:
                with self.record_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.requests)


def read_records(path: str | Path) -> list[dict]:
    """Read a JSONL file written with ``record_path``."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def message_text(message: dict) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _make_handler(llm: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeLLM/1"

        def log_message(self, format, *args):
            pass

        def _path(self) -> str:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path.startswith("/v1/") or path == "/v1":
                path = path[3:]
            return path or "/"

        def _send_json(self, status: int, payload) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if not llm.api_key:
                return True
            if self.headers.get("Authorization") == f"Bearer {llm.api_key}":
                return True
            self._send_json(401, {"error": {"message": "bad api key", "type": "auth"}})
            return False

        def do_GET(self):
            path = self._path()
            if path == "/health":
                self._send_json(200, "ok")
            elif path == "/_requests":
                self._send_json(200, llm.snapshot())
            elif path == "/models":
                if not self._authorized():
                    return
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in llm.models
                ]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_DELETE(self):
            if self._path() == "/_requests":
                llm.clear()
                self._send_json(200, "cleared")
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self._path() != "/chat/completions":
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send_json(400, {"error": {"message": "body is not JSON"}})
                return
            llm.record(
                {
                    "ts": time.time(),
                    "method": "POST",
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "body": body,
                }
            )
            if not self._authorized():
                return
            model = body.get("model") or llm.models[0]
            answer = llm.script(body) if llm.script else None
            answer = llm.reply if answer is None else answer
            if body.get("stream"):
                self._stream(model, body, answer)
            else:
                self._send_json(200, _completion(model, answer))

        def _stream(self, model: str, body: dict, answer: str | list[ToolCall]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            cid = "chatcmpl-" + uuid.uuid4().hex[:12]
            created = int(time.time())

            def chunk(delta: dict, finish: str | None = None) -> dict:
                return {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            if isinstance(answer, str):
                events = [chunk({"role": "assistant", "content": ""})]
                events += [chunk({"content": piece}) for piece in _pieces(answer)]
                events.append(chunk({}, "stop"))
            else:
                events = [chunk(d) for d in _tool_call_deltas(answer)]
                events.append(chunk({}, "tool_calls"))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = chunk({})
                usage["choices"] = []
                usage["usage"] = _usage(answer if isinstance(answer, str) else "")
                events.append(usage)
            try:
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                    if llm.chunk_delay:
                        time.sleep(llm.chunk_delay)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

    return Handler


def _call_json(call: ToolCall) -> dict:
    function = {"name": call.name, "arguments": json.dumps(call.arguments)}
    return {"id": call.id, "type": "function", "function": function}


def _tool_call_deltas(calls: list[ToolCall]) -> list[dict]:
    """The deltas a streaming OpenAI model sends for tool calls: per call, its id and name
    first, then its arguments in a few pieces."""
    deltas: list[dict] = [{"role": "assistant", "content": None}]
    for index, call in enumerate(calls):
        head = {"index": index, "id": call.id, "type": "function"}
        deltas.append({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        arguments = json.dumps(call.arguments)
        step = max(1, len(arguments) // 3)
        for i in range(0, len(arguments), step):
            piece = {"index": index, "function": {"arguments": arguments[i : i + step]}}
            deltas.append({"tool_calls": [piece]})
    return deltas


def _pieces(text: str) -> list[str]:
    """Split the reply into a few word-sized pieces that join back to the same text."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _usage(text: str) -> dict:
    n = len(text.split())
    return {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}


def _completion(model: str, answer: str | list[ToolCall]) -> dict:
    if isinstance(answer, str):
        message = {"role": "assistant", "content": answer}
        finish, text = "stop", answer
    else:
        calls = [_call_json(c) for c in answer]
        message = {"role": "assistant", "content": None, "tool_calls": calls}
        finish, text = "tool_calls", ""
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(text),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8111)
    parser.add_argument("--record", help="append each chat request as a JSON line to this file")
    parser.add_argument(
        "--model", action="append", help="model id to list (repeatable; default fake-model)"
    )
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--api-key", help="require 'Authorization: Bearer <key>'")
    args = parser.parse_args(argv)
    server = FakeLLM(
        host=args.host,
        port=args.port,
        models=args.model or DEFAULT_MODELS,
        reply=args.reply,
        record_path=args.record,
        api_key=args.api_key,
    )
    print(f"fake_llm listening on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
