"""Where `min_score` should sit: hybrid scores of the right function and of chat that is not about
code, with two `Tuning`s, on the corpora of the question set.

    python -m bench.retrieval.scores --corpora DIR --shared ../shared/corpora --out FILE

Per corpus, Victor indexes the corpus as it is (embeddings from the bench cache) and searches
its developer questions and a fixed list of off-topic chat messages in hybrid mode, once with
the core's defaults and once with the settings before the cross-corpus tuning (alpha 0.1,
weights 6/2/0.5/0.5, k1 6). Reported per tuning, over all corpora: percentiles of the answer
function's score (when it is in the top 10) and of each off-topic message's best score, and
for a few floors the share of questions whose answer passes it, of questions whose answer is in
the top 10 and whose best result passes it (the core applies the floor to a chat's best result:
`indexer.search.context.passing`), and of off-topic messages whose best result passes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.retrieval import run as bench_run
from bench.retrieval.cache import VectorCache
from bench.retrieval.metrics import spans
from bench.retrieval.questions import load as load_questions
from bench.retrieval.victor import VictorIndex
from indexer.search import DEFAULT_TUNING

OFF_TOPIC = [
    "hello, how are you?",
    "write me a poem about the sea",
    "what's the weather like tomorrow?",
    "thanks, that worked!",
    "can you summarise this email for me?",
    "translate 'good morning' into French",
    "what is the capital of Australia?",
    "tell me a joke",
    "how do I bake sourdough bread?",
    "recommend a good science fiction book",
    "what time is it in Tokyo right now?",
    "help me plan a week-long trip to Italy",
]
TUNINGS = {
    "defaults": DEFAULT_TUNING,
    "before tuning": replace(DEFAULT_TUNING, alpha=0.1, weights=(6.0, 2.0, 0.5, 0.5), k1=6.0),
}
FLOORS = (0.1, 0.15, 0.2, 0.25, 0.3)


def answer_score(results, gold: tuple[str, int, int]) -> float | None:
    path, start, end = gold
    for r in results:
        if r.path == path and r.start_line <= end and r.end_line >= start:
            return r.score
    return None


def corpus_scores(index: VictorIndex, corpus: Path, questions_dir: Path) -> dict:
    questions = load_questions(corpus, questions_dir / f"{corpus.name}.toml")
    if not questions:
        return {}
    index.index(corpus)
    out = {}
    for name, tuning in TUNINGS.items():
        found = index.results([q.text for q in questions], "hybrid", 10, tuning)
        answers = [answer_score(rs, spans(q)[0]) for rs, q in zip(found, questions, strict=True)]
        off = index.results(OFF_TOPIC, "hybrid", 1, tuning)
        out[name] = {
            "answer": answers,
            "best": [max((r.score for r in rs), default=0.0) for rs in found],
            "off_topic_best": [rs[0].score if rs else 0.0 for rs in off],
        }
    return out


def summary(per_corpus: dict) -> dict:
    out = {}
    for name in TUNINGS:
        answers = [a for c in per_corpus.values() for a in c[name]["answer"]]
        found = [a for a in answers if a is not None]
        off = [o for c in per_corpus.values() for o in c[name]["off_topic_best"]]
        pct = lambda xs: {f"p{q}": round(float(np.percentile(xs, q)), 3) for q in (10, 50, 90)}  # noqa: E731
        out[name] = {
            "questions": len(answers),
            "answer_in_top10": len(found),
            "answer_score": pct(found),
            "off_topic_best": pct(off),
            "answer_passes": {
                f: round(sum(a >= f for a in found) / len(answers), 3) for f in FLOORS
            },
            "off_topic_passes": {f: round(sum(o >= f for o in off) / len(off), 3) for f in FLOORS},
        }
        if all("best" in c[name] for c in per_corpus.values()):  # files written before it
            best = [b for c in per_corpus.values() for b in c[name]["best"]]
            # the core's rule (indexer.search.context.passing): the floor is asked of the best
            # result, then every result goes: the answer reaches the context when it is in the
            # top 10 and the question's best result passes
            out[name]["answer_through_gate"] = {
                f: round(
                    sum(a is not None and b >= f for a, b in zip(answers, best, strict=True))
                    / len(answers),
                    3,
                )
                for f in FLOORS
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.scores", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("corpus", type=Path, nargs="*")
    ap.add_argument("--corpora", type=Path)
    ap.add_argument("--shared", type=Path)
    ap.add_argument("--list", type=Path)
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import tempfile

    from tests.support import pg

    corpora = bench_run.find_corpora(args, ap)
    server = pg.start_server(Path(tempfile.mkdtemp(prefix="scores-pg-")))
    disk = VectorCache(args.cache)
    qdir = Path(bench_run.__file__).parent / "questions"
    per_corpus = {}
    for corpus in corpora:
        index = VictorIndex(server.get_uri(), disk)
        try:
            got = corpus_scores(index, corpus, qdir)
        finally:
            index.close()
        if got:
            per_corpus[corpus.name] = got
            print(f"{corpus.name}: {json.dumps(summary({corpus.name: got}))}", file=sys.stderr)
    report = {"corpora": per_corpus, "summary": summary(per_corpus), "off_topic": OFF_TOPIC}
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
