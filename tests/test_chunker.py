"""Tests for the Lua chunker.

Our own fixtures pin every function form line by line; the real corpora
(penlight, lume, roact) pin robustness: every file chunks, no line is lost, and
the scanner agrees with the AST wherever luaparser succeeds. The process pool runs on a
project made from our fixtures (tests/support/lua_corpus.py), so it is tested without them.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from antlr4.atn.PredictionMode import PredictionMode
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.models import Chunk, ChunkKind, FileChunks, ParseMode
from indexer.parsing import chunks as assembly
from indexer.parsing import luaparser_defs, scanner
from indexer.parsing.chunker import chunk_source
from indexer.parsing.pool import MIN_PARALLEL_CHARS, chunk_files
from tests.conftest import corpora_dir
from tests.support import tally
from tests.support.lua_corpus import SLOW, pool_corpus

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "lua"
F, M = ChunkKind.FUNCTION, ChunkKind.METHOD


CORPORA = corpora_dir()
# Tests on the real corpora fail, saying where to find them, when they are missing (conftest's
# `corpora` fixture): never a skip that lets a run pass without them.
needs_corpora = pytest.mark.usefixtures("corpora")


# The time-limit alarm can fire inside a gc callback or __del__, where Python reports and
# drops the exception; the alarm repeats and stops the parse anyway. The report goes to
# sys.unraisablehook, and the repeated alarm can land inside pytest's hook while it formats
# it, which fails the test though the parse ended as it should: these tests drop the report.
def alarm_may_hit_gc(test):
    test = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")(test)
    return pytest.mark.usefixtures("drop_unraisable")(test)


@pytest.fixture
def drop_unraisable(monkeypatch):
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def corpus_items(name: str) -> list[tuple[str, str]]:
    assert CORPORA is not None
    root = CORPORA / name
    return [
        (p.relative_to(root).as_posix(), p.read_text(encoding="utf-8", errors="replace"))
        for p in sorted(root.rglob("*.lua"))
    ]


def symbols(chunks: list[Chunk]) -> list[tuple]:
    """Function chunks as (symbol, kind, start, end, signature, doc, part)."""
    return [
        (c.symbol, c.kind, c.start_line, c.end_line, c.signature, c.doc, c.part)
        for c in chunks
        if c.kind in (F, M)
    ]


def assert_well_formed(source: str, chunks: list[Chunk], max_chars: int = 3000) -> None:
    """Texts are exact line slices, no two chunks overlap, every non-blank line is covered."""
    lines = source.split("\n")
    covered: set[int] = set()
    previous_end = 0
    for c in sorted(chunks, key=lambda c: c.start_line):
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line]), c
        assert c.start_line > previous_end, f"overlap at {c}"
        assert c.text.strip(), f"blank chunk {c}"
        assert len(c.text) <= max_chars or c.start_line == c.end_line, f"too large: {c}"
        previous_end = c.end_line
        covered.update(range(c.start_line, c.end_line + 1))
    lost = [n for n, line in enumerate(lines, 1) if line.strip() and n not in covered]
    assert not lost, f"lines not in any chunk: {lost[:20]}"


# ---------------------------------------------------------------------------------------------
# Fixtures

FORMS = [
    (
        "add",
        F,
        8,
        14,
        "local function add(a, b)",
        "Add two numbers.\n@param a first number\n@param b second number\n@return the sum",
        0,
    ),
    ("util.text.trim", F, 16, 19, "function util.text.trim(s)", "Trim spaces from both ends.", 0),
    (
        "Stack:push",
        M,
        24,
        28,
        "function Stack:push(value)",
        "Push a value onto the stack.\n@param value any",
        0,
    ),
    ("Stack.size", F, 30, 33, "Stack.size = function(self)", "Number of items.", 0),
    (
        "clamp",
        F,
        35,
        39,
        "local clamp = function(x, lo, hi)",
        "Clamp x between lo and hi.\nA block comment.",
        0,
    ),
    (
        "Stack.meta.deep.peek",
        F,
        41,
        44,
        "Stack.meta.deep.peek = function(self)",
        "Peek at the top item.",
        0,
    ),
    ("Stack.pop", F, 46, 51, 'Stack["pop"] = function(self)', "Remove the top item.", 0),
    ("M.greet", F, 54, 57, "greet = function(name)", "Format a greeting.", 0),
    ("M.sub.shout", F, 59, 62, "shout = function(s)", "Shout a string.", 0),
    ("M.sub.quoted-key", F, 63, 63, '["quoted-key"] = function()', "", 0),
    ("hidden", F, 69, 72, "local function hidden(x)", "Defined inside a do block.", 0),
    ("M.maybe", F, 76, 82, "function M.maybe(a, b)", "Pick the first truthy value.", 0),
    ("twice", F, 85, 87, "local twice <const> = function(f, x)", "", 0),
    ("outer", F, 89, 95, "local function outer()", "", 0),
    ("M.looped", F, 98, 99, "function M.looped()", "Defined inside a while loop.", 0),
    ("forms.count", F, 105, 108, "count = function(...)", "Count the arguments.", 0),
]


def test_every_form_is_its_own_chunk():
    result = chunk_source("lib/forms.lua", fixture("forms.lua"))
    assert result.mode == ParseMode.AST and result.error == ""
    assert symbols(result.chunks) == FORMS


def test_a_file_sll_prediction_rejects_is_parsed_again_in_ll_mode(monkeypatch):
    """The parser tries ANTLR's faster SLL prediction first and parses again in LL mode when
    that reports a syntax error (SLL may reject what LL accepts). Here the SLL stage is made to
    fail for real, halfway through the file: the LL stage chunks it exactly as usual, and a
    file with a genuine syntax error goes through both stages to the scanner."""
    expected = chunk_source("lib/forms.lua", fixture("forms.lua"))
    real, modes = luaparser_defs._parse_in, []

    def sll_fails_halfway(mode, source, *bounds):
        modes.append(mode)
        if mode == PredictionMode.SLL:
            source = source[: len(source) // 2]  # cut inside a function: a syntax error
        return real(mode, source, *bounds)

    monkeypatch.setattr(luaparser_defs, "_parse_in", sll_fails_halfway)
    result = chunk_source("lib/forms.lua", fixture("forms.lua"))
    assert modes == [PredictionMode.SLL, PredictionMode.LL]
    assert (result.mode, result.error, result.chunks) == (ParseMode.AST, "", expected.chunks)

    modes.clear()
    monkeypatch.setattr(luaparser_defs, "_parse_in", lambda *a: modes.append(a[0]) or real(*a))
    broken = chunk_source("lib/broken.lua", "local function f()\n  return 1 +\nend\n")
    assert modes == [PredictionMode.SLL, PredictionMode.LL]
    assert broken.mode == ParseMode.SCANNER and "line 3:0" in broken.error


@pytest.mark.parametrize(
    "variant, shift",
    [
        (lambda s: s.replace("\n", "\r\n"), 0),
        (lambda s: "\ufeff" + s, 0),
        (lambda s: "#!/usr/bin/env lua\n" + s, 1),
    ],
    ids=["crlf", "bom", "shebang"],
)
def test_crlf_bom_and_shebang_change_nothing(variant, shift):
    source = variant(fixture("forms.lua"))
    result = chunk_source("lib/forms.lua", source)
    assert result.mode == ParseMode.AST
    expected = [(s, k, a + shift, b + shift, sig, doc, p) for s, k, a, b, sig, doc, p in FORMS]
    assert symbols(result.chunks) == expected
    assert assembly.scan_chunks("lib/forms.lua", source) == result.chunks
    assert_well_formed(source, result.chunks)


def test_code_between_functions_forms_module_chunks():
    result = chunk_source("lib/forms.lua", fixture("forms.lua"))
    modules = [(c.start_line, c.end_line) for c in result.chunks if c.kind == ChunkKind.MODULE]
    assert modules == [
        (1, 6), (21, 22), (53, 53), (58, 58), (64, 68), (73, 75), (83, 83), (97, 97), (100, 104),
        (109, 109),
    ]  # fmt: skip
    assert {c.symbol for c in result.chunks if c.kind == ChunkKind.MODULE} == {"forms"}
    assert_well_formed(fixture("forms.lua"), result.chunks)


@pytest.mark.parametrize("name", ["forms.lua", "huge.lua"])
def test_scanner_matches_ast_on_fixtures(name):
    source = fixture(name)
    result = chunk_source(name, source)
    assert result.mode == ParseMode.AST
    assert assembly.scan_chunks(name, source) == result.chunks


def test_luau_file_is_chunked_by_the_scanner():
    source = fixture("luau_widget.lua")
    result = chunk_source("src/luau_widget.lua", source)
    assert result.mode == ParseMode.SCANNER
    assert "line 7" in result.error  # luaparser's complaint is kept
    assert symbols(result.chunks) == [
        (
            "Widget.new",
            F,
            12,
            19,
            "function Widget.new(name: string, size: number?)",
            "Create a widget.\n@param name the widget name",
            0,
        ),
        (
            "Widget:grow",
            M,
            21,
            26,
            "function Widget:grow(amount: number)",
            'Grow by `amount`; "end" in a string or comment must not close anything.',
            0,
        ),
        (
            "map",
            F,
            28,
            38,
            "local function map<T, U>(list: { T }, fn: (T) -> U)",
            "Map over a list, skipping nils.",
            0,
        ),
        ("Widget.describe", F, 42, 45, "Widget.describe = function(self: Widget)", "", 0),
        (
            "Widget.label",
            F,
            47,
            50,
            "Widget.label = function(self: Widget)",
            "Short label; nested if-expressions have no `end` either.",
            0,
        ),
        (
            "retry",
            F,
            52,
            60,
            "local function retry(fn: () -> boolean)",
            "Retry fn up to three times.",
            0,
        ),
        (
            "luau_widget.reset",
            F,
            66,
            69,
            "reset = function(w: Widget)",
            "Reset a widget; an end ]] inside this comment",
            0,
        ),
        (
            "luau_widget.scale",
            F,
            70,
            73,
            "scale = function(w: Widget, k: number)",
            "Scale a widget.",
            0,
        ),
    ]
    assert_well_formed(source, result.chunks)


def test_scanner_recovers_from_a_missing_end():
    source = fixture("broken.lua")
    result = chunk_source("broken.lua", source)
    assert result.mode == ParseMode.SCANNER
    got = [(s[0], s[2], s[3], s[5]) for s in symbols(result.chunks)]
    assert got == [
        ("M.first", 3, 6, "First function is fine."),
        ("M.second", 8, 12, "Second function lost the `end` of its `if`."),
        ("M.third", 14, 17, "An assigned function after the broken one."),
        ("M.fourth", 19, 22, "A missing `end` before a column-0 definition."),
        ("fifth", 24, 26, ""),
        ("util.f", 29, 32, "A stray closing brace inside a body."),
        ("util.g", 33, 33, ""),
    ]
    assert_well_formed(source, result.chunks)


def test_huge_function_is_split_into_parts_and_nested_functions():
    source = fixture("huge.lua")
    result = chunk_source("huge.lua", source)
    got = [(c.symbol, c.start_line, c.end_line, c.part) for c in result.chunks if c.kind == F]
    assert got == [
        ("report.build", 5, 13, 1),
        ("pad", 15, 22, 0),
        ("emit", 24, 31, 0),
        ("report.build", 33, 63, 2),
        ("state.summary", 65, 80, 0),
        ("report.build", 82, 101, 3),
        ("report.last_formatter", 103, 106, 0),
        ("report.build", 108, 128, 4),
        ("report.print", 130, 133, 0),
    ]
    parts = [c for c in result.chunks if c.symbol == "report.build"]
    assert {c.signature for c in parts} == {"function report.build(records, opts)"}
    assert all(c.doc.startswith("Build a plain-text report") for c in parts)
    assert_well_formed(source, result.chunks)


@pytest.mark.parametrize("max_chars", [200, 500, 1000])
def test_small_max_chars_keeps_chunks_small_and_complete(max_chars):
    for name in ["forms.lua", "huge.lua", "luau_widget.lua", "broken.lua"]:
        source = fixture(name)
        result = chunk_source(name, source, max_chars=max_chars)
        assert_well_formed(source, result.chunks, max_chars)
        assert assembly.scan_chunks(name, source, max_chars) == result.chunks


def test_nested_functions_of_a_large_function():
    source = "\n".join(
        [
            "function M.new()",
            "  local function helper() return 1 end",
            "  run(function()",
            "    local function in_anonymous() end",
            "  end)",
            "  local obj = { get = function() return helper() end }",
            "  return {",
            "    set = function(v) obj.v = v end,",
            "  }",
            "end",
        ]
    )
    result = chunk_source("m.lua", source, max_chars=80)
    assert result.mode == ParseMode.AST
    assert [(c.symbol, c.start_line, c.end_line, c.part) for c in result.chunks] == [
        ("M.new", 1, 1, 1),
        ("helper", 2, 2, 0),
        ("M.new", 3, 5, 2),
        ("obj.get", 6, 6, 0),
        ("M.new", 7, 10, 3),  # a table returned from a function body has no name
    ]
    assert assembly.scan_chunks("m.lua", source, max_chars=80) == result.chunks


def test_windows_end_at_blank_lines_when_they_can():
    source = "\n\n".join("\n".join(f"x{b}{i} = {i}" for i in range(4)) for b in range(6))
    src = scanner.load("w.lua", source)
    runs = assembly.windows(src, 1, len(src.lines), 50)
    assert runs == [(1, 4), (6, 9), (11, 14), (16, 19), (21, 24), (26, 29)]


def test_chunking_in_a_thread_works_without_the_alarm():
    source = fixture("huge.lua")
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(chunk_source, "huge.lua", source).result()
        big = pool.submit(chunk_source, "big.lua", source * 20, time_limit=0.1).result()
    assert result.mode == ParseMode.AST
    assert big.mode == ParseMode.SCANNER
    assert "cannot be parsed within 0.1s" in big.error


def test_a_long_call_chain_parses():
    """LL prediction alone needs minutes for `f()()()...` (a full-context prediction at every
    call), which sent such files to the scanner; the SLL stage reads it at once."""
    source = "local function f() return f end\nx = f" + "()" * 400 + "\n"
    result = chunk_source("chain.lua", source, time_limit=5.0)
    assert (result.mode, result.error) == (ParseMode.AST, "")
    assert [c.symbol for c in result.chunks] == ["f", "chain"]


@pytest.mark.parametrize(
    "source",
    ["x = f" + "()" * 4000 + "\n)\n", "local q = query" + ".where(1)" * 3000 + "\n)\n"],
    ids=["calls", "call-chain"],
)
def test_time_limit_holds_outside_the_main_thread(source):
    # SLL prediction stops at the stray `)`, and the LL stage then reads the whole chain
    # again until it meets it: about 1.7 (calls) and 4 ms (`.where(1)`) a link here, so 7
    # and 12 s for these, far past the limit whatever the machine (the chains of a few
    # hundred links once used took 0.7-1.2 s: on a fast day, inside it). Indexing parses
    # small batches in a thread, where no alarm can stop it: the token stream's deadline does.
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(chunk_source, "chain.lua", source, time_limit=1.0).result()
    assert result.mode == ParseMode.SCANNER
    assert "time limit of 1s" in result.error
    assert result.seconds < 3
    assert_well_formed(source, result.chunks)


def test_luaparser_noise_does_not_reach_stderr(capfd):
    chunk_source("luau_widget.lua", fixture("luau_widget.lua"))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize(
    "path, module",
    [("a/b/util.lua", "util"), ("src/init.lua", "src"), ("init.lua", "init"), ("x.luau", "x")],
)
def test_module_name(path, module):
    assert scanner.module_name(path) == module


# ---------------------------------------------------------------------------------------------
# Scanner robustness

LUA_BITS = st.sampled_from(
    [
        "function ", "local ", "end", "end\n", "if ", "then ", "else ", "do ", "while ", "repeat ",
        "until ", "return ", "M.f = ", "x", ".", ":", "(", ")", "{", "}", "[", "]", "=", ",",
        "--", "--[[", "]]", "[==[", "]==]", '"', "'", "`", "\\", "\n", "  ", "\t", "-- doc\n",
        "local function f(a) ", "function A:m() ", "t = { g = function() ", "if a then b else c",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(LUA_BITS, max_size=80).map("".join))
def test_scanner_never_raises_and_loses_nothing(source):
    chunks = assembly.scan_chunks("fuzz.lua", source, max_chars=120)
    assert_well_formed(source, chunks, 120)


@pytest.mark.parametrize(
    "source",
    [
        "(" * 100_000 + ")" * 100_000,
        "[" * 100_000 + ")" * 100_000,
        "local function f() " * 50_000,
        "local function f()\n" * 50_000,
        "x = {" + "a," * 300_000 + "}",
        "end " * 100_000,
        "x = if a then " * 50_000,
        "--[[" + "x\n" * 100_000,
    ],
)
@alarm_may_hit_gc
@pytest.mark.hardening
def test_scanner_is_fast_on_pathological_input(source):
    result = chunk_source("big.lua", source, time_limit=0.5)
    assert result.mode in (ParseMode.SCANNER, ParseMode.AST)
    assert result.seconds < 20
    assert_well_formed(source, result.chunks)


@alarm_may_hit_gc
@pytest.mark.hardening
def test_line_windows_are_the_last_resort():
    # 50,000 nested, indented, unclosed functions: too deep to assemble, still indexed.
    source = " local function f()\n" * 50_000
    result = chunk_source("deep.lua", source, time_limit=0.5)
    assert result.mode == ParseMode.LINES
    assert "chunking failed" in result.error
    assert {c.kind for c in result.chunks} == {ChunkKind.WINDOW}
    assert [c.part for c in result.chunks] == list(range(1, len(result.chunks) + 1))
    assert_well_formed(source, result.chunks)


# ---------------------------------------------------------------------------------------------
# Mutated real Lua: what an editor in the middle of a change, a bad merge or a broken
# encoding leaves in a file. The chunker runs as indexing runs it (in a thread, where the
# time limit is the token stream's deadline), and must neither raise, nor lose a line, nor
# run past its time limit.

MUTATION_TOKENS = [
    "end", "end\n", "function", "function f(", "local function g()\n", "then", "do", "until",
    "[[", "]]", "[==[", "--[==[", "]==]", "--[[", "--", '"', "'", "`", "\\", "{", "}", "(", ")",
    "\n", "\r\n", "\t", "\ufeff", "::label::", "goto label", "<const>", "<close>", "x +=",
    "if a then", "else", "return", ";", ",", "=", "\x00", "\u2028", "é",
]  # fmt: skip
FUZZ_TIME_LIMIT = 2.0
FUZZ_WALL_LIMIT = 60.0  # per example, generous: a busy 2-core machine, and the scanner after


def mutate(source: str, ops: list[tuple[str, float, float, str]]) -> str:
    """Apply edits at relative positions: delete, duplicate or swap lines, insert a token,
    truncate, or flip a byte of the UTF-8 text and decode it as indexing does."""
    from indexer.indexing.sources import decode_lua

    for kind, a, b, token in ops:
        lines = source.split("\n")
        i, j = int(a * len(lines)) % len(lines), int(b * len(lines)) % len(lines)
        if kind == "delete":
            del lines[i : i + 1 + int(b * 5)]
        elif kind == "duplicate":
            lines[i:i] = lines[i : i + 1 + int(b * 5)]
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "insert":
            col = int(b * (len(lines[i]) + 1))
            lines[i] = lines[i][:col] + token + lines[i][col:]
        elif kind == "truncate":
            return "\n".join(lines)[: int(a * len(source))]
        elif kind == "flip":
            data = bytearray(source.encode("utf-8"))
            if data:
                data[int(a * len(data)) % len(data)] ^= 1 << int(b * 8) % 8
            return decode_lua(bytes(data))
        source = "\n".join(lines)
    return source


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["delete", "duplicate", "swap", "insert", "insert", "truncate", "flip"]),
        st.floats(0, 1, allow_nan=False),
        st.floats(0, 1, allow_nan=False),
        st.sampled_from(MUTATION_TOKENS),
    ),
    min_size=1,
    max_size=6,
)


def fuzz_mutated_corpora(max_examples: int, max_size: int) -> int:
    """Run the mutation fuzz over corpus files up to max_size characters; return the number
    of examples run."""
    items = [
        item
        for name in ("penlight", "lume", "roact")
        for item in ((f"{name}/{path}", source) for path, source in corpus_items(name))
        if len(item[1]) <= max_size
    ]
    run = 0

    @settings(max_examples=max_examples, deadline=None, database=None)
    @given(st.sampled_from(items), MUTATIONS)
    def check(item, ops):
        nonlocal run
        path, original = item
        source = mutate(original, ops)
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(chunk_source, path, source, time_limit=FUZZ_TIME_LIMIT)
            result = future.result(timeout=FUZZ_WALL_LIMIT)
        assert time.monotonic() - started < FUZZ_WALL_LIMIT
        assert_well_formed(source, result.chunks)
        run += 1

    check()
    return run


@needs_corpora
def test_mutated_corpus_files_chunk_completely():
    assert fuzz_mutated_corpora(max_examples=25, max_size=12_000) == 25


@needs_corpora
@pytest.mark.hardening
def test_mutated_corpus_files_chunk_completely_at_length():
    run = fuzz_mutated_corpora(max_examples=600, max_size=200_000)
    tally.record("mutated corpus Lua through the chunker (hypothesis)", run, run)
    assert run == 600


# ---------------------------------------------------------------------------------------------
# Real corpora: every file of penlight, lume and roact (minutes here: the hardening tier)


@pytest.fixture(scope="module")
def corpus_results() -> dict[str, dict[str, FileChunks]]:
    """Every corpus chunked once, in parallel."""
    results = {}
    for name in ["penlight", "lume", "roact"]:
        items = corpus_items(name)
        results[name] = {r.path: r for r in chunk_files(items, workers=2)}
        assert sorted(results[name]) == sorted(p for p, _ in items)
    return results


@needs_corpora
@pytest.mark.hardening
def test_every_corpus_file_is_chunked(corpus_results):
    for name, results in corpus_results.items():
        modes = Counter(r.mode for r in results.values())
        assert modes[ParseMode.LINES] == 0, name
        for path, r in results.items():
            assert r.chunks, f"{name}/{path} gave no chunks"
    assert all(r.mode == ParseMode.AST for r in corpus_results["penlight"].values())
    assert all(r.mode == ParseMode.AST for r in corpus_results["lume"].values())


@needs_corpora
@pytest.mark.hardening
def test_no_line_is_lost_on_any_corpus_file(corpus_results):
    for name, results in corpus_results.items():
        sources = dict(corpus_items(name))
        for path, r in results.items():
            assert_well_formed(sources[path], r.chunks)


@needs_corpora
@pytest.mark.hardening
def test_roact_unparseable_files_get_named_functions(corpus_results):
    roact = corpus_results["roact"]
    scanned = {p for p, r in roact.items() if r.mode == ParseMode.SCANNER}
    assert {"src/Binding.lua", "src/ElementUtils.lua", "src/createReconciler.lua"} <= scanned
    for path in scanned:
        assert roact[path].error
        assert any(c.kind in (F, M) for c in roact[path].chunks), path
    binding = {c.symbol for c in roact["src/Binding.lua"].chunks}
    assert {
        "bindingPrototype:getValue",
        "BindingPublicMeta.__tostring",
        "BindingInternalApi.create",
        "BindingInternalApi.join",
    } <= binding
    reconciler = {c.symbol for c in roact["src/createReconciler.lua"].chunks}
    assert {"createReconciler", "mountVirtualNode", "updateVirtualNode"} <= reconciler


@needs_corpora
@pytest.mark.hardening
def test_scanner_matches_ast_on_every_parseable_corpus_file(corpus_results):
    checked = 0
    for name, results in corpus_results.items():
        sources = dict(corpus_items(name))
        for path, r in results.items():
            if r.mode == ParseMode.AST:
                assert assembly.scan_chunks(path, sources[path]) == r.chunks, f"{name}/{path}"
                checked += 1
    assert checked > 180


@needs_corpora
@alarm_may_hit_gc
def test_time_limit_falls_back_to_the_scanner():
    path, source = next(i for i in corpus_items("penlight") if i[0] == "lua/pl/xml.lua")
    result = chunk_source(path, source, time_limit=0.05)
    assert result.mode == ParseMode.SCANNER
    assert "time limit" in result.error
    assert result.chunks == assembly.scan_chunks(path, source)
    assert any(c.symbol == "_M.parse" for c in result.chunks)


# ---------------------------------------------------------------------------------------------
# The parser's process pool, on a project made from the fixtures (tests/support/lua_corpus.py):
# no external corpus needed, so these run wherever the suite runs.


def spawned_workers() -> list[psutil.Process]:
    """This process's parser workers (`python -m indexer.parsing.worker`)."""
    return [c for c in psutil.Process().children() if "indexer.parsing.worker" in c.cmdline()]


@pytest.fixture(scope="module")
def pool_items() -> list[tuple[str, str]]:
    items = pool_corpus(MIN_PARALLEL_CHARS)
    assert sum(len(s) for _, s in items) >= MIN_PARALLEL_CHARS  # large enough for the pool
    return items


@pytest.fixture(scope="module")
def in_process(pool_items) -> dict[str, FileChunks]:
    """The project chunked in this process, one file after another."""
    results = {r.path: r for r in chunk_files(pool_items, workers=1)}
    assert {r.mode for r in results.values()} == {ParseMode.AST, ParseMode.SCANNER}
    return results


def assert_same_results(got: dict[str, FileChunks], expected: dict[str, FileChunks]) -> None:
    assert got.keys() == expected.keys()
    for path, r in got.items():
        e = expected[path]
        assert (r.mode, r.error, r.chunks) == (e.mode, e.error, e.chunks), path


_STOPPED_PARSES = """
import pickle, sys
from luaparser.parser.LuaParser import LuaParser
from indexer.parsing.chunker import chunk_source
from indexer.parsing.pool import MIN_PARALLEL_CHARS
from tests.support.lua_corpus import pool_corpus

def states():
    return sum(len(dfa.states) for dfa in LuaParser.decisionsToDFA)

items = pool_corpus(MIN_PARALLEL_CHARS)
stopped = []  # (DFA states before, after) of each parse the time limit stopped
for i, (path, source) in enumerate(items):  # stopped at varied points while the parser learns
    before = states()
    if "time limit" in chunk_source(path, source, time_limit=0.002 * (1 + i % 10)).error:
        stopped.append((before, states()))
results = [chunk_source(path, source) for path, source in items]
sys.stdout.buffer.write(pickle.dumps((stopped, results)))
"""


def test_a_parse_stopped_by_the_time_limit_leaves_the_parser_warm_and_right(in_process):
    """ANTLR's prediction caches (its DFA) are kept when the time limit stops a parse, at
    whatever point: emptying them made the parser cold again, about twice as slow. In a fresh
    process (cold caches, so parses are stopped while the caches grow), after many stopped
    parses every file still chunks exactly as in a process where none was stopped."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", _STOPPED_PARSES], env=env, capture_output=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:].decode()
    stopped, results = pickle.loads(run.stdout)
    assert len(stopped) >= 5
    assert all(after >= before for before, after in stopped), stopped  # caches kept
    assert stopped[-1][0] > 0  # what the earlier stopped parses learned is still there
    assert_same_results({r.path: r for r in results}, in_process)


def test_two_workers_give_what_one_process_gives(pool_items, in_process):
    workers = []
    parallel = {}
    for r in chunk_files(pool_items, workers=2):
        workers = workers or spawned_workers()
        parallel[r.path] = r
    assert len(workers) == 2  # the pool ran
    assert_same_results(parallel, in_process)
    assert not spawned_workers()  # and stopped its workers


def test_a_dead_worker_loses_only_its_own_file(pool_items, in_process):
    results = {}
    for r in chunk_files(pool_items, workers=2, time_limit=120):
        if not results:  # the pool hands out work before it yields: both workers are busy
            killed = spawned_workers()
            assert killed
            for child in killed:
                child.kill()
        results[r.path] = r
    assert results.keys() == in_process.keys()
    sources = dict(pool_items)
    dead = {
        path: r
        for path, r in results.items()
        if r.mode == ParseMode.LINES and in_process[path].mode != ParseMode.LINES
    }
    # the files the killed workers were on: both were busy, but a worker may have sent its
    # file's result just before it was killed (then only one file is lost); never more than
    # two, and never one a fresh worker parsed
    assert 1 <= len(dead) <= 2
    for path, r in dead.items():
        assert r.error.startswith("worker died"), r.error
        assert all(c.kind == ChunkKind.WINDOW for c in r.chunks)
        assert_well_formed(sources[path], r.chunks)
    # fresh workers took over the rest
    alive = {p: r for p, r in in_process.items() if p not in dead}
    assert_same_results({p: r for p, r in results.items() if p not in dead}, alive)
    assert not spawned_workers()


def test_workers_that_cannot_start_leave_the_work_to_this_process(
    pool_items, in_process, monkeypatch
):
    """A worker command that exits at once (here `false` in place of the interpreter: a broken
    Python, a sandbox refusing processes) must not lose a file nor wait out the start-up
    timeout: everything is chunked in this process, as with one worker."""
    false = shutil.which("false")
    assert false
    monkeypatch.setattr(sys, "executable", false)
    started = time.monotonic()
    results = {r.path: r for r in chunk_files(pool_items, workers=2)}
    assert time.monotonic() - started < 60  # not _STARTUP_TIMEOUT per worker
    assert_same_results(results, in_process)
    assert not psutil.Process().children()


def test_a_stopped_pool_stops_its_workers_at_once(pool_items):
    """Ctrl-C during indexing sets the stop event: the workers are stopped whatever file they
    are on (a parse is not waited for), and nothing more is yielded."""
    # Two files that take luaparser minutes, padded to be the largest: a worker's second file
    # is the largest left, so once each worker has given one result both are on these.
    slow = [(f"slow/{n}.lua", SLOW + "-- " + "x" * 20_000 + "\n") for n in (1, 2)]
    stop = threading.Event()
    results = chunk_files(pool_items + slow, workers=2, time_limit=120, stop=stop)
    first, second = next(results), next(results)
    workers = spawned_workers()
    assert len(workers) == 2
    stop.set()
    started = time.monotonic()
    rest = list(results)
    # waiting for the parses would take up to the 120 s time limit
    assert time.monotonic() - started < 30, "the stopped pool waited for its workers"
    assert not {first.path, second.path} & {r.path for r in rest}
    assert not [r for r in rest if r.path.startswith("slow/")]
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_the_pool_runs_from_a_script_on_stdin(in_process):
    # Workers are `python -m indexer.parsing.worker`: unlike multiprocessing's spawn, they never
    # re-import the caller's main module, so even a script read from stdin gets its workers.
    script = """
import json
from indexer.parsing.pool import MIN_PARALLEL_CHARS, chunk_files
from tests.support.lua_corpus import pool_corpus
items = pool_corpus(MIN_PARALLEL_CHARS)
print(json.dumps({r.path: r.mode.value for r in chunk_files(items, workers=2)}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        [sys.executable, "-"], input=script, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout) == {p: r.mode.value for p, r in in_process.items()}
