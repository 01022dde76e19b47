"""Query clean-up of chat phrasing, lexical side, on the levers' pools (study.py).

    python -m bench.retrieval.cleanup --pools P

A fixed pattern (written before looking at any figure) drops a question's leading chat phrasing
("how does I ...", "what happens when I ...", "why is my ...", "is there a way to ...") from its
lexical words; the dense side is left as it is (the pools keep the whole query's cosines only).
Each query's candidates are re-scored with the core's default fusion, with and without the
dropped lexemes; nothing is tuned, so the figure is the plain mean over corpora.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from statistics import mean

import asyncpg
import numpy as np

from bench.retrieval import levers, study
from indexer import words
from indexer.search import DEFAULT_TUNING

PHRASE = re.compile(
    r"^\s*(how (does|do|can|is|are|should|would) (i |we |you )?"
    r"|what happens (when|if) (i |we |you )?"
    r"|why (is|does|do|are|would|might|can't|won't|doesn't|isn't) (my |the |it )?"
    r"|where (is|are|do|does) (the )?|which function "
    r"|is there (a|any) (way|function|helper) to |can i |i want to |explain how )",
    re.IGNORECASE,
)


async def _lexemes(url: str, texts: list[str]) -> list[list[str]]:
    """Each text's lexemes in the order the pools keep them (query_lexemes)."""
    conn = await asyncpg.connect(url)
    try:
        out = []
        for text in texts:
            w = words.query_words(text)
            sql = "SELECT tsvector_to_array(to_tsvector('english', $1))"
            out.append(list(await conn.fetchval(sql, w)) if w else [])
        return out
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    from tests.support import pg

    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.cleanup", description=__doc__)
    ap.add_argument("--pools", type=Path, required=True)
    args = ap.parse_args(argv)
    cps = levers.load(args.pools)
    pools = [(cp, p) for cp in cps for p in cp.pools]
    server = pg.start_server(Path(tempfile.mkdtemp(prefix="cleanup-pg-")))
    try:
        whole = asyncio.run(_lexemes(server.get_uri(), [p.text for _, p in pools]))
        kept = asyncio.run(_lexemes(server.get_uri(), [PHRASE.sub("", p.text) for _, p in pools]))
    finally:
        server.cleanup()
    t = DEFAULT_TUNING
    fusion = study.Fusion(t.alpha, t.weights, t.k1, t.lexical_half, t.b_doc, t.b_body)
    cleaned: dict[int, levers.Pool] = {}
    for (_, p), w, k in zip(pools, whole, kept, strict=True):
        keep = np.array([x in set(k) for x in w], bool)
        cleaned[id(p)] = replace(p, idf=np.where(keep, p.idf, 0).astype(np.float32))
    lost = sum(not np.array_equal(cleaned[id(p)].idf, p.idf) for _, p in pools)
    print(f"queries that lose a lexeme: {lost} of {len(pools)}")
    for s, key in (("doc", "R@5"), ("questions", "answer@5")):
        rows = [cp for cp in cps if sum(p.set == s for p in cp.pools) >= study.MIN_QUERIES]
        base = [study.evaluate(cp, s, lambda p, cp=cp: study.by_score(study.fused(cp, p, fusion)))
                for cp in rows]  # fmt: skip
        clean = [
            study.evaluate(
                cp, s, lambda p, cp=cp: study.by_score(study.fused(cp, cleaned[id(p)], fusion))
            )
            for cp in rows
        ]
        for k in (key, "MRR@10"):
            print(f"{s} {k} over {len(rows)}: {mean(b[k] for b in base):.3f} -> "
                  f"{mean(c[k] for c in clean):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
