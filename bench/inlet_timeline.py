"""Where a lone chat turn's wall time goes: when each statement and the query embedding start
and end, measured from the moment the filter gets the chat body.

    python -m bench.inlet_timeline --data-dir DIR [--chunks 100000] [--requests 200]
                                   [--repos NAME ...] [--embed-ms MS] [--settle S] [--out FILE]

The "Lua Codebase" filter runs in this process (as in `bench.inlet_cpu`), one chat body after
another, on the synthetic index of `bench.scale --data-dir DIR`; the query embedding comes
from the stand-in of `bench.inlet_cpu` (in a thread of this process: it shares the filter's
interpreter, unlike Ollama), after `--embed-ms` of Ollama's own time. `--repos` sets the
filter's valve (e.g. `plugins`, the smallest repository of the synthetic index). After the
warm-up the bench waits `--settle` seconds, for the filter to load the lexical index into
memory; its ranking there is a step of its own ("lexical rank in memory").

For each step of a turn (the n-th statement of a kind, the embedding) the report gives how
often a turn has it and the medians of its start, end and duration. Steps that overlap run
on two connections at once (a lone chat reads its lexical top ahead); a step starting well
after the one before it ended waited for the filter's Python. So the report shows which
steps are on a turn's critical path, which the totals of `bench.inlet_cpu` do not.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import asyncpg

from bench import synthetic
from bench.inlet_cpu import WARM_UP, load_filter, measure
from bench.inlet_latency import pct
from bench.inlet_load import prepare
from indexer.embedding.ollama import OllamaEmbedder
from indexer.search.lexical_memory import Scope
from tests.plugins import inlet_request

EMBEDDING = "query embedding"
RANK = "lexical rank in memory"


class Timeline:
    """The steps of the current turn: (name, start, end) in seconds from its start."""

    def __init__(self):
        self.start = time.perf_counter()
        self.steps: list[tuple[str, float, float]] = []

    def begin(self) -> None:
        self.start = time.perf_counter()
        self.steps.clear()

    def wrap(self, method, name_of):
        timeline = self

        async def timed(owner, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await method(owner, *args, **kwargs)
            finally:
                now = time.perf_counter()
                timeline.steps.append((name_of(args), t0 - timeline.start, now - timeline.start))

        return timed

    def install(self) -> None:
        connection = asyncpg.connection.Connection
        statement = lambda args: " ".join(args[0].split())[:64]  # noqa: E731
        connection._execute = self.wrap(connection._execute, statement)
        connection.execute = self.wrap(connection.execute, lambda a: "execute: " + statement(a))
        OllamaEmbedder.embed_queries = self.wrap(OllamaEmbedder.embed_queries, lambda a: EMBEDDING)
        Scope.rank = self.timed(Scope.rank, RANK)

    def timed(self, method, name: str):
        """`wrap` for a plain (not async) method."""
        timeline = self

        def timed(owner, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(owner, *args, **kwargs)
            finally:
                now = time.perf_counter()
                timeline.steps.append((name, t0 - timeline.start, now - timeline.start))

        return timed


def summary(turns: list[list[tuple[str, float, float]]], totals: list[float]) -> dict:
    """Medians per step (the n-th of its name in a turn), in the order the steps start."""
    n = len(turns)
    by_step: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for steps in turns:
        seen: dict[str, int] = defaultdict(int)
        for name, start, end in steps:
            seen[name] += 1
            by_step[(name, seen[name])].append((start * 1000, end * 1000))
    rows = []
    for (name, nth), spans in by_step.items():
        rows.append(
            {
                "step": name if nth == 1 else f"{name} (#{nth})",
                "per_turn": round(len(spans) / n, 2),
                "start_ms": round(statistics.median(s for s, _ in spans), 2),
                "end_ms": round(statistics.median(e for _, e in spans), 2),
                "duration_ms": round(statistics.median(e - s for s, e in spans), 2),
            }
        )
    rows.sort(key=lambda r: r["start_ms"])
    return {
        "turns": n,
        "turn_p50_ms": round(pct(totals, 50), 2),
        "turn_p95_ms": round(pct(totals, 95), 2),
        "steps": rows,
    }


async def run(args, admin_url: str) -> dict:
    url, queries = await prepare(admin_url, args)
    vectors = synthetic.WordVectors(synthetic.Codebase(), 384)
    embed = synthetic.WordVectorOllama(vectors, delay_ms=args.embed_ms)
    pipeline = load_filter()
    pipeline.valves = pipeline.Valves(
        database_url=url, ollama_host=embed.url, embed_model=synthetic.MODEL, repos=args.repos
    )
    await pipeline.on_startup()
    timeline = Timeline()
    turns: list[list[tuple[str, float, float]]] = []
    totals: list[float] = []
    try:
        rng = random.Random(1)
        asked = [rng.choice(queries) for _ in range(args.requests + WARM_UP)]
        for question in asked[:WARM_UP]:
            request = inlet_request(question)
            await pipeline.inlet(request["body"], request["user"])
        await asyncio.sleep(args.settle)  # the lexical index is loaded into memory meanwhile
        timeline.install()
        for question in asked[WARM_UP:]:
            request = inlet_request(question)
            timeline.begin()
            await pipeline.inlet(request["body"], request["user"])
            totals.append((time.perf_counter() - timeline.start) * 1000)
            turns.append(list(timeline.steps))
    finally:
        await pipeline.on_shutdown()
        embed.server.shutdown()
    return summary(turns, totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--repos", nargs="+", default=[], help="the filter's repos valve")
    parser.add_argument("--embed-ms", type=float, default=0.0, help="Ollama's own time")
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="seconds to wait after the warm-up (the lexical index is loaded into memory)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    async def work(admin_url: str, _pgdata: Path) -> dict:
        return await run(args, admin_url)

    measure(args, work, repos=args.repos, embed_ms=args.embed_ms)


if __name__ == "__main__":
    sys.exit(main())
