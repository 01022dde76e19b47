"""Context assembly: merging, order, headers, permalinks, and the budget.
tests/test_context_corpus.py checks assembled snippets against the files of a real corpus."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.links import permalink
from indexer.search import SearchResult
from indexer.search.context import budget_chars, build_context

GH = "https://github.com/acme/shop"
SHA = "0123456789abcdef0123456789abcdef01234567"


def result(path, start, end, symbol="f", score=0.5, repo="shop", commit=SHA, gh=GH):
    text = "\n".join(f"line {n} of {path}" for n in range(start, end + 1))
    return SearchResult(
        repo, path, start, end, symbol, "function", score, text, commit=commit, github_url=gh
    )


def test_header_and_permalink():
    ctx = build_context([result("src/cart.lua", 10, 14, "Cart:add")], budget=2000)
    assert "`src/cart.lua:10-14 (Cart:add)`" in ctx.text
    link = f"{GH}/blob/{SHA}/src/cart.lua#L10-L14"
    assert link in ctx.text
    (source,) = ctx.sources
    assert (source.path, source.start_line, source.end_line, source.link) == (
        "src/cart.lua",
        10,
        14,
        link,
    )
    assert source.text.startswith("line 10 of src/cart.lua")


def test_no_permalink_without_github_url_or_commit():
    ctx = build_context([result("a.lua", 1, 2, gh=None), result("b.lua", 1, 2, commit=None)])
    assert all(s.link is None for s in ctx.sources)
    assert "https://" not in ctx.text


def test_permalink_quotes_paths():
    assert permalink(GH, SHA, "src/my file.lua", 3, 3) == f"{GH}/blob/{SHA}/src/my%20file.lua#L3"


def test_duplicates_and_overlaps_are_merged():
    ctx = build_context(
        [
            result("a.lua", 10, 20, "A.x", 0.9),
            result("a.lua", 10, 20, "A.x", 0.8),  # duplicate
            result("a.lua", 15, 25, "A.y", 0.7),  # overlaps
        ],
        budget=5000,
    )
    (source,) = ctx.sources
    assert (source.start_line, source.end_line) == (10, 25)
    assert source.symbol == "A.x, A.y"
    assert ctx.text.count("line 15 of a.lua") == 1


def test_adjacent_chunks_merge_but_a_gap_no_chunk_covers_is_never_bridged():
    ctx = build_context([result("a.lua", 1, 5, "A.x", 0.9), result("a.lua", 6, 9, "A.y", 0.5)])
    (source,) = ctx.sources
    assert (source.start_line, source.end_line) == (1, 9)
    assert source.text.split("\n")[5] == "line 6 of a.lua"
    # line 6 is in no chunk: it could be `}` rather than blank, so it is not made up
    gap = build_context([result("a.lua", 1, 5, "A.x", 0.9), result("a.lua", 7, 9, "A.y", 0.5)])
    assert [s.label for s in gap.sources] == ["a.lua:1-5", "a.lua:7-9"]
    assert "\n\n" not in "".join(s.text for s in gap.sources)


def test_merge_bridges_spans_that_a_later_chunk_connects():
    ctx = build_context(
        [
            result("a.lua", 1, 5, "A", 0.9),
            result("a.lua", 12, 15, "C", 0.8),
            result("a.lua", 6, 11, "B", 0.1),
        ]
    )
    assert [(s.start_line, s.end_line) for s in ctx.sources] == [(1, 15)]


def test_best_scored_snippet_first_whatever_its_file():
    ctx = build_context(
        [
            result("b.lua", 50, 52, "B.late", 0.7),
            result("a.lua", 1, 3, "A.one", 0.8),
            result("b.lua", 1, 3, "B.early", 0.9),
        ]
    )
    assert [s.label for s in ctx.sources] == ["b.lua:1-3", "a.lua:1-3", "b.lua:50-52"]
    headers = [ctx.text.index(f"`{s.label} (") for s in ctx.sources]
    assert headers == sorted(headers)  # the text reads in the same order
    assert ctx.files == 2


def test_multiple_repositories_are_named():
    ctx = build_context([result("a.lua", 1, 2, repo="one"), result("a.lua", 1, 2, repo="two")])
    assert "`one/a.lua:1-2 (f)`" in ctx.text and "`two/a.lua:1-2 (f)`" in ctx.text


def test_long_snippet_is_truncated_to_fit():
    big = result("big.lua", 1, 400, "Big.fn", 0.9)
    ctx = build_context([big], budget=1500)
    assert len(ctx.text) <= 1500
    (source,) = ctx.sources
    assert source.start_line == 1 and source.end_line < 400
    assert "(truncated)" in source.text


def test_empty_results_give_empty_context():
    assert build_context([]).text == ""
    assert build_context([result("a.lua", 1, 3)], budget=10).text == ""


def test_token_budget_converts_conservatively():
    assert budget_chars(tokens=1000) == 3500
    assert budget_chars(chars=1234) == 1234


spans = st.tuples(
    st.sampled_from(["a.lua", "b.lua", "lib/c.lua"]),
    st.integers(1, 300),
    st.integers(0, 120),
    st.floats(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(spans, max_size=25), st.integers(0, 8000))
def test_budget_is_never_exceeded(items, budget):
    results = [result(p, s, s + n, f"S{i}", score) for i, (p, s, n, score) in enumerate(items)]
    ctx = build_context(results, budget=budget)
    assert len(ctx.text) <= budget
    for source in ctx.sources:  # every source is in the text, with its header
        assert f"{source.path}:{source.start_line}-{source.end_line}" in ctx.text
        lines = source.text.split("\n")
        if lines[-1] == "-- ... (truncated)":
            lines.pop()
        # every line in a labelled range is that line of the file, none made up
        assert lines == [
            f"line {n} of {source.path}" for n in range(source.start_line, source.end_line + 1)
        ]
    labels = [(s.path, s.start_line, s.end_line) for s in ctx.sources]
    for path in {p for p, _, _ in labels}:  # snippets of a file never overlap
        ranges = sorted((a, b) for p, a, b in labels if p == path)
        assert all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(ranges))


@settings(max_examples=300, deadline=None)
@given(st.lists(spans, min_size=1, max_size=12), st.lists(spans, max_size=8), st.integers(0, 8000))
def test_code_around_the_hits_only_fills_the_room_they_leave(items, around, budget):
    """Extra chunks (callees, callers) come after every result, never push one out, never
    overlap one, and keep the budget and the file's lines."""
    results = [result(p, s, s + n, f"S{i}", score) for i, (p, s, n, score) in enumerate(items)]
    extra = [
        result(p, s, s + n, f"E{i}; called by S0", 0.0) for i, (p, s, n, _) in enumerate(around)
    ]
    alone = build_context(results, budget=budget)
    ctx = build_context(results, budget=budget, extra=extra)
    assert len(ctx.text) <= budget
    assert ctx.sources[: len(alone.sources)] == alone.sources  # every result still there, first
    if not alone.sources:
        assert ctx.text == ""  # never a context of neighbours alone
    for source in ctx.sources[len(alone.sources) :]:
        assert source.symbol.startswith("E") and "; called by S0" in source.symbol
        assert f"`{source.path}:{source.start_line}-{source.end_line} (E" in ctx.text
    for source in ctx.sources:
        lines = source.text.split("\n")
        if lines[-1] == "-- ... (truncated)":
            lines.pop()
        assert lines == [
            f"line {n} of {source.path}" for n in range(source.start_line, source.end_line + 1)
        ]
    labels = [(s.path, s.start_line, s.end_line) for s in ctx.sources]
    for path in {p for p, _, _ in labels}:  # snippets of a file never overlap
        ranges = sorted((a, b) for p, a, b in labels if p == path)
        assert all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(ranges))


def test_code_around_the_hits_is_labelled_and_skipped_where_the_hits_show_it():
    hits = [result("src/save.lua", 10, 20, "M.save", 0.6)]
    extra = [
        result("src/save.lua", 15, 18, "M.inner; called by M.save"),  # inside the hit: shown
        result("src/io.lua", 1, 5, "write_file; called by M.save"),
        result("src/keys.lua", 30, 31, "keys.setup; calls M.save"),
    ]
    ctx = build_context(hits, budget=3000, extra=extra)
    assert [s.label for s in ctx.sources] == [
        "src/save.lua:10-20",
        "src/io.lua:1-5",
        "src/keys.lua:30-31",
    ]
    assert "`src/io.lua:1-5 (write_file; called by M.save)`" in ctx.text
    assert "`src/keys.lua:30-31 (keys.setup; calls M.save)`" in ctx.text
