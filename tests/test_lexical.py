"""Identifier splitting and the lexical fields of a chunk (pure functions, no database)."""

from __future__ import annotations

import time

import pytest

from indexer import words
from indexer.embedding.texts import name_text
from indexer.models import Chunk, ChunkKind
from indexer.store import lexical_values


def test_split_identifier():
    assert words.split_identifier("get_selection") == ["get", "selection"]
    assert words.split_identifier("getSelection") == ["get", "selection"]
    assert words.split_identifier("parseHTTPResponse") == ["parse", "http", "response"]
    assert words.split_identifier("Picker:get_selection") == ["picker", "get", "selection"]
    assert words.split_identifier("pl.List.slice2") == ["pl", "list", "slice", "2"]
    assert words.split_identifier("__index") == ["index"]


def test_words_keep_the_whole_identifier_next_to_its_parts():
    assert words.words("self:getSelection()") == ["self", "get", "selection", "getselection"]
    assert words.words("local x = y", drop_keywords=True) == ["x", "y"]


def test_module_words_skip_source_folders():
    assert words.module_words("lua/pl/List.lua") == ["pl", "list"]
    assert words.module_words("src/shop/init.lua") == ["shop"]
    expected = ["roblox", "renderer", "robloxrenderer"]
    assert words.module_words("src/RobloxRenderer.lua") == expected


def test_chunk_fields_weigh_names_apart_from_bodies():
    text = (
        "--- Return the selected entries.\n"
        "function Picker:get_selection(list)\n"
        "  return filterSelected(self.entries)\n"
        "end"
    )
    f = words.chunk_fields(
        "src/ui/picker.lua",
        "Picker:get_selection",
        "method",
        "function Picker:get_selection(list)",
        "Return the selected entries.",
        text,
    )
    assert f.name == "picker get selection getselection"
    assert f.context == "ui picker list"
    # the doc once (not again in the body), then the names the code calls
    assert f.doc == "return the selected entries filter selected filterselected"
    assert "return" not in f.body.split() and "end" not in f.body.split()  # Lua keywords
    assert "selected" in f.body.split()
    assert f.body_length == len(f.body.split())


def test_module_chunks_have_no_name_field():
    f = words.chunk_fields("a/b.lua", "b", "module", "", "", "local b = {}\nreturn b")
    assert f.name == "" and f.context == "a b"


def test_called_names_leave_out_definitions_and_builtins():
    text = "function M.f(x)\n  assert(x)\n  return prices.lookup(x) .. List{1} .. self:emit(x)\nend"
    assert words.called_names(text) == ["prices.lookup", "List", "self:emit"]


def test_defined_names_include_nested_helpers():
    text = (
        "local function createSpy(inner)\n"
        "  local self = {}\n"
        "  self.value = function(...) end\n"
        "  function self.assertCalledWith(_, ...) end\n"
        "  local function helper<T>(x) end\n"
        "end"
    )
    assert words.defined_names(text) == [
        "createSpy",
        "self.value",
        "self.assertCalledWith",
        "helper",
    ]


def test_trivial_chunks():
    assert words.is_trivial("module", "end")
    assert words.is_trivial("module", "local M = {}")
    assert words.is_trivial("module", "return M")
    assert not words.is_trivial("module", 'local prices = require("shop.prices")\nlocal x = 1')
    assert not words.is_trivial("function", "local function f() end")


def test_symbol_terms():
    assert words.symbol_terms("Picker:get_selection") == (["Picker:get_selection"], True)
    assert words.symbol_terms("where is get_selection defined?") == (["get_selection"], True)
    assert words.symbol_terms("trim") == (["trim"], True)
    assert words.symbol_terms("how does Cart:total use the discount") == (["Cart:total"], False)
    assert words.symbol_terms("remove whitespace at both ends") == ([], False)
    # prose: identifiers are passing mentions, not lookups
    prose = "Works the other way around as is_a, and it has two ways of being used by callers"
    assert words.symbol_terms(prose) == ([], False)


def test_name_text_is_short_and_only_for_functions():
    fn = Chunk("Cart:add", ChunkKind.METHOD, "function Cart:add(sku, quantity)", "", 1, 5, "...")
    assert name_text("src/shop/cart.lua", fn) == (
        "cart add: function Cart:add(sku, quantity) in shop cart"
    )
    module = Chunk("cart", ChunkKind.MODULE, "", "", 1, 2, "local Cart = {}")
    assert name_text("src/shop/cart.lua", module) is None


@pytest.mark.parametrize(
    "text",
    [
        "local s = '" + "x" * 100_000 + "'",  # a long word (hex or base64 data): was 2 min
        "a . " * 25_000,  # a long chain that calls nothing: was 90 s
        "]." + "x." * 50_000,
        "a(" * 50_000,
        "x = function " * 10_000,
    ],
    ids=["long-word", "long-chain", "dotted", "calls", "assignments"],
)
def test_hostile_text_takes_linear_time(text):
    started = time.perf_counter()
    lexical_values("big.lua", "big", "module", "", "", text)
    lexical_values("big.lua", "f", "function", "function f()", "doc " + text[:5000], text)
    assert time.perf_counter() - started < 5


def test_definitions_after_an_index_or_a_call_are_found():
    text = "t[k].cb = function() end\nf().g = function() end\nM.a.b = function() end"
    assert words.defined_names(text) == ["cb", "g", "M.a.b"]
