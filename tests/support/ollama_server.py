"""A stand-in Ollama server for tests and benchmarks: Ollama's documented HTTP
API on 127.0.0.1, answering with real vectors from all-MiniLM-L6-v2.

It speaks exactly the routes Victor calls through the `ollama` client:
`POST /api/embed`, `GET /api/tags`, `POST /api/show`, `GET /`. It counts
requests, inputs and keep_alive values (to prove what was and was not re-embedded) and can be
told to misbehave (slow, errors, wrong dimension) for fault tests.

Run standalone: python -m tests.support.ollama_server --port 11434
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_MODELS = ("all-minilm",)


def scaled_vectors(vectors: list[list[float]], b: float) -> list[list[float]]:
    """Unit vectors v as [sqrt(b) v, sqrt(1 - b)]: every cosine between two of them becomes
    b x cos + 1 - b (a model on another cosine scale; also bench/retrieval/victor.py's)."""
    x, y = b**0.5, (1 - b) ** 0.5
    return [[x * c for c in v] + [y] for v in vectors]


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (its timeout) is normal in fault tests: no traceback."""

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOllama:
    def __init__(self, models: tuple[str, ...] = DEFAULT_MODELS, port: int = 0):
        from indexer.embedding.local import load_local_model

        self.model = load_local_model()
        self.models = {m if ":" in m else m + ":latest" for m in models}
        self.lock = threading.Lock()
        self.encode_lock = threading.Lock()
        self.requests = 0  # POST /api/embed calls
        self.inputs: list[str] = []  # every text embedded, in order
        self.keep_alives: list[object] = []  # each /api/embed request's keep_alive (or None)
        self.delay = 0.0  # seconds to sleep before answering /api/embed
        self.fail_status: int | None = None  # answer /api/embed with this HTTP status
        self.wrong_dims: int | None = None  # answer with vectors of this many dimensions
        # model -> b: that model answers [sqrt(b) v, sqrt(1 - b)] for all-MiniLM-L6-v2's v,
        # so its cosines are b x cos + 1 - b: the same neighbours on another scale
        self.scaled: dict[str, float] = {}
        self.closed = False
        self.server = _QuietServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.inputs = []
            self.keep_alives = []
            self.delay = 0.0
            self.fail_status = None
            self.wrong_dims = None
            for model in self.scaled:
                self.models.discard(model)
            self.scaled = {}

    def add_scaled_model(self, model: str, b: float) -> None:
        """Serve `model` (until `reset`) as all-MiniLM-L6-v2 with cosines b x cos + 1 - b."""
        model = model if ":" in model else model + ":latest"
        with self.lock:
            self.models.add(model)
            self.scaled[model] = b

    def start(self) -> FakeOllama:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for an encode in flight. Handler threads are daemons; one still
        inside torch when the interpreter exits aborts the process ("terminate called without an
        active exception"), e.g. a slow request whose client already gave up."""
        self.server.shutdown()
        self.server.server_close()
        with self.encode_lock:
            self.closed = True

    def knows(self, model: str) -> bool:
        return (model if ":" in model else model + ":latest") in self.models

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self.encode_lock:
            if self.closed:
                raise ConnectionError("the stand-in Ollama has stopped")
            vectors = self.model.encode(texts, batch_size=32, normalize_embeddings=True)
        return vectors.tolist()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, payload: object) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self):
                if self.path == "/api/tags":
                    models = [
                        {
                            "name": m,
                            "model": m,
                            "size": 0,
                            "digest": "0" * 64,
                            "modified_at": "2026-01-01T00:00:00Z",
                            "details": {},
                        }
                        for m in sorted(fake.models)
                    ]
                    self._send(200, {"models": models})
                elif self.path == "/":
                    body = b"Ollama is running"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                request = self._json()
                model = request.get("model", "")
                model = model if ":" in model else model + ":latest"
                if self.path == "/api/show":
                    if not fake.knows(request.get("model", "")):
                        self._send(404, {"error": f"model '{request.get('model')}' not found"})
                        return
                    self._send(
                        200,
                        {
                            "modelfile": "",
                            "details": {"family": "bert"},
                            "model_info": {"bert.embedding_length": 384 + (model in fake.scaled)},
                        },
                    )
                elif self.path == "/api/embed":
                    self._embed(request)
                else:
                    self._send(404, {"error": "not found"})

            def _embed(self, request: dict) -> None:
                model = request.get("model", "")
                texts = request.get("input", [])
                texts = [texts] if isinstance(texts, str) else list(texts)
                with fake.lock:
                    fake.requests += 1
                    fake.inputs.extend(texts)
                    fake.keep_alives.append(request.get("keep_alive"))
                    delay, fail, dims = fake.delay, fake.fail_status, fake.wrong_dims
                    b = fake.scaled.get(model if ":" in model else model + ":latest")
                if delay:
                    time.sleep(delay)
                if fail:
                    self._send(fail, {"error": f"simulated failure {fail}"})
                    return
                if not fake.knows(model):
                    self._send(404, {"error": f'model "{model}" not found, try pulling it first'})
                    return
                vectors = fake.embed(texts) if texts else []
                if b is not None:
                    vectors = scaled_vectors(vectors, b)
                if dims:
                    vectors = [(v * dims)[:dims] for v in vectors]
                self._send(
                    200,
                    {
                        "model": model,
                        "embeddings": vectors,
                        "total_duration": 1,
                        "load_duration": 0,
                        "prompt_eval_count": len(texts),
                    },
                )

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", action="append", default=None)
    args = parser.parse_args()
    fake = FakeOllama(tuple(args.model or DEFAULT_MODELS), port=args.port)
    print(f"fake ollama on {fake.url}", flush=True)
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
