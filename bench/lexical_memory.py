"""The lexical side from the index held in memory against the lexical statement, on the
synthetic index of `bench.scale`: the same result, and the time each takes.

    python -m bench.lexical_memory --data-dir DIR [--chunks 100000] [--queries 100] [--out FILE]

Loads every repository's postings (`indexer.search.lexical_memory`, as a chat process does),
then for each question (prose of the codebase's common and rare words, and symbol lookups),
over all repositories and over the smallest one, with 20 of the scope's chunks as `extra`
(the dense side's candidates): the statement's `lexical_side` and the memory's `scope` +
`rank`, one after the other on one connection; then the memory's ranking in a chat's two
halves (`rank` without the extra chunks, as while the query is embedded, then `score` of the
extra ones and `with_extra`). Reported: how long loading took and what it holds, p50 / p95 ms
of each side (the memory's includes its one statement: the query's words and the
repositories' versions), of each half, and how many results differ (ids, order or score).
"""

from __future__ import annotations

import random
import time

from bench import synthetic
from bench.scale import index_parser, log, on_loaded_index, on_server, stats
from indexer import store
from indexer.search import DEFAULT_TUNING, lexical
from indexer.search.lexical_memory import MB, LexicalMemory, with_extra

DEPTH = 50  # the hybrid's depth (`Tuning.depth`)


def ordered(scores: dict[int, float]) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


async def compare(url: str, queries: int) -> dict:
    memory = LexicalMemory(url, 1 << 40)
    started = time.perf_counter()
    await memory.load()
    loaded = time.perf_counter() - started
    log(f"loaded in {loaded:.1f} s: {memory.nbytes / MB:.0f} MB")
    conn = await store.connect_once(url)
    result: dict = {"load_s": round(loaded, 1), "memory_mb": round(memory.nbytes / MB)}
    try:
        symbols = await synthetic.sample_symbols(conn, queries // 2)
        texts = synthetic.questions(synthetic.Codebase(), queries) + symbols
        smallest = await conn.fetchval("SELECT repo_id FROM lex_stats ORDER BY chunks LIMIT 1")
        rng = random.Random(0)
        for scope, repos in (("all_repositories", None), ("one_repository", [smallest])):
            ids = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM chunks WHERE $1::int[] IS NULL OR repo_id = ANY($1) LIMIT 5000",
                    repos,
                )
            ]
            statement, held, differ = [], [], 0
            top_ms, extra_ms, halves_differ = [], [], 0
            for text in texts:
                extra = sorted(rng.sample(ids, 20))
                started = time.perf_counter()
                want, _ = await lexical.lexical_side(
                    conn, query=text, vector=None, depth=DEPTH, repos=repos,
                    tuning=DEFAULT_TUNING, extra=extra,
                )  # fmt: skip
                statement.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                found = await memory.scope(conn, text, repos)
                got = found.rank(DEFAULT_TUNING, DEPTH, extra) if found is not None else {}
                held.append((time.perf_counter() - started) * 1000)
                differ += ordered({i: s.score for i, s in got.items()}) != ordered(want)
                if found is not None:
                    started = time.perf_counter()
                    top = found.rank(DEFAULT_TUNING, DEPTH)
                    top_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    halves = with_extra(top, found.score(DEFAULT_TUNING, extra), DEPTH)
                    extra_ms.append((time.perf_counter() - started) * 1000)
                    halves_differ += halves != got
            result[scope] = {
                "statement": stats(statement),
                "memory": stats(held),
                "differ": differ,
                "own_top_in_memory": stats(top_ms),
                "extra_in_memory": stats(extra_ms),
                "halves_differ": halves_differ,
                "queries": len(texts),
            }
            log(f"{scope}: {result[scope]}")
    finally:
        await conn.close()
        await memory.close()
    return result


async def run(args, admin_url: str) -> dict:
    return await on_loaded_index(args, admin_url, lambda url: compare(url, args.queries))


def main() -> None:
    on_server(run, index_parser(queries=100).parse_args())


if __name__ == "__main__":
    main()
