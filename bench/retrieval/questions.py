"""The developer-question benchmark: hand-written questions and the functions that answer them.

Questions live in `questions/<corpus>.toml`, one file per corpus, written by reading the code
the way a user who knows the software but not its code would ask (behaviour, "what happens
when", "where is", "why might ... fail"), never with the answer's identifier:

    corpus = "gitsigns.nvim"

    [[q]]
    id = "stage-hunk-visual"
    kind = "what-happens"
    text = "What happens when I stage a hunk with a visual selection?"
    gold = [
      ["lua/gitsigns/actions.lua", "M.stage_hunk"],   # the first gold is THE answer
      ["lua/gitsigns/actions.lua", "get_hunks"],
    ]

A gold names a function as the benchmark's scanner (luascan.py) writes it (`M.f`, `T:m`,
`local_f`, `Table.field`); `name@N` picks the N-th definition of that name in the file
(1-based). Gold functions are resolved to line ranges when the file is loaded, so a file stays
readable and survives small edits of the corpus.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench.retrieval.luascan import find_functions
from bench.retrieval.queries import read_text

QUESTIONS_DIR = Path(__file__).parent / "questions"
KINDS = ("what-happens", "how", "where", "why")


@dataclass(frozen=True, slots=True)
class Gold:
    path: str
    name: str
    start_line: int
    end_line: int


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    kind: str
    text: str
    golds: tuple[Gold, ...]  # golds[0] is the answer function

    # The doc-comment Query's fields, so the single-answer metrics work on questions too.
    @property
    def path(self) -> str:
        return self.golds[0].path

    @property
    def start_line(self) -> int:
        return self.golds[0].start_line

    @property
    def end_line(self) -> int:
        return self.golds[0].end_line


class GoldError(ValueError):
    """A gold function that does not resolve in the corpus."""


def question_file(corpus_name: str, folder: Path = QUESTIONS_DIR) -> Path:
    return folder / f"{corpus_name}.toml"


def resolve(corpus: Path, path: str, name: str, _cache: dict | None = None) -> Gold:
    """The line range of function `name` (`name@N`: its N-th definition) in `path`."""
    want, _, nth = name.partition("@")
    file = corpus / path
    if not file.is_file():
        raise GoldError(f"{path}: no such file in {corpus}")
    cache = _cache if _cache is not None else {}
    if path not in cache:
        cache[path] = find_functions(read_text(file))
    matches = [f for f in cache[path] if f.name == want]
    index = int(nth) - 1 if nth else 0
    if not matches or index >= len(matches):
        near = sorted({f.name for f in cache[path] if want.split(".")[-1] in f.name})[:5]
        raise GoldError(f"{path}: no function {name!r} (similar: {near})")
    fn = matches[index]
    return Gold(path, name, fn.start_line, fn.end_line)


def load(corpus: Path, file: Path | None = None) -> list[Question]:
    """The questions of `corpus` (from questions/<corpus name>.toml), golds resolved.
    Raises GoldError naming every gold that does not resolve; [] when there is no file."""
    file = file or question_file(corpus.name)
    if not file.is_file():
        return []
    data = tomllib.loads(file.read_text())
    cache: dict = {}
    out, errors, seen = [], [], set()
    for entry in data.get("q", []):
        qid = entry["id"]
        if qid in seen:
            errors.append(f"{qid}: duplicate id")
        seen.add(qid)
        if entry.get("kind") not in KINDS:
            errors.append(f"{qid}: kind {entry.get('kind')!r} not one of {KINDS}")
        golds = []
        for path, name in entry["gold"]:
            try:
                golds.append(resolve(corpus, path, name, cache))
            except GoldError as e:
                errors.append(f"{qid}: {e}")
        if not 1 <= len(entry["gold"]) <= 3:
            errors.append(f"{qid}: {len(entry['gold'])} golds (want 1-3)")
        if golds and len(golds) == len(entry["gold"]):
            out.append(Question(qid, entry["kind"], " ".join(entry["text"].split()), tuple(golds)))
    if errors:
        raise GoldError(f"{file}:\n  " + "\n  ".join(errors))
    return out
