"""Tests of the retrieval benchmark harness (bench/retrieval) on small hand-written fixtures."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from bench.retrieval import run as bench_run
from bench.retrieval.baselines import (
    BM25,
    BM25System,
    DenseSystem,
    char_chunks,
    function_chunks,
    ident_tokens,
    rrf,
    split_spans,
)
from bench.retrieval.heldout import blank_lines, write_heldout
from bench.retrieval.luascan import find_functions, tokenize
from bench.retrieval.metrics import CONTEXT_TOKENS, is_hit, score
from bench.retrieval.queries import (
    Query,
    definitions,
    doc_candidates,
    is_source_file,
    sample,
    symbol_candidates,
    symbol_forms,
)
from bench.retrieval.systems import SYSTEMS, Context, Embedder, Hit

FIXTURE = Path(__file__).parent / "fixtures" / "bench"


# ---------------------------------------------------------------- scanner


def test_scanner_finds_every_named_form_with_its_lines():
    fns = find_functions((FIXTURE / "src/shapes.lua").read_text())
    spans = {f.name: (f.form, f.start_line, f.end_line) for f in fns}
    assert spans["M.area"] == ("statement", 12, 14)
    # strings, long strings and comments containing `end`/`function` do not break matching
    assert spans["Shape:scale"] == ("statement", 22, 29)
    assert spans["clamp"] == ("local", 32, 39)  # if/elseif/end inside
    assert spans["M.max"] == ("assign", 45, 51)  # for/while/repeat inside
    assert spans["api.describe"] == ("field", 55, 57)
    assert spans["M.reserved"] == ("statement", 79, 80)
    assert [f.body_text for f in fns if f.name in ("M.reserved", "M.short")] == ["", "return 1"]


def test_scanner_handles_luau_if_expression_and_compound_assignment():
    fns = find_functions((FIXTURE / "src/widget.lua").read_text())
    assert [(f.name, f.start_line, f.end_line) for f in fns] == [
        ("Widget.new", 9, 12),
        ("Widget:add", 17, 22),
    ]


def test_tokenizer_survives_unterminated_input():
    tokens = tokenize('local s = "open\nfunction f() --[[ never closed')
    assert tokens[-1].kind == "comment"
    assert [t.text for t in tokens if t.kind == "keyword"] == ["local", "function"]


# ---------------------------------------------------------------- doc-comment queries


def test_doc_queries_pick_documented_functions_and_drop_the_rest():
    got = {q.symbol: q for q in doc_candidates(FIXTURE)}
    assert sorted(got) == [
        "M.area", "M.long_doc", "M.max", "Shape:scale", "Widget.new", "Widget:add",
        "api.describe", "clamp",
    ]  # fmt: skip
    # Dropped: TODO, licence, commented-out code, empty stub, shared summary (both
    # to_table), < 5 words, tags only, blank line before the function, module header
    # (util.lua), and everything in spec/ and vendor/.
    area = got["M.area"]
    assert (area.path, area.start_line, area.end_line) == ("src/shapes.lua", 12, 14)
    assert area.doc_lines == (8, 11)
    assert area.text == "Compute the area of a rectangle given its width and height."


def test_doc_query_text_strips_markup_tags_and_code_examples():
    got = {q.symbol: q.text for q in doc_candidates(FIXTURE)}
    assert got["Shape:scale"] == (
        "Scale a shape in place by the given factor, see area. "
        "Both width and height are multiplied."
    )
    assert got["M.max"] == "Return the larger of two numbers, preferring the first on ties."
    assert got["Widget.new"] == (
        "Creates a new widget with the given name and an empty list of children."
    )


def test_doc_query_is_cut_to_60_words():
    text = {q.symbol: q.text for q in doc_candidates(FIXTURE)}["M.long_doc"]
    words = text.split()
    assert len(words) == 60
    assert words[0] == "One" and words[-1] == "sixty"


def test_test_and_vendored_files_are_not_sources():
    assert is_source_file("src/shapes.lua")
    assert is_source_file("lua/pl/test.lua")  # a library module named test
    assert not is_source_file("spec/shapes_spec.lua")
    assert not is_source_file("tests/test-data.lua")
    assert not is_source_file("src/Binding.spec.lua")
    assert not is_source_file("vendor/json.lua")
    assert not is_source_file("src/README.md")


def test_sample_is_seeded_bounded_and_keeps_order():
    items = [Query(str(i), "t", "p", i, i) for i in range(50)]
    a, b = sample(items, 10, seed=7), sample(items, 10, seed=7)
    assert a == b and len(a) == 10
    assert [q.start_line for q in a] == sorted(q.start_line for q in a)
    assert sample(items, 10, seed=8) != a
    assert sample(items[:5], 10, seed=7) == items[:5]


# ---------------------------------------------------------------- symbol queries


def test_symbol_forms_and_queries_are_unambiguous():
    by_name = {d.fn.name: d for d in definitions(FIXTURE)}
    assert symbol_forms(by_name["Widget:add"]) == ["add", "Widget:add", "widget:add"]
    assert symbol_forms(by_name["M.area"]) == ["area", "M.area", "shapes.area"]
    assert symbol_forms(by_name["clamp"]) == ["clamp"]
    queries = symbol_candidates(FIXTURE, seed=0)
    names = {q.symbol for q in queries}
    # to_table exists twice (Shape:to_table, M.to_table): only their qualified names are unique
    for q in queries:
        name = q.text.removeprefix("where is ").removesuffix(" defined")
        assert name != "to_table"
        assert any(name in symbol_forms(d) for d in definitions(FIXTURE) if d.fn.name == q.symbol)
    assert {"M.area", "Widget.new", "clamp"} <= names
    assert "make_shape" not in names and "encode" not in names  # test / vendored files


# ---------------------------------------------------------------- held-out copy


def test_heldout_blanks_exactly_the_target_doc_lines(tmp_path):
    queries = [q for q in doc_candidates(FIXTURE) if q.symbol in ("M.area", "Widget.new")]
    dest = write_heldout(FIXTURE, queries, tmp_path / "copy")
    for rel in ("src/shapes.lua", "src/widget.lua"):
        before = (FIXTURE / rel).read_bytes().split(b"\n")
        after = (dest / rel).read_bytes().split(b"\n")
        assert len(before) == len(after)
        changed = {i + 1 for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a}
        doc = set(range(8, 12)) if rel == "src/shapes.lua" else set(range(4, 9))
        assert all(after[n - 1] == b"" for n in doc)
        assert changed == {n for n in doc if before[n - 1] != b""}  # nothing outside the doc
    # other files, and other functions' doc comments, are byte-identical
    assert (dest / "src/util.lua").read_bytes() == (FIXTURE / "src/util.lua").read_bytes()
    assert b"Scale a shape" in (dest / "src/shapes.lua").read_bytes()


def test_heldout_copy_leaves_out_a_directory_link_that_loops(tmp_path):
    """A link back to the root (ZeroBrane Studio's macOS bundle has one) would copy forever."""
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(FIXTURE, corpus)
    (corpus / "bundle").mkdir()
    (corpus / "bundle" / "root").symlink_to("..", target_is_directory=True)
    (corpus / "alias.lua").symlink_to("src/util.lua")
    queries = [q for q in doc_candidates(corpus) if q.symbol == "M.area"]
    dest = write_heldout(corpus, queries, tmp_path / "copy")
    assert (dest / "bundle").is_dir() and not (dest / "bundle" / "root").exists()
    # a file link becomes a plain copy: writing the copy never writes through a link
    assert not (dest / "alias.lua").is_symlink()
    assert (dest / "alias.lua").read_bytes() == (corpus / "src/util.lua").read_bytes()


def test_blank_lines_keeps_crlf_and_untouched_bytes():
    data = b"-- doc\r\nfunction f()\r\nend\r\n"
    assert blank_lines(data, {1}) == b"\r\nfunction f()\r\nend\r\n"
    assert blank_lines(data, {99}) == data


# ---------------------------------------------------------------- splitter and chunks


def test_splitter_matches_langchain_on_small_cases():
    # Expected values are what langchain-text-splitters 0.3.8's RecursiveCharacterTextSplitter
    # (chunk_size=12, chunk_overlap=5) returns for these texts.
    cases = {
        "alpha beta gamma\n\ndelta epsilon\nzeta eta theta iota": [
            "alpha beta", "beta gamma", "delta", "epsilon", "zeta eta", "eta theta", "iota",
        ],
        "local x = 1\nlocal y = 2\n\n\nreturn x + y\n": [
            "local x = 1", "local y = 2", "return x +", "x + y",
        ],
        "abcdefghijklmnopqrstuvwxyz": ["abcdefghijkl", "hijklmnopqrs", "opqrstuvwxyz"],
    }  # fmt: skip
    for text, expected in cases.items():
        assert [text[a:b] for a, b in split_spans(text, 12, 5)] == expected


def test_splitter_respects_size_and_overlap_on_real_looking_code():
    text = (FIXTURE / "src/shapes.lua").read_text() * 3
    spans = split_spans(text, 300, 40)
    assert len(spans) > 5
    assert all(b - a <= 300 for a, b in spans)
    for (a1, b1), (a2, b2) in itertools.pairwise(spans):
        assert a1 < a2 and b1 < b2  # in order
        assert b1 - a2 <= 40  # overlap never exceeds chunk_overlap
    # together the chunks cover every non-blank character
    covered = set()
    for a, b in spans:
        covered.update(range(a, b))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


def test_char_chunks_track_lines():
    chunks = char_chunks(FIXTURE)
    assert {c.path for c in chunks} == {
        "spec/shapes_spec.lua", "src/shapes.lua", "src/util.lua", "src/widget.lua",
        "vendor/json.lua",
    }  # fmt: skip
    for c in chunks:
        lines = (FIXTURE / c.path).read_text().split("\n")
        window = "\n".join(lines[c.start_line - 1 : c.end_line])
        assert c.text in window
        assert lines[c.start_line - 1].strip() and c.text.startswith(
            lines[c.start_line - 1].strip()
        )
        assert c.text.endswith(lines[c.end_line - 1].strip())


def test_function_chunks_hold_whole_functions_with_their_comments():
    chunks = [c for c in function_chunks(FIXTURE) if c.path == "src/shapes.lua"]
    spans = [(c.start_line, c.end_line) for c in chunks]
    assert spans[:5] == [(8, 14), (16, 29), (31, 39), (41, 51), (54, 57)]
    assert (1, 6) not in spans  # code outside functions is not indexed
    assert all(a.end_line < b.start_line for a, b in itertools.pairwise(chunks))  # no overlap
    scale = next(c for c in chunks if c.start_line == 16)
    assert scale.text.startswith("--- Scale a shape") and scale.text.endswith("return self\nend")


# ---------------------------------------------------------------- metrics


def _h(path: str, a: int, b: int, text: str = "x" * 10) -> Hit:
    return Hit(path, a, b, text, 0.0)


def test_metrics_on_a_hand_made_ranking():
    q1 = Query("1", "q1", "a.lua", 10, 20)
    q2 = Query("2", "q2", "b.lua", 5, 6)
    q3 = Query("3", "q3", "c.lua", 1, 3)
    rankings = [
        [_h("a.lua", 18, 30)],  # hit at rank 1 (overlaps lines 18-20)
        [_h("b.lua", 7, 9), _h("x.lua", 5, 6), _h("b.lua", 1, 5)],  # rank 3 (touches line 5)
        [_h("a.lua", 1, 3)] * 5 + [_h("c.lua", 3, 3)],  # rank 6: only in R@10
    ]
    m = score(rankings, [q1, q2, q3])
    assert m["n"] == 3
    assert m["R@1"] == pytest.approx(1 / 3)
    assert m["R@5"] == pytest.approx(2 / 3)
    assert m["R@10"] == pytest.approx(1.0)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 3 + 1 / 6) / 3)
    assert m["ctx_chars@5"] == pytest.approx((10 + 30 + 50) / 3)


def test_metrics_ignore_hits_below_rank_10():
    q = Query("1", "q", "a.lua", 1, 1)
    m = score([[_h("z.lua", 1, 1)] * 10 + [_h("a.lua", 1, 1)]], [q])
    assert m["R@10"] == 0 and m["MRR@10"] == 0


# ---------------------------------------------------------------- BM25 and fusion


def test_identifier_tokens_split_case_and_underscores():
    assert ident_tokens("getElementByKey") == ["getelementbykey", "get", "element", "key"]
    assert ident_tokens("remove_value(HTTPServer)") == [
        "remove_value", "remove", "value", "httpserver", "http", "server",
    ]  # fmt: skip
    assert ident_tokens("the Area of a shape") == ["area", "shape"]  # stop words dropped


def test_bm25_prefers_matching_short_documents():
    docs = [["area", "rectangle"], ["area"] + ["filler"] * 50, ["scale", "shape"]]
    s = BM25(docs).scores(["area"])
    assert s[0] > s[1] > 0 and s[2] == 0


def test_bm25_system_finds_a_function_by_its_body_words():
    system = BM25System()
    system.index(FIXTURE)
    [hits] = system.search_batch(["multiply width height factor"], 3)
    assert is_hit(hits[0], Query("scale", "", "src/shapes.lua", 22, 29))


def test_rrf_rewards_agreement():
    a, b, c = _h("a.lua", 1, 2), _h("b.lua", 1, 2), _h("c.lua", 1, 2)
    fused = rrf([[a, b, c], [b, c]], k=60)
    assert [h.path for h in fused] == ["b.lua", "c.lua", "a.lua"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


# ---------------------------------------------------------------- systems and CLI


@pytest.fixture
def victor_index(pg_admin_url, monkeypatch):
    """Victor's benchmark index on a fresh database of the test server (no second server)."""
    import asyncio

    from bench.retrieval import victor as bench_victor
    from tests.support import pg

    index = bench_victor.VictorIndex(asyncio.run(pg.create_database(pg_admin_url, "bench")))
    monkeypatch.setattr(bench_victor, "shared_index", lambda ctx: index)
    return index


def test_victor_systems_search_through_the_core(victor_index):
    systems = {m: SYSTEMS[f"victor-{m}"](Context()) for m in ("dense", "lexical", "hybrid")}
    systems["dense"].index(FIXTURE)
    assert systems["dense"].embed_seconds > 0
    systems["hybrid"].index(FIXTURE)  # shared index, nothing changed: nothing embedded
    assert systems["hybrid"].embed_seconds == 0
    source = (FIXTURE / "src" / "shapes.lua").read_text().split("\n")
    for mode, system in systems.items():
        [hits] = system.search_batch(["where is M.area defined"], 5)
        top = hits[0]
        assert (top.path, top.start_line) == ("src/shapes.lua", 8), mode
        # the text is the chunk itself: the source lines of the hit
        assert top.text == "\n".join(source[top.start_line - 1 : top.end_line])


def test_run_cli_scores_bm25_and_victor_in_one_run(victor_index, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_run, "MIN_QUERIES", 1)  # the fixture has 8 doc queries
    out = tmp_path / "r.json"
    dump = tmp_path / "dump"
    args = [str(FIXTURE), "--systems", "bm25", "victor-lexical", "--out", str(out)]
    args += ["--context-top-k", "2", "--context-tokens", "300"]
    code = bench_run.main([*args, "--dump", str(dump), "--cache", str(tmp_path / "cache")])
    assert code == 0
    report = json.loads(out.read_text())
    corpus = report["corpora"]["bench"]
    assert corpus["candidates"]["doc"] == 8
    assert corpus["results"]["bm25"]["doc"]["n"] == 8
    assert corpus["results"]["victor-lexical"]["symbol"]["R@1"] == 1.0
    assert corpus["not_run"] == {}
    # the context from fewer results, under a smaller budget, and both: never longer
    doc = corpus["results"]["victor-lexical"]["doc"]
    assert doc["ctx_chars"] > doc["ctx_chars tokens=300"] >= doc["ctx_chars top=2 tokens=300"]
    assert doc["ctx_chars"] > doc["ctx_chars top=2"] >= doc["ctx_chars top=2 tokens=300"]
    assert doc["ctx@answer"] >= doc["ctx@answer top=2"]
    # one corpus: its figures are the mean
    mean = report["mean"]["doc"]["systems"]["bm25"]
    assert mean["R@5"] == corpus["results"]["bm25"]["doc"]["R@5"] and mean["corpora"] == 1
    assert len(json.loads((dump / "bench.json").read_text())["doc"]) == 8
    printed = capsys.readouterr().out
    assert "bm25" in printed and "victor-lexical" in printed and "MEAN doc" in printed


def test_run_cli_finds_dev_corpora_by_listing_and_env(tmp_path, monkeypatch):
    """--corpora / $VICTOR_DEV_CORPORA: the corpora of dev-corpora.tsv found there, by name."""
    import shutil

    dev = tmp_path / "dev"
    for name in ("alpha", "beta", "stray"):
        shutil.copytree(FIXTURE, dev / name)
    listing = tmp_path / "dev-corpora.tsv"
    listing.write_text("# repo\tcommit\nsomeone/alpha\tabc\nother/beta\tdef\nx/missing\t0\n")
    ap = bench_run.argparse.ArgumentParser()
    monkeypatch.setenv("VICTOR_DEV_CORPORA", str(dev))
    args = bench_run.argparse.Namespace(
        corpus=[], corpora=None, shared=None, list=listing, only=None
    )
    assert [p.name for p in bench_run.find_corpora(args, ap)] == ["alpha", "beta"]
    args.only = ["beta"]
    assert [p.name for p in bench_run.find_corpora(args, ap)] == ["beta"]


def test_dense_system_with_the_real_model_embeds_once():
    embedder = Embedder()
    system = DenseSystem("owui-dense", embedder)
    system.index(FIXTURE)
    assert system.embed_seconds > 0
    [hits] = system.search_batch(["add a child widget to the list of children"], 3)
    assert hits[0].path == "src/widget.lua"
    before = embedder.seconds
    again = DenseSystem("again", embedder)
    again.index(FIXTURE)  # same texts: served from the in-memory cache
    assert again.embed_seconds == 0 and embedder.seconds == before


# ---------------------------------------------------------------- developer questions

QUESTION_FILES = sorted((Path(bench_run.__file__).parent / "questions").glob("*.toml"))
# Always on this machine and in CI: their question files must always be checked.
SHARED_CORPORA = ("penlight", "roact", "lume")


def _dev_corpus(name: str) -> Path | None:
    import os

    from tests.conftest import corpora_dir

    shared = corpora_dir()
    if name in SHARED_CORPORA:
        return shared / name if shared else None
    dev = os.environ.get("VICTOR_DEV_CORPORA")
    return Path(dev, name) if dev and Path(dev, name).is_dir() else None


def test_the_question_set_is_wide_enough():
    """At least 8 corpora with 15+ questions each, penlight and roact among them; a small
    corpus's file (a one-file library) still has enough questions to enter the mean."""
    import tomllib

    from bench.retrieval.run import MIN_QUERIES

    names = {f.stem for f in QUESTION_FILES}
    assert {"penlight", "roact"} <= names and len(names) >= 8
    sizes = {}
    for f in QUESTION_FILES:
        data = tomllib.loads(f.read_text())
        assert data["corpus"] == f.stem
        sizes[f.stem] = len(data["q"])
        assert sizes[f.stem] >= MIN_QUERIES, f.name
    assert sum(n >= 15 for n in sizes.values()) >= 8


@pytest.mark.parametrize("file", QUESTION_FILES, ids=lambda f: f.stem)
def test_every_gold_of_a_question_file_resolves(file, corpora):
    from bench.retrieval.questions import KINDS, load

    corpus = _dev_corpus(file.stem)
    if corpus is None:
        assert file.stem not in SHARED_CORPORA
        pytest.skip(f"{file.stem} not unpacked: set VICTOR_DEV_CORPORA to check its golds")
    questions = load(corpus, file)
    assert questions and all(q.kind in KINDS for q in questions)
    for q in questions:
        for g in q.golds:
            lines = (corpus / g.path).read_text(errors="replace").split("\n")
            assert g.start_line < g.end_line or g.start_line == g.end_line
            # the gold's span starts at its definition: the name is on the first line
            head = "\n".join(lines[g.start_line - 1 : g.start_line + 1])
            assert g.name.split("@")[0].split(".")[-1].split(":")[-1] in head, (q.id, g)
        # the question never names its answer
        answer = q.golds[0].name.split("@")[0].split(".")[-1].split(":")[-1]
        assert answer.lower() not in q.text.lower().split(), q.id


def test_a_gold_that_does_not_resolve_is_reported(tmp_path):
    from bench.retrieval.questions import GoldError, load

    f = tmp_path / "bench.toml"
    f.write_text(
        'corpus = "bench"\n[[q]]\nid = "a"\nkind = "how"\ntext = "area?"\n'
        'gold = [["src/shapes.lua", "M.area"], ["src/shapes.lua", "M.nope"]]\n'
        '[[q]]\nid = "b"\nkind = "guess"\ntext = "x"\ngold = [["nowhere.lua", "f"]]\n'
    )
    with pytest.raises(GoldError) as e:
        load(FIXTURE, f)
    msg = str(e.value)
    assert "a: src/shapes.lua: no function 'M.nope'" in msg
    assert "b: kind 'guess'" in msg and "b: nowhere.lua: no such file" in msg


def test_question_metrics_count_the_answer_and_any_gold():
    from bench.retrieval.metrics import question_score
    from bench.retrieval.questions import Gold, Question

    golds = (Gold("a.lua", "f", 10, 20), Gold("b.lua", "g", 1, 5))
    q1 = Question("q1", "how", "?", golds)
    q2 = Question("q2", "why", "?", golds)
    other = _h("c.lua", 1, 2)
    rankings = [
        [other, _h("b.lua", 3, 4), other, other, other, _h("a.lua", 15, 16)],  # answer at 6
        [_h("a.lua", 1, 30)],  # answer first (overlap)
    ]
    m = question_score(rankings, [q1, q2])
    assert m["answer@5"] == 0.5 and m["any@5"] == 1.0 and m["any@10"] == 1.0
    assert m["MRR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["answer@5 how"] == 0.0 and m["answer@5 why"] == 1.0


def test_gold_in_context_follows_the_floor_and_budget():
    from bench.retrieval.metrics import context_score
    from bench.retrieval.questions import Gold, Question

    q = Question("q", "how", "?", (Gold("a.lua", "f", 10, 12),))
    weak = Hit("a.lua", 10, 12, "local x = 1\nreturn x\nend", 0.1)
    strong = Hit("b.lua", 1, 3, "print(1)\nprint(2)\nprint(3)", 0.9)
    kept = context_score([[strong, weak]], [q], min_score=None)
    assert kept["ctx@answer"] == 1.0 and kept["ctx_chars"] > 0
    floored = context_score([[strong, weak]], [q], min_score=0.2)
    assert floored["ctx@answer"] == 0.0  # below the floor: not sent
    # Victor's rule: the floor asks whether the best result passes, then all of them go
    assert context_score([[strong, weak]], [q], min_score=0.2, gated=True)["ctx@answer"] == 1.0
    assert context_score([[weak, weak]], [q], min_score=0.2, gated=True)["ctx_chars"] == 0
    huge = Hit("b.lua", 1, 4000, "x = 1\n" * 4000, 0.9)
    budget = context_score([[huge, weak]], [q], min_score=None)
    assert budget["ctx_chars"] <= CONTEXT_TOKENS * 3.5  # the filter's budget


def test_embedding_cache_round_trips_and_keys_by_model(tmp_path):
    import numpy as np

    from bench.retrieval.cache import VectorCache

    cache = VectorCache(tmp_path)
    cache.put_many("m1", [("hello", [0.6, 0.8])])
    got = VectorCache(tmp_path).get_many("m1", ["hello", "other"])
    assert list(got) == ["hello"] and np.allclose(got["hello"], [0.6, 0.8])
    assert VectorCache(tmp_path).get_many("m2", ["hello"]) == {}


def test_a_corpus_with_too_few_queries_stays_out_of_the_mean():
    few = {"n": bench_run.MIN_QUERIES - 1, "R@5": 1.0}
    enough = {"n": bench_run.MIN_QUERIES, "R@5": 0.5}
    per_corpus = {
        "small": {"candidates": {"doc": few["n"]}, "results": {"bm25": {"doc": few}}},
        "large": {"candidates": {"doc": enough["n"]}, "results": {"bm25": {"doc": enough}}},
    }
    mean = bench_run.summarise(per_corpus, ["bm25"])["doc"]
    assert mean["corpora"] == ["large"]
    assert mean["systems"]["bm25"]["R@5"] == 0.5


# ---------------------------------------------------------------- levers (offline re-scoring)


def _pools():
    import numpy as np

    from bench.retrieval import levers

    chunks = {
        1: levers.Chunk("a.lua", 1, 9, "function", "M.open_file", "x\n" * 9, 40, 0),
        2: levers.Chunk("b.lua", 1, 3, "function", "M.close", "y\n" * 3, 10, 5),
        3: levers.Chunk("spec/a_spec.lua", 1, 3, "function", "t", "z\n" * 3, 10, 0),
    }
    # one query word, found in the name of 1 and the body of 2; 3 is a test with the best cosine
    tf = np.zeros((3, 1, 4), np.float32)
    tf[2, 0, 0] = 1  # rows follow the pool's order: chunk ids 3, 2, 1
    tf[1, 0, 3] = 3
    pool = levers.Pool(
        "questions", "q", "how do I open a file", "how", [("a.lua", 2, 4)], [3, 2, 1],
        np.array([0.6, 0.5, 0.4], np.float32), 0, np.array([0.62, 0.5, 0.45], np.float32),
        np.array([2.0], np.float32), tf,
    )  # fmt: skip
    return levers.CorpusPools("c", chunks, body_avg=20.0, doc_avg=5.0, pools=[pool]), pool


def test_offline_fusion_follows_victors_formula():
    import numpy as np

    from bench.retrieval.study import Fusion, bm25f, by_score, evaluate, fused

    cp, pool = _pools()
    s = bm25f(cp, pool, Fusion())
    # the name field (weight 6) of chunk 1: idf * tf * (k1 + 1) / (tf + k1), k1 = 6
    assert s[2] == pytest.approx(2.0 * 6 * 7 / (6 + 6))
    assert s[0] == 0.0
    scores = fused(cp, pool, Fusion())
    assert scores[0] == pytest.approx(0.62 / 1.1 * 0.8)  # the test-file prior
    # cosine alone: the test file (0.62 x 0.8) falls below 0.5, stays above 0.45
    assert list(by_score(fused(cp, pool, Fusion(alpha=0.0)))) == [1, 0, 2]
    big = fused(cp, pool, Fusion(alpha=3.0))
    assert int(np.argmax(big)) == 2  # a large lexical share lifts the name match
    m = evaluate(cp, "questions", lambda p: by_score(big))
    assert m["answer@5"] == 1.0 and m["MRR@10"] == 1.0


def test_ranker_features_are_finite_and_named():
    import numpy as np

    from bench.retrieval.study import FEATURES, features, labels

    cp, pool = _pools()
    x = features(cp, pool)
    assert x.shape == (3, len(FEATURES)) and np.isfinite(x).all()
    assert list(labels(cp, pool)) == [0.0, 0.0, 1.0]


# ---------------------------------------------------------------- anchor text (anchors.py)


def test_anchor_text_is_the_code_around_uses_resolved_like_the_call_context(tmp_path):
    from bench.retrieval import anchors, levers

    files = {
        "a/editor.lua": "local M = {}\n-- saves the buffer\nfunction M.save(buf)\n"
        "  return M.save_as(buf)\nend\nreturn M\n",
        "a/other.lua": "local M = {}\nfunction M.save() end\nreturn M\n",
        "b/keys.lua": 'local editor = require("a.editor")\nlocal other = require("a.other")\n'
        "-- editor.save is bound below\n"
        'vim.keymap.set("n", "<C-s>", editor.save, { desc = "Write file" })\n'
        "local function on_key()\n  other.save()\n  local save = 1\nend\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    chunks = {
        1: levers.Chunk("a/editor.lua", 2, 5, "function", "M.save", "", 1, 0),
        2: levers.Chunk("a/other.lua", 2, 2, "function", "M.save", "", 1, 0),
        3: levers.Chunk("b/keys.lua", 5, 8, "function", "on_key", "", 1, 0),
        4: levers.Chunk("b/keys.lua", 1, 4, "module", "keys", "", 1, 0),
    }
    a = anchors.corpus_anchors(levers.CorpusPools("t", chunks, 1.0, 1.0), tmp_path)
    editor, other = a.of_chunk[1], a.of_chunk[2]
    code, code_not_own = (False, 0, True, False), (False, 0, False, False)
    # the keymap line (its string contents too) is the editor's; the comment never counts
    assert a.lines[code][editor] == [
        *["vim", "keymap", "set", "n", "c", "s", "editor", "save", "desc", "write", "file"]
    ]
    assert a.lines[code_not_own][editor] == ["vim", "keymap", "set", "n", "c", "s", "desc",
                                             "write", "file"]  # fmt: skip
    assert a.names[code][editor] == []  # used from module code, by no function
    # `other.save()` goes to the file the alias requires; `local save = 1` is not a use
    assert a.lines[code][other] == ["other", "save"]
    assert a.names[code][other] == ["on", "key", "onkey"]


def test_the_settings_retested_on_fresh_corpora_are_points_of_their_studies_grids():
    """fresh.py retests what the studies could pick, not a new setting fitted after the fact."""
    from bench.retrieval import anchors, fresh, study

    assert fresh.ANCHORS_NAMED in anchors.GRID and fresh.ANCHORS_NAMED != anchors.OFF
    grid = study.fusion_grid()
    assert any(
        (f.alpha, f.weights, f.k1, f.half, f.b_doc)
        == (fresh.FUSION_NAMED.alpha, fresh.FUSION_NAMED.weights, fresh.FUSION_NAMED.k1,
            fresh.FUSION_NAMED.half, fresh.FUSION_NAMED.b_doc)
        for f in grid
    )  # fmt: skip
