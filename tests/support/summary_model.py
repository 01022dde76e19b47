"""A stand-in summary model for tests: a real HTTP server on 127.0.0.1 that speaks both chat
APIs Victor's summaries use, OpenAI's ``POST /v1/chat/completions`` (LiteLLM) and Ollama's
``POST /api/chat``, and answers every request with a deterministic summary of the function
named in it: ``Summary of <symbol>: <words>.``, where ``words`` come from ``extra[symbol]``
(default ``handles its arguments``).

Knobs a test turns: ``api_key`` (401 without it), ``garbage_after`` (from that many answered
requests on, a 200 whose body is not JSON), ``fail_first`` (that many 503 answers first),
``delay`` (seconds before each answer). ``requests`` records every request body.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SYMBOL = re.compile(r"^Function: (.+)$", re.MULTILINE)


class SummaryModel:
    def __init__(self, *, api_key: str | None = None, delay: float = 0.0):
        self.api_key = api_key
        self.delay = delay
        self.extra: dict[str, str] = {}
        self.garbage_after: int | None = None
        self.fail_first = 0
        self.requests: list[dict] = []
        self.answered = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def summary(self, body: dict) -> str:
        user = body["messages"][-1]["content"]
        match = _SYMBOL.search(user)
        symbol = match.group(1) if match else "?"
        return f"Summary of {symbol}: {self.extra.get(symbol, 'handles its arguments')}."

    def symbols(self) -> list[str]:
        """The functions asked about, in order."""
        return [_SYMBOL.search(r["messages"][-1]["content"]).group(1) for r in self.requests]

    def __enter__(self) -> SummaryModel:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(model: SummaryModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def _send(self, status: int, data: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if path not in ("/v1/chat/completions", "/api/chat"):
                self._send(404, b'{"error": "no such route"}')
                return
            if model.api_key and self.headers.get("Authorization") != f"Bearer {model.api_key}":
                self._send(401, b'{"error": {"message": "invalid key"}}')
                return
            if model.delay:
                time.sleep(model.delay)
            with model._lock:
                if model.fail_first > 0:
                    model.fail_first -= 1
                    self._send(503, b'{"error": "overloaded"}')
                    return
                garbage = model.garbage_after is not None and model.answered >= model.garbage_after
                if not garbage:
                    model.answered += 1
                    model.requests.append(body)
            if garbage:
                self._send(200, b"<html>502 Bad Gateway</html>", "text/html")
                return
            text = model.summary(body)
            if path == "/api/chat":
                reply = {
                    "model": body["model"],
                    "message": {"role": "assistant", "content": text},
                    "done": True,
                    "prompt_eval_count": 100,
                    "eval_count": 12,
                }
            else:
                reply = {
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 12},
                }
            self._send(200, json.dumps(reply).encode())

    return Handler
