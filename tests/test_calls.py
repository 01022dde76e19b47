"""The code around a hit (indexer/search/calls.py) on a real PostgreSQL and the Ollama
stand-in: calls resolved to definitions of the same repository, callers found, ambiguous
names and tests left out, and the context it adds labelled and within the budget."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from indexer import service
from indexer.search.calls import callees, callers, neighbours
from indexer.service import open_victor

FILES = {
    "src/editor/save.lua": """\
local fs = require("editor.fs")
local M = {}

--- Save the buffer to its file.
function M.save(buf)
  local text = M.serialize(buf)
  fs.write_file(buf.path, text)
  notify("saved")
end

--- The buffer's lines as one string.
function M.serialize(buf)
  return table.concat(buf.lines, "\\n")
end

return M
""",
    "src/editor/fs.lua": """\
local fs = {}

--- Write text to a file, replacing it.
function fs.write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

return fs
""",
    "src/editor/keys.lua": """\
local save = require("editor.save")
local keys = {}

--- Run the action bound to a key.
function keys.on_key(key, buf)
  if key == "<C-s>" then
    save.save(buf)
  end
end

return keys
""",
    "spec/save_spec.lua": """\
local save = require("editor.save")
describe("save", function()
  it("writes", function()
    save.save({ path = "x", lines = {} })
  end)
end)
""",
}
# `notify` is defined in four plugins: which one M.save means cannot be told by its name
for n in range(4):
    FILES[f"src/plugins/p{n}.lua"] = (
        f"local P = {{}}\n\nfunction P.notify(msg)\n  print('p{n}', msg)\nend\n\nreturn P\n"
    )


async def _indexed(settings, root: Path, files: dict[str, str]):
    """A Victor with `files` written under `root` and indexed as a repository of its name."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    async with open_victor(settings) as victor:
        await victor.index(str(root), name=root.name)
        yield victor


@pytest.fixture
async def editor(settings, tmp_path):
    async for victor in _indexed(settings, tmp_path / "editor", FILES):
        yield victor


async def _hit(victor, symbol):
    (found,) = await victor.search([symbol], top_k=3)
    hit = found.results[0]
    assert hit.symbol == symbol
    return hit


async def test_what_a_function_calls_resolves_by_name_in_call_order(editor):
    hit = await _hit(editor, "M.save")
    async with editor.pool.acquire() as conn:
        found = await callees(conn, hit, limit=6)
    assert [(n.result.symbol, n.why) for n in found] == [
        ("M.serialize", "called by M.save"),
        ("fs.write_file", "called by M.save"),
    ]  # not one of the four `notify`s: the name alone does not say which


async def test_what_calls_a_function_leaves_tests_out(editor):
    hit = await _hit(editor, "M.save")
    async with editor.pool.acquire() as conn:
        found = await callers(conn, hit)
    assert [(n.result.symbol, n.why) for n in found] == [("keys.on_key", "calls M.save")]
    write = await _hit(editor, "fs.write_file")
    async with editor.pool.acquire() as conn:
        assert [n.result.symbol for n in await callers(conn, write)] == ["M.save"]


@pytest.mark.parametrize(
    ("mode", "added"),
    [
        ("off", []),
        ("callees", ["M.serialize; called by M.save", "fs.write_file; called by M.save"]),
        ("callers", ["keys.on_key; calls M.save"]),
        (  # callers first: what leads to the hit, then what it does
            "both",
            [
                "keys.on_key; calls M.save",
                "M.serialize; called by M.save",
                "fs.write_file; called by M.save",
            ],
        ),
    ],
)
async def test_the_context_adds_the_code_around_the_best_hit(editor, mode, added):
    hit = await _hit(editor, "M.save")
    context = await editor.assemble([hit], budget=4000, calls=mode)
    assert [s.symbol for s in context.sources] == ["M.save", *added]
    for source in context.sources:  # labelled, and every line the file's
        assert f"`{source.path}:{source.start_line}-{source.end_line} ({source.symbol})`" in (
            context.text
        )
    # with room for the hit alone, nothing is added and the hit stays whole
    tight = await editor.assemble([hit], budget=len(context.sources[0].text) + 120, calls=mode)
    assert [s.symbol for s in tight.sources] == ["M.save"]


async def test_with_a_spare_connection_both_sides_are_read_at_once(editor):
    """The callers on the spare connection while the callees are read: the same neighbours,
    in the same order, as one side after the other."""
    hit = await _hit(editor, "M.save")
    async with editor.pool.acquire() as conn, editor.pool.acquire() as spare:
        for first in ("callers", "callees"):
            one_by_one = await neighbours(conn, [hit], "both", first=first)
            at_once = await neighbours(conn, [hit], "both", first=first, spare=spare)
            assert at_once == one_by_one
            assert len(at_once) == 3


async def test_only_a_lone_chat_reads_both_sides_at_once(editor, settings, monkeypatch):
    """A lone chat takes an idle connection for the callers; with other chats in flight, or
    no connection idle, a chat reads both sides on its own: the same context either way."""
    spares: list[bool] = []
    real = service.call_neighbours

    async def spy(conn, hits, mode, **options):
        spares.append(options.get("spare") is not None)
        return await real(conn, hits, mode, **options)

    monkeypatch.setattr(service, "call_neighbours", spy)
    async with open_victor(settings, min_size=3) as victor:
        alone = await victor.retrieve("M.save", top_k=1, budget=4000)
        assert spares == [True]
        together = await asyncio.gather(
            *(victor.retrieve("M.save", top_k=1, budget=4000) for _ in range(3))
        )
        # the first of the three to get there has the other two in flight (the last may not)
        assert len(spares) == 4 and spares[1] is False
    async with open_victor(settings, min_size=1, max_size=1) as victor:
        crowded = await victor.retrieve("M.save", top_k=1, budget=4000)
        assert spares[4:] == [False]
    assert [s.symbol for s in alone.sources] == [
        "M.save",
        "keys.on_key; calls M.save",
        "M.serialize; called by M.save",
        "fs.write_file; called by M.save",
    ]
    assert all(c.text == alone.text for c in [*together, crowded])


async def test_the_setting_is_the_default_of_the_context(editor, settings):
    hit = await _hit(editor, "M.save")
    assert settings.call_context == "both"  # the default
    editor.settings = settings.model_copy(update={"call_context": "callers"})
    context = await editor.assemble([hit], budget=4000)
    assert [s.symbol for s in context.sources] == ["M.save", "keys.on_key; calls M.save"]
    retrieved = await editor.retrieve("M.save", top_k=1, budget=4000)
    assert [s.symbol for s in retrieved.sources] == ["M.save", "keys.on_key; calls M.save"]


# `L.warn` is called in 13 other modules, through a local name (`log.warn`): which of those
# calls mean it cannot be told, so it gets no callers; `L.fail` is called as often, and also
# in its own file, which says which calls mean it.
COMMON = {
    "src/util/log.lua": """\
local L = {}

function L.warn(msg)
  print("warning", msg)
end

function L.fail(msg)
  error(msg)
end

function L.check(ok, msg)
  if not ok then
    L.fail(msg)
  end
end

return L
""",
}
for n in range(13):
    COMMON[f"src/mods/m{n}.lua"] = (
        f'local log = require("util.log")\nlocal m = {{}}\n\nfunction m.run{n}(x)\n'
        f'  log.warn("w{n}")\n  log.fail("f{n}")\n  return x\nend\n\nreturn m\n'
    )


@pytest.fixture
async def common(settings, tmp_path):
    async for victor in _indexed(settings, tmp_path / "common", COMMON):
        yield victor


async def test_a_name_called_everywhere_gets_callers_only_where_they_are_sure(common):
    warn, fail = await _hit(common, "L.warn"), await _hit(common, "L.fail")
    async with common.pool.acquire() as conn:
        assert await callers(conn, warn) == []
        found = await callers(conn, fail)
    assert found[0].result.symbol == "L.check"  # the sure one first
    assert len(found) == 4  # then the others, as many as a hit gets


CALLER = (
    'local L = require("lib")\nlocal M = {}\n\nfunction M.go(x)\n  return L.flush(x)\nend\n'
    "\nreturn M\n"
)


async def test_callers_that_tie_come_in_path_order(settings, tmp_path):
    """Two callers as close to the function and as long as each other come in path order,
    whatever order the index holds them in (here the later path is indexed first), so the
    context is the same on every run."""
    root = tmp_path / "tie"
    lib = "local L = {}\n\nfunction L.flush(x)\n  return x\nend\n\nreturn L\n"
    async for victor in _indexed(settings, root, {"src/lib.lua": lib, "src/z.lua": CALLER}):
        (root / "src/a.lua").write_text(CALLER)
        await victor.index(str(root), name=root.name)
        hit = await _hit(victor, "L.flush")
        async with victor.pool.acquire() as conn:
            found = await callers(conn, hit)
        assert [n.result.path for n in found] == ["src/a.lua", "src/z.lua"]
