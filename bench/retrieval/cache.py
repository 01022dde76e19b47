"""An on-disk cache of embeddings, keyed by the model and a hash of the exact text embedded.

Embedding is the slow part of a benchmark run (all-MiniLM-L6-v2 does ~20-50 chunks/s on a
2-core CPU, and the dev corpora hold ~60,000 texts), while the texts rarely change between
runs. SQLite (standard library) holds the vectors: one file, safe to share between the
baselines' and Victor's embedders, and between runs. A vector is stored as float32 bytes.

Location: `--cache DIR` of the run, else $VICTOR_BENCH_CACHE, else ~/.cache/victor-bench.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def default_dir() -> Path:
    env = os.environ.get("VICTOR_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "victor-bench"


def text_key(model: str, text: str) -> bytes:
    return hashlib.sha256(model.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).digest()


class VectorCache:
    """get/put of unit vectors by (model, text); misses are simply absent."""

    def __init__(self, folder: Path | None = None):
        folder = folder or default_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "embeddings.sqlite3"
        # One connection per process; WAL so a second run (or a test) can read meanwhile.
        self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS vec (key BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get_many(self, model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        keys = {text_key(model, t): t for t in dict.fromkeys(texts)}
        found: dict[str, np.ndarray] = {}
        items = list(keys)
        for i in range(0, len(items), 500):  # SQLite's variable limit
            part = items[i : i + 500]
            marks = ",".join("?" * len(part))
            for key, blob in self.db.execute(
                f"SELECT key, v FROM vec WHERE key IN ({marks})", part
            ):
                found[keys[key]] = np.frombuffer(blob, dtype=np.float32)
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, model: str, pairs: Sequence[tuple[str, Sequence[float]]]) -> None:
        rows = [(text_key(model, t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in pairs]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vec (key, v) VALUES (?, ?)", rows)
