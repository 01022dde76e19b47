"""Anchor text for code: the words of the places a function is used, as an extra BM25F field,
measured leave-one-corpus-out on the levers' pools (levers.py).

    python -m bench.retrieval.anchors --pools P --corpora DIR [DIR ...] \
        [--out bench/results/anchors-loco.json]

Web search's oldest strong signal is the words other pages put on their links to a page. Code
has the same: `vim.keymap.set("n", "<C-s>", M.save, { desc = "Save file" })`, `on("rule_applied",
apply_rule)`, `cmd = { run = run_task }` describe a function in its caller's words. For every
function chunk F of a corpus this builds two anchor fields from the corpus's files:
* `names`: the words of the qualified names of the functions whose code references F (each
  referencing function once);
* `lines`: the words of the referencing lines themselves (the line, or the line +- 1), each
  line once, string contents included, comments never (a comment is not a use; and so the
  doc benchmark's held-out comments cannot come back through another chunk), and never a
  line of F itself.
A reference is a name token equal to F's last name that is neither a definition (`function
M.f`, `f = function`), an assignment target or table key (`M.f = `, `{ f = `), nor a table
indexed (`check:start()`: a variable of that name), resolved to
definitions the way the call context does (indexer/search/calls.py `_closeness`): the same
qualified name, or a `require` alias of F's file (`local git = require("gitsigns.git")` then
`git.run`) first; then `self:f` in F's file; then any use in F's file; a use elsewhere that
names none of these counts only when the name has at most MAX_DEFINITIONS definitions and is
used so in at most MAX_LOOSE chunks (`new`, `get` are left out). A use through an alias of
another file is never F's.

Each pool's 50 candidates are re-scored with the tuned fusion (`stage.TUNED`) whose BM25F gets
the two fields: a word's weighted frequency is today's four fields plus `w_names x names +
w_lines x lines`, each over `(1 - b + b x len / avg_len)`, saturated with k1; idf is today's
(from the chunks' own words). The grid (uses in tests or not; window 0 or 1; a use's own name
kept in the lines or not; loose uses or strict; both weights; b; k1) is picked per held-out
corpus on the other 7 (MRR@10, each set half, as the other lever studies). The pools cannot
show what the field would pull in from outside the top 50: for the questions whose answer is
outside, `outside_pool` ranks the answer lexically over the whole corpus without and with the
fold's anchors (fields rebuilt from the chunks' texts, an approximation). Words are Victor's
(`indexer.words.words`), stemmed by PostgreSQL's `english` configuration exactly as the index
does (an embedded server, pgserver). The figures and the verdict are in bench/README.md,
"Anchor text".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from bench.retrieval import levers
from bench.retrieval.densequery import answer_rank
from bench.retrieval.stage import TUNED, evaluate_scores, fuse_cosine, mrr_scores
from bench.retrieval.study import (
    SETS,
    _prep,
    bm25f,
    eligible,
    labels,
    log,
    objective,
    table,
)
from indexer import words
from indexer.parsing.scanner import Token, string_value, tokenize
from indexer.search.fusion import is_test_path

MAX_DEFINITIONS = 3  # as calls.py: a loose use of a name defined more often is nobody's
MAX_LOOSE = 12  # calls.py's MAX_DEFINITIONS x MAX_CALLERS: chunks using a name loosely


# ---------------------------------------------------------------- references


@dataclass(frozen=True)
class Definition:
    """A function of the corpus as the index chunked it (every part/version merged)."""

    path: str
    symbol: str
    spans: tuple[tuple[int, int], ...]

    @property
    def key(self) -> str:
        return self.symbol.replace(":", ".").rpartition(".")[2]

    def holds(self, path: str, line: int) -> bool:
        return path == self.path and any(a <= line <= b for a, b in self.spans)


@dataclass(frozen=True)
class Use:
    """One use of a name: where, and the expression it was written as (`git.run`, `self:f`)."""

    path: str
    line: int
    expr: str


@dataclass
class SourceLines:
    """A file's code per line (comments dropped), its tests flag and its `require` aliases."""

    path: str
    code: dict[int, str]
    test: bool
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> path of the file


def _code_lines(tokens: list[Token]) -> dict[int, str]:
    out: dict[int, list[str]] = defaultdict(list)
    for t in tokens:
        if t.kind not in ("comment", "shebang"):
            out[t.line].append(t.text)
    return {n: " ".join(ts) for n, ts in out.items()}


def _module_path(module: str, here: str, files: set[str]) -> str | None:
    """The corpus file a `require` names: `a.b` -> `.../a/b.lua` or `.../a/b/init.lua`, the
    shortest match (a file of the same directory tree first)."""
    stem = module.replace(".", "/")
    found = [
        f for f in files if f.endswith(f"/{stem}.lua") or f == f"{stem}.lua"
        or f.endswith(f"/{stem}/init.lua") or f == f"{stem}/init.lua"
    ]  # fmt: skip
    if not found:
        return None
    top = here.split("/")[0]
    return min(found, key=lambda f: (f.split("/")[0] != top, len(f)))


def _roblox_path(parts: list[str], here: str, files: set[str]) -> str | None:
    """`script.Parent.Foo.Bar` (Roblox `require`) from the file `here`."""
    p = PurePosixPath(here)
    folder = p.parent if p.stem != "init" else p.parent.parent
    rest = parts[2:]
    while rest and rest[0] == "Parent":
        folder, rest = folder.parent, rest[1:]
    if not rest:
        return None
    base = folder.joinpath(*rest).as_posix()
    for cand in (f"{base}.lua", f"{base}/init.lua"):
        if cand in files:
            return cand
    return None


def _aliases(tokens: list[Token], here: str, files: set[str]) -> dict[str, str]:
    """`local NAME = require("mod")` / `require "mod"` / `require(script.Parent.X)`."""
    out: dict[str, str] = {}
    code = [t for t in tokens if t.kind != "comment"]
    for i, t in enumerate(code[:-3]):
        if not (
            t.kind == "name"
            and code[i + 1].text == "="
            and code[i + 2].text == "require"
            and (i == 0 or code[i - 1].text in ("local", ","))
        ):
            continue
        j = i + 3
        if code[j].text == "(":
            j += 1
        if j >= len(code):
            continue
        target = None
        if code[j].kind == "string":
            target = _module_path(string_value(code[j].text), here, files)
        elif code[j].text == "script":
            parts = []
            while j < len(code) and (code[j].kind == "name" or code[j].text == "."):
                if code[j].kind == "name":
                    parts.append(code[j].text)
                j += 1
            if len(parts) > 1 and parts[1] == "Parent":
                target = _roblox_path(parts, here, files)
        if target:
            out[t.text] = target
    return out


def uses(path: str, tokens: list[Token], keys: set[str]) -> list[Use]:
    """The uses of the names `keys` in a file's tokens: neither a definition (`function M.f`,
    `f = function`) nor an assignment target or table key (`M.f =`, `{ f = `)."""
    code = [t for t in tokens if t.kind != "comment"]
    out = []
    for i, t in enumerate(code):
        if t.kind != "name" or t.text not in keys:
            continue
        start = i
        while start >= 2 and code[start - 1].text in (".", ":") and code[start - 2].kind == "name":
            start -= 2
        before = code[start - 1].text if start else ""
        after = code[i + 1].text if i + 1 < len(code) else ""
        # a definition, an assignment target or table key, or a table used (`check:start()`)
        if before == "function" or after in ("=", ".", ":", "["):
            continue
        out.append(Use(path, t.line, "".join(x.text for x in code[start : i + 1])))
    return out


def closeness(use: Use, d: Definition, aliases: dict[str, str]) -> int:
    """How surely `use` means `d` (calls.py `_closeness`, plus `require` aliases): 3 the same
    qualified name or `alias.f` with the alias naming d's file, 2 `self:f` in d's file, 1 in
    d's file, 0 only the name agrees, -1 an alias of another file (never d)."""
    expr = use.expr.replace(":", ".")
    parts = expr.split(".")
    if expr == d.symbol.replace(":", "."):
        return 3
    if len(parts) == 2 and parts[0] in aliases:
        return 3 if aliases[parts[0]] == d.path else -1
    same_file = use.path == d.path
    if same_file and parts[0] == "self" and len(parts) > 1 and any(c in d.symbol for c in ".:"):
        return 2
    return 1 if same_file else 0


def resolve(
    defs: list[Definition], files: dict[str, SourceLines], all_uses: list[Use], owner
) -> dict[Definition, list[tuple[Use, bool]]]:
    """Each definition's uses, each with whether it is loose (only the name agrees).
    `owner(path, line)` names the chunk holding a line (for the loose-use bound)."""
    by_key: dict[str, list[Definition]] = defaultdict(list)
    for d in defs:
        by_key[d.key].append(d)
    loose: dict[str, list[tuple[Use, list[Definition]]]] = defaultdict(list)
    out: dict[Definition, list[tuple[Use, bool]]] = defaultdict(list)
    for u in all_uses:
        key = u.expr.replace(":", ".").rpartition(".")[2]
        cands = [d for d in by_key[key] if not d.holds(u.path, u.line)]
        if not cands:
            continue
        scored = [(closeness(u, d, files[u.path].aliases), d) for d in cands]
        best = max(s for s, _ in scored)
        if best < 0:
            continue
        chosen = [d for s, d in scored if s == best]
        if best > 0:
            for d in chosen:
                out[d].append((u, False))
        elif len(by_key[key]) <= MAX_DEFINITIONS:
            loose[key].append((u, chosen))
    for found in loose.values():
        if len({owner(u.path, u.line) for u, _ in found}) > MAX_LOOSE:
            continue  # a name used loosely everywhere: which of these mean this function?
        for u, chosen in found:
            for d in chosen:
                out[d].append((u, True))
    return out


# ---------------------------------------------------------------- a corpus's anchors


@dataclass
class Anchors:
    """Per definition and variant (tests, window, own, strict): both fields' anchor words."""

    names: dict[tuple, dict[Definition, list[str]]]
    lines: dict[tuple, dict[Definition, list[str]]]
    of_chunk: dict[int, Definition]  # chunk id -> its definition
    stats: dict


# tests: uses in test files count; window: lines either side of the use; own: the use's own
# words (`M.save`: m save) stay in the lines field (the name field A already holds them);
# strict: loose uses (only the name agrees) left out
VARIANTS = list(itertools.product((False, True), (0, 1), (True, False), (False, True)))


def corpus_anchors(cp: levers.CorpusPools, root: Path) -> Anchors:
    paths = sorted({c.path for c in cp.chunks.values()})
    fileset = set(paths)
    spans: dict[tuple[str, str], set[tuple[int, int]]] = defaultdict(set)
    for c in cp.chunks.values():
        if c.kind in ("function", "method"):
            spans[(c.path, c.symbol)].add((c.start_line, c.end_line))
    defs = [Definition(p, s, tuple(sorted(v))) for (p, s), v in spans.items()]
    of_key = {(d.path, d.symbol): d for d in defs}
    of_chunk = {
        cid: of_key[(c.path, c.symbol)]
        for cid, c in cp.chunks.items()
        if c.kind in ("function", "method")
    }
    # which chunk (function or module code) holds a line: the smallest span around it
    holders: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
    for c in cp.chunks.values():
        holders[c.path].append((c.start_line, c.end_line, c.kind, c.symbol))

    def owner(path: str, line: int) -> tuple[str, str, str]:
        around = [h for h in holders[path] if h[0] <= line <= h[1]]
        if not around:
            return (path, "module", "")
        h = min(around, key=lambda h: h[1] - h[0])
        return (path, h[2], h[3])

    keys = {d.key for d in defs}
    files: dict[str, SourceLines] = {}
    all_uses: list[Use] = []
    for p in paths:
        text = (root / p).read_text(errors="replace")
        tokens = tokenize(text)
        aliases = _aliases(tokens, p, fileset)
        files[p] = SourceLines(p, _code_lines(tokens), is_test_path(p), aliases)
        all_uses += uses(p, tokens, keys)
    found = resolve(defs, files, all_uses, owner)
    names: dict = {v: {} for v in VARIANTS}
    lines: dict = {v: {} for v in VARIANTS}
    for d, us in found.items():
        for tests, window, own, strict in VARIANTS:
            v = (tests, window, own, strict)
            kept = [u for u, lo in us if (tests or not files[u.path].test) and not (strict and lo)]
            callers = dict.fromkeys(
                owner(u.path, u.line) for u in kept
            )  # each referencing function once
            names[v][d] = [
                w for _, kind, sym in callers if kind in ("function", "method")
                for w in words.words(sym)
            ]  # fmt: skip
            taken = dict.fromkeys(
                (u.path, n)
                for u in kept
                for n in range(u.line - window, u.line + window + 1)
                if not d.holds(u.path, n)
            )
            found_words = Counter(
                w for path, n in taken for w in words.words(files[path].code.get(n, ""),
                                                               drop_keywords=True)
            )  # fmt: skip
            if not own:  # each use's own name once less
                found_words -= Counter(w for u in kept for w in words.words(u.expr))
            lines[v][d] = list(found_words.elements())
    used = [d for d in defs if found.get(d)]
    stats = {
        "definitions": len(defs),
        "with_uses": len(used),
        "uses": sum(len(v) for v in found.values()),
        "aliases": sum(len(f.aliases) for f in files.values()),
        "loose_uses": sum(lo for v in found.values() for _, lo in v),
        "with_uses_outside_tests": sum(
            any(not files[u.path].test for u, _ in found[d]) for d in used
        ),
    }
    return Anchors(names, lines, of_chunk, stats)


# ---------------------------------------------------------------- stemming (PostgreSQL)


async def _stems(url: str, vocab: list[str], queries: list[str]) -> tuple[dict, dict]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT w, tsvector_to_array(to_tsvector('english', w)) AS l FROM unnest($1::text[]) w",
            vocab,
        )
        stem = {r["w"]: list(r["l"]) for r in rows}
        qs = await conn.fetch(
            "SELECT q, tsvector_to_array(to_tsvector('english', q)) AS l FROM unnest($1::text[]) q",
            queries,
        )
        return stem, {r["q"]: list(r["l"]) for r in qs}
    finally:
        await conn.close()


def stemmer(vocab: list[str], queries: list[str]) -> tuple[dict, dict]:
    """word -> lexemes, and query words -> lexemes (as `lexical.query_lexemes`), from an
    embedded PostgreSQL (the index's own stemming and stop words)."""
    import pgserver

    with tempfile.TemporaryDirectory(prefix="anchors-pg-") as tmp:
        server = pgserver.get_server(Path(tmp), cleanup_mode="stop")
        try:
            return asyncio.run(_stems(server.get_uri(), vocab, queries))
        finally:
            server.cleanup()


# ---------------------------------------------------------------- the field, per pool


@dataclass
class Field:
    """Per pool and variant: (n, L, 2) counts of the query's lexemes in names/lines, and the
    candidates' field lengths (n, 2) with the corpus's mean lengths (2,)."""

    tf: dict[tuple, np.ndarray]
    length: dict[tuple, np.ndarray]
    avg: dict[tuple, np.ndarray]


def pool_fields(cps, anchors: dict[str, Anchors], stems: dict, qlex: dict) -> dict[int, Field]:
    out = {}
    for cp in cps:
        a = anchors[cp.corpus]
        counts: dict = {}
        avg: dict = {}
        for v in VARIANTS:
            counts[v] = {}
            for d in set(a.of_chunk.values()):
                nm = Counter(x for w in a.names[v].get(d, []) for x in stems[w])
                ln = Counter(x for w in a.lines[v].get(d, []) for x in stems[w])
                counts[v][d] = (nm, ln, len(a.names[v].get(d, [])), len(a.lines[v].get(d, [])))
            lens = np.array([c[2:] for c in counts[v].values()], np.float32)
            avg[v] = np.maximum(lens.mean(axis=0), 1.0)
        for p in cp.pools:
            lex = qlex[words.query_words(p.text)] if words.query_words(p.text) else []
            assert len(lex) == p.tf.shape[1], (cp.corpus, p.id, lex, p.tf.shape)
            f = Field({}, {}, avg)
            for v in VARIANTS:
                tf = np.zeros((len(p.chunk_ids), len(lex), 2), np.float32)
                ln = np.zeros((len(p.chunk_ids), 2), np.float32)
                for i, cid in enumerate(p.chunk_ids):
                    d = a.of_chunk.get(cid)
                    if d is None:
                        continue
                    nm, li, n_nm, n_li = counts[v][d]
                    ln[i] = (n_nm, n_li)
                    for j, w in enumerate(lex):
                        tf[i, j] = (nm.get(w, 0), li.get(w, 0))
                f.tf[v], f.length[v] = tf, ln
            out[id(p)] = f
    return out


@dataclass(frozen=True)
class Setting:
    tests: bool = False
    window: int = 0
    own: bool = True
    strict: bool = False
    w_names: float = 0.0
    w_lines: float = 0.0
    b: float = 0.0
    k1: float = TUNED.k1

    def label(self) -> str:
        if not (self.w_names or self.w_lines):
            return f"off k1={self.k1:g}"
        src = "code+tests" if self.tests else "code"
        return (
            f"{src}{' strict' if self.strict else ''} window={self.window}"
            f"{'' if self.own else ' -own'} names={self.w_names:g} "
            f"lines={self.w_lines:g} b={self.b:g} k1={self.k1:g}"
        )


OFF = Setting()
GRID = [OFF, Setting(k1=2.0)] + [
    Setting(t, win, own, st, wn, wl, b, k1)
    for t, win, own, st, wn, wl, b, k1 in itertools.product(
        (False, True), (0, 1), (True, False), (False, True), (0.0, 0.5, 1.0, 2.0),
        (0.0, 0.25, 0.5, 1.0, 2.0), (0.0, 0.75), (1.2, 2.0),
    )
    if (wn or wl) and (wl or own)  # `own` changes the lines field only
]  # fmt: skip


def lexical(cp: levers.CorpusPools, p: levers.Pool, f: Field, s: Setting) -> np.ndarray:
    """The tuned BM25F of every candidate with the anchor fields (`s`) added."""
    if p.tf.shape[1] == 0:
        return np.zeros(len(p.chunk_ids), np.float32)
    pr = _prep(cp, p)
    doc = np.maximum(1 - TUNED.b_doc + TUNED.b_doc * pr["doc_len"] / cp.doc_avg, 0.05)
    body = np.maximum(1 - TUNED.b_body + TUNED.b_body * pr["body_len"] / cp.body_avg, 0.05)
    tf = p.tf.copy()
    tf[:, :, 2] /= doc[:, None]
    tf[:, :, 3] /= body[:, None]
    w = tf @ np.asarray(TUNED.weights, np.float32)
    if s.w_names or s.w_lines:
        v = (s.tests, s.window, s.own, s.strict)
        norm = np.maximum(1 - s.b + s.b * f.length[v] / f.avg[v][None, :], 0.05)  # (n, 2)
        at = f.tf[v] / norm[:, None, :]
        w = w + s.w_names * at[:, :, 0] + s.w_lines * at[:, :, 1]
    score = (p.idf[None, :] * w * (s.k1 + 1) / (w + s.k1)).sum(axis=1)
    return np.where(pr["module"], score * TUNED.module, score).astype(np.float32)


# ---------------------------------------------------------------- the study


def corpus_root(name: str, roots: list[Path]) -> Path:
    for r in roots:
        if (r / name).is_dir():
            return r / name
    raise SystemExit(f"corpus {name} not found under {', '.join(map(str, roots))}")


def answer_labels(cp: levers.CorpusPools, p: levers.Pool) -> np.ndarray:
    """1 for the candidates that hold the answer (a question's first gold; a doc query's one)."""
    path, start, end = p.golds[0]
    return np.array(
        [(c.path == path and c.start_line <= end and c.end_line >= start)
         for c in (cp.chunks[i] for i in p.chunk_ids)], np.float32,
    )  # fmt: skip


def rank_changes(cps, gold, base, new) -> dict:
    """Per set: queries whose answer moved up / down, and crossings of the top-5 edge (every
    move of a question's answer)."""
    out = {}
    for s in SETS:
        up = down = into = out_of = 0
        moved = []
        for cp in cps:
            for p in cp.pools:
                if p.set != s or not gold[id(p)].any():
                    continue
                r0 = answer_rank(p, gold[id(p)], base[id(p)])
                r1 = answer_rank(p, gold[id(p)], new[id(p)])
                up += r1 < r0
                down += r1 > r0
                into += r0 >= 5 > r1
                out_of += r1 >= 5 > r0
                if (r0 < 5) != (r1 < 5) or (s == "questions" and r0 != r1):
                    moved.append({"corpus": cp.corpus, "q": p.text[:120], "from": r0 + 1,
                                  "to": r1 + 1})  # fmt: skip
        out[s] = {"up": up, "down": down, "into_top5": into, "out_of_top5": out_of,
                  "crossings": moved}  # fmt: skip
    return out


def pool_limit(cps, gold, base, anchors) -> dict:
    """Queries whose answer the default leaves out of the top 5, split by whether it is in the
    pool at all; and, for answers outside the pool, whether the answer's anchors hold any
    query word (what re-scoring the pool cannot show)."""
    out = {}
    for s in SETS:
        missed = outside = outside_with_anchor = 0
        for cp in cps:
            for p in cp.pools:
                if p.set != s:
                    continue
                y = gold[id(p)]
                if y.any() and answer_rank(p, y, base[id(p)]) < 5:
                    continue
                missed += 1
                if y.any():
                    continue
                outside += 1
                outside_with_anchor += _outside_has_anchor(cp, p, anchors[cp.corpus])
        out[s] = {"missed_top5": missed, "answer_outside_top50": outside,
                  "of_which_anchors_hold_a_query_word": outside_with_anchor}  # fmt: skip
    return out


def own_fields(c: levers.Chunk) -> words.Fields:
    """A chunk's lexical fields as the index makes them (`words.chunk_fields`), its doc comment
    and signature read back from its text (the leading comment lines; the first code line)."""
    lines = c.text.split("\n")
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("--")):
        i += 1
    doc = "\n".join(x.strip().lstrip("-") for x in lines[:i])
    signature = lines[i] if i < len(lines) else ""
    return words.chunk_fields(c.path, c.symbol, c.kind, signature, doc.strip(), c.text)


def _saturated(w: np.ndarray, idf: np.ndarray, k1: float, dead: np.ndarray) -> np.ndarray:
    """BM25F from weighted frequencies (n, L); 0 where `dead` (module code, trivial chunks)."""
    return np.where(dead, 0.0, (idf[None, :] * w * (k1 + 1) / (w + k1)).sum(axis=1))


def outside_pool(cps, anchors: dict[str, Anchors], stems: dict, qlex: dict, chosen: dict) -> dict:
    """For the questions whose answer is not in the pool: its lexical rank among every chunk of
    the corpus (BM25F of the tuned fusion, each chunk's fields rebuilt from its text), without
    and with the anchor fields of the fold's setting. The hybrid pool takes the lexical side's
    top 50, so a rank under 50 with anchors would put the answer among the candidates; the
    pools cannot show where it would end. `check`: the rebuilt score against the pools' own
    for the pools' candidates (how faithful the rebuild is)."""
    rows, diffs = [], []
    for cp in cps:
        misses = [p for p in cp.pools if p.set == "questions" and not answer_labels(cp, p).any()]
        if not misses:
            continue
        a, s = anchors[cp.corpus], chosen[cp.corpus]
        v = (s.tests, s.window, s.own, s.strict)
        latest: dict[tuple[str, int, int], int] = {}
        for cid, c in cp.chunks.items():  # the corpus as it is: the later index of a span
            key = (c.path, c.start_line, c.end_line)
            latest[key] = max(cid, latest.get(key, -1))
        ids = sorted(set(latest.values()) | {i for p in misses for i in p.chunk_ids})
        chunks = [cp.chunks[i] for i in ids]
        searchable = np.array([not words.is_trivial(c.kind, c.text) for c in chunks])
        fields = [own_fields(c) for c in chunks]
        module = np.array([c.kind in ("module", "window") for c in chunks])
        body = np.array([f.body_length for f in fields], np.float32)
        body_avg = max(float(body[searchable].mean()), 1.0)
        stemmed = [
            [Counter(x for w in t.split() for x in stems[w]) for t in (f.name, f.context, f.doc,
                                                                     f.body)]
            for f in fields
        ]  # fmt: skip
        anchor = [a.of_chunk.get(i) for i in ids]
        extra = [
            (Counter(x for w in a.names[v].get(d, []) for x in stems[w]),
             Counter(x for w in a.lines[v].get(d, []) for x in stems[w]),
             len(a.names[v].get(d, [])), len(a.lines[v].get(d, [])))
            if d else (Counter(), Counter(), 0, 0)
            for d in anchor
        ]  # fmt: skip
        lens = np.array([[e[2], e[3]] for d, e in zip(anchor, extra, strict=True) if d])
        avg = np.maximum(lens.mean(axis=0), 1.0) if len(lens) else np.ones(2)
        n = int(searchable.sum())
        for p in misses:
            lex = qlex.get(words.query_words(p.text), [])
            tf = np.array([[[st[k].get(w, 0) for k in range(4)] for w in lex] for st in stemmed],
                          np.float32).reshape(len(ids), len(lex), 4)  # fmt: skip
            df = ((tf.sum(axis=2) > 0) & searchable[:, None]).sum(axis=0)
            idf = np.where(df > 0, np.log(1 + (n - df + 0.5) / (df + 0.5)), 0.0)
            tf[:, :, 3] /= np.maximum(body / body_avg, 0.05)[:, None]
            base = tf @ np.asarray(TUNED.weights, np.float32)
            at = np.array([[[e[0].get(w, 0), e[1].get(w, 0)] for w in lex] for e in extra],
                          np.float32).reshape(len(ids), len(lex), 2)  # fmt: skip
            lens_i = np.array([[e[2], e[3]] for e in extra], np.float32)
            norm = np.maximum(1 - s.b + s.b * lens_i / avg[None, :], 0.05)
            with_a = (
                base
                + s.w_names * at[:, :, 0] / norm[:, 0, None]
                + s.w_lines * at[:, :, 1] / norm[:, 1, None]
            )

            dead = module | ~searchable
            before = _saturated(base, idf, TUNED.k1, dead)
            after = _saturated(with_a, idf, s.k1, dead)
            path, start, end = p.golds[0]
            gold = [j for j, c in enumerate(chunks)
                    if c.path == path and c.start_line <= end and c.end_line >= start]  # fmt: skip

            def rank(sc, gold=gold):
                return min(int((sc > sc[j]).sum()) + 1 for j in gold) if gold else None

            rows.append({"corpus": cp.corpus, "q": p.text[:120], "setting": s.label(),
                         "lexical_rank_before": rank(before),
                         "lexical_rank_with": rank(after)})  # fmt: skip
            pos = {i: j for j, i in enumerate(ids)}
            mine = before[[pos[i] for i in p.chunk_ids]]
            theirs = bm25f(cp, p, TUNED)
            diffs.append(float(np.abs(mine - theirs).max() / max(theirs.max(), 1e-6)))
    return {"questions": rows, "check_max_relative_diff": max(diffs) if diffs else None}


_STEMS: dict = {}
_QLEX: dict = {}


def _outside_has_anchor(cp, p, a: Anchors) -> bool:
    path, start, end = p.golds[0]
    lex = set(_QLEX.get(words.query_words(p.text), []))
    for d in set(a.of_chunk.values()):
        if d.path == path and any(x <= end and y >= start for x, y in d.spans):
            widest = (True, 1, True, False)
            ws = a.lines[widest].get(d, []) + a.names[widest].get(d, [])
            if any(x in lex for w in ws for x in _STEMS.get(w, [])):
                return True
    return False


def scorer(cps: list[levers.CorpusPools], roots: list[Path]):
    """The anchors of every corpus, the stems and query lexemes, and `scores_of(setting)`:
    pool id -> each candidate's tuned fusion with that setting's anchor fields."""
    anchors = {cp.corpus: corpus_anchors(cp, corpus_root(cp.corpus, roots)) for cp in cps}
    for name, a in anchors.items():
        log(f"{name}: {a.stats}")
    vocab = sorted(
        {w for a in anchors.values() for fld in (a.names, a.lines) for v in fld.values()
         for ws in v.values() for w in ws}
    )  # fmt: skip
    vocab = sorted(
        set(vocab)
        | {w for cp in cps for c in cp.chunks.values() for f in [own_fields(c)]
           for t in (f.name, f.context, f.doc, f.body) for w in t.split()}
    )  # fmt: skip
    queries = sorted({words.query_words(p.text) for cp in cps for p in cp.pools} - {""})
    stems, qlex = stemmer(vocab, queries)
    _STEMS.update(stems)
    _QLEX.update(qlex)
    log(f"{len(vocab)} anchor words stemmed")
    fields = pool_fields(cps, anchors, stems, qlex)

    def scores_of(s: Setting) -> dict:
        return {
            id(p): fuse_cosine(cp, p, p.cos.astype(np.float32), lexical(cp, p, fields[id(p)], s))
            for cp in cps
            for p in cp.pools
        }

    return anchors, stems, qlex, scores_of


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.anchors", description=__doc__)
    ap.add_argument("--pools", type=Path, required=True)
    ap.add_argument("--corpora", type=Path, nargs="+", required=True, help="folders of corpora")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cps = levers.load(args.pools)
    sets_in = eligible(cps)
    anchors, stems, qlex, scores_of = scorer(cps, args.corpora)
    pools = [(cp, p) for cp in cps for p in cp.pools]
    gold = {id(p): labels(cp, p) for cp, p in pools}
    answer = {id(p): answer_labels(cp, p) for cp, p in pools}
    names = [cp.corpus for cp in cps]

    def evaluate(scores: dict) -> dict:
        return evaluate_scores(cps, scores)

    def mrr(scores: dict) -> dict:
        return mrr_scores(cps, gold, scores)

    from bench.retrieval.study import fused

    base = scores_of(OFF)
    same = max(float(np.abs(base[id(p)] - fused(cp, p, TUNED)).max()) for cp, p in pools)
    log(f"anchors off vs the tuned fusion: max abs difference {same:.2e}")
    fast = {}
    for s in GRID:
        fast[s] = mrr(scores_of(s))
    log(f"grid of {len(GRID)} settings scored")
    chosen = {
        c: max(GRID, key=lambda s, c=c: objective(fast[s], [n for n in names if n != c]))
        for c in names
    }
    full = {s: evaluate(scores_of(s)) for s in {*chosen.values(), OFF}}
    loco = {c: full[chosen[c]][c] for c in names}
    held_scores = {}
    for cp in cps:
        sc = scores_of(chosen[cp.corpus])
        for p in cp.pools:
            held_scores[id(p)] = sc[id(p)]
    best_all = max(GRID, key=lambda s: objective(fast[s], names))
    by_set = {
        s.label(): {k: float(np.mean([fast[s][c][k]["MRR@10"] for c in sets_in[k]])) for k in SETS}
        for s in GRID
    }
    report = {
        "anchors": {n: a.stats for n, a in anchors.items()},
        "default": {"per_corpus": full[OFF], "mean": table(full[OFF], sets_in)},
        "anchors_loco": {"per_corpus": loco, "mean": table(loco, sets_in)},
        "chosen_per_fold": {c: s.label() for c, s in chosen.items()},
        "best_on_all": best_all.label(),
        "objective_on_all": {s.label(): objective(fast[s], names) for s in GRID},
        "mrr_on_all_by_set": by_set,
        "rank_changes": rank_changes(cps, answer, base, held_scores),
        "pool_limit": pool_limit(cps, answer, base, anchors),
        "outside_pool": outside_pool(cps, anchors, stems, qlex, chosen),
        "grid_size": len(GRID),
    }
    print_report(report, sets_in)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


COLS = {
    "doc": ("R@5", "MRR@10", "ctx@answer", "ctx_chars"),
    "questions": ("answer@5", "any@5", "MRR@10", "ctx@answer", "ctx_chars"),
}


def print_report(report: dict, sets_in: dict) -> None:
    for s in SETS:
        print(f"\n{s}: " + " ".join(COLS[s]) + f"  (per corpus: {COLS[s][0]}, MRR@10)")
        for name in ("default", "anchors_loco"):
            m, pc = report[name]["mean"][s], report[name]["per_corpus"]
            print(f"{name:<13} " + " ".join(f"{m[k]:.3f}" for k in COLS[s]) + "  " + " ".join(
                f"{c}={pc[c][s][COLS[s][0]]:.3f}/{pc[c][s]['MRR@10']:.3f}" for c in sets_in[s]
            ))  # fmt: skip
    print(f"\nchosen per fold: {json.dumps(report['chosen_per_fold'], indent=1)}")
    print(f"best on all 8: {report['best_on_all']}")
    top = sorted(report["objective_on_all"].items(), key=lambda kv: -kv[1])[:8]
    by_set = report["mrr_on_all_by_set"]
    print("MRR@10 on all 8 (objective; doc / questions), best settings and off:")
    for k, v in [*top, (OFF.label(), report["objective_on_all"][OFF.label()])]:
        print(f"  {v:.4f} ({by_set[k]['doc']:.4f} / {by_set[k]['questions']:.4f}) {k}")
    for s in SETS:
        k, v = max(by_set.items(), key=lambda kv: kv[1][s])
        print(f"  best for {s} alone: {k} ({v['doc']:.4f} / {v['questions']:.4f})")
    for s in SETS:
        rc = report["rank_changes"][s]
        print(f"{s}: answer up {rc['up']}, down {rc['down']}, into top 5 {rc['into_top5']}, "
              f"out of top 5 {rc['out_of_top5']}")  # fmt: skip
        for m in rc["crossings"]:
            if (m["from"] <= 5) == (m["to"] <= 5) and abs(m["from"] - m["to"]) < 3:
                continue
            print(f"   {m['corpus']:<14} {m['from']} -> {m['to']}: {m['q']}")
    print(f"pool limit: {report['pool_limit']}")
    out = report["outside_pool"]
    print(
        f"answers outside the pool, lexical rank over the corpus without -> with anchors "
        f"(rebuilt BM25F vs the pools': max relative diff {out['check_max_relative_diff']}):"
    )
    for r in out["questions"]:
        print(f"   {r['corpus']:<14} {r['lexical_rank_before']} -> {r['lexical_rank_with']}: "
              f"{r['q']}")  # fmt: skip
    print(f"anchors: {json.dumps(report['anchors'])}")


if __name__ == "__main__":
    sys.exit(main())
