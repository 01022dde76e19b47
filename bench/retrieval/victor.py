"""Slot for Victor's own search modes: "victor-dense", "victor-lexical", "victor-hybrid".

Victor's core is written in parallel; until it can be called from here these systems raise
NotImplementedError, and `run.py` reports them as not run instead of inventing numbers.

To wire one up, replace `VictorSystem.index` / `search_batch` with calls into Victor's core:
  * index(corpus_dir): chunk + embed + store every .lua file under `corpus_dir` (the held-out
    copy) into a fresh, throw-away database or schema, so runs never touch a real index;
  * search_batch(queries, k): run the search in `self.mode` ("dense" | "lexical" | "hybrid")
    and map each result to `Hit(path relative to corpus_dir, start_line, end_line, text,
    score)`, where `text` is exactly what Victor would put into the prompt (it is what
    ctx_chars@5 counts);
  * set `embed_seconds` to the time spent embedding during index().
Use `ctx.embedder` only if Victor embeds with the same in-process model; otherwise let Victor
embed its own way and report that time.
"""

from __future__ import annotations

from pathlib import Path

from bench.retrieval.systems import Context, Hit, register

MODES = ("dense", "lexical", "hybrid")


class VictorSystem:
    def __init__(self, mode: str, ctx: Context):
        self.name = f"victor-{mode}"
        self.mode = mode
        self.ctx = ctx
        self.embed_seconds = 0.0

    def _missing(self) -> NotImplementedError:
        return NotImplementedError(
            f"{self.name}: Victor's core is not wired into the benchmark yet; "
            "implement VictorSystem in bench/retrieval/victor.py (see its docstring)"
        )

    def index(self, corpus_dir: Path) -> None:
        raise self._missing()

    def search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        raise self._missing()


def _factory(mode: str):
    return lambda ctx: VictorSystem(mode, ctx)


for _mode in MODES:
    register(f"victor-{_mode}")(_factory(_mode))
