"""Bad Lua files through the real `victor index`: each file is indexed, or skipped with its
reason in the summary; the run completes; the index holds exactly the right chunks, every
non-blank line of every indexed file in one of them.

The same files go through a plain folder and a git repository (read from git objects).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import git, victor_cli
from tests.support import tally
from tests.support.index_check import assert_index_holds

MAX_BYTES = 400_000  # VICTOR_MAX_FILE_BYTES for these runs
DEEP = 10_000

LUAU = b"""--!strict
type Point = { x: number, y: number }
export type Shape<T> = { points: { Point }, tag: T }
local function area<T>(s: Shape<T>): number
  local total: number = 0
  for _, p in s.points do
    if p.x < 0 then continue end
    total += p.x * p.y
  end
  return if total > 0 then total else 0
end
local greet = `hello {area}`
return { area = area }
"""

LUA54 = b"""local MAX <const> = 10
local function each(t)
  local f <close> = setmetatable({}, { __close = function() end })
  for i = 1, #t do
    if t[i] == nil then goto continue end
    print(t[i] // 2, t[i] & 0xF, t[i] ~ 1, t[i] << 2)
    ::continue::
  end
end
return { each = each, MAX = MAX }
"""


def bad_files(deep: bool = True) -> dict[str, bytes]:
    """File name -> bytes: every kind of bad input a Lua repository can hold (`deep`: also
    the 10,000-deep nestings, which take a minute to index)."""
    files = {
        "empty.lua": b"",
        "blank.lua": b"\n   \n\t\n",
        "no_final_newline.lua": b"return 1",
        "only_comments.lua": b"-- a comment\n--[[ a block\ncomment ]]\n",
        "huge.lua": b"-- filler line\n" * (MAX_BYTES // 15 + 10),
        "binary.lua": b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8,
        "late_nul.lua": b"local a = 1\n" * 1000 + b"local b = '\x00'\n",
        "utf16.lua": "local utf16 = 1\n".encode("utf-16"),
        "latin1.lua": "-- café, naïve\nlocal function grüß() return 'é' end\n".encode("latin-1"),
        "invalid_utf8.lua": b"local s = '\xff\xfe\xc3\x28'\nlocal function after_bad_bytes()\n"
        b"  return s\nend\n",
        "bom.lua": "\ufefflocal function with_bom()\n  return 1\nend\n".encode(),
        "crlf.lua": b"local function crlf()\r\n  return 1\r\nend\r\n",
        "cr_only.lua": b"local function old_mac()\r  return 1\rend\r",
        "mixed_endings.lua": b"local a = 1\r\nlocal b = 2\nlocal c = 3\rreturn a\n",
        "control_chars.lua": b"-- \x1b[31mred\x1b[0m \x07 \x7f \x0c\nlocal bell = '\x07'\n",
        "unicode.lua": "local π = 3.14\n-- 日本語 😀 \u2028 \u202e\nlocal s = 'ǅ'\n".encode(),
        "long_line.lua": b"local s = '" + b"x" * 50_000 + b"'\n",
        "shebang.lua": b"#!/usr/bin/env lua\nprint('hi')\n",
        "syntax_error.lua": b"local function broken(\n  return 1 +\nend\n"
        b"function still_found()\n  return 2\nend\n",
        "unclosed_string.lua": b"local s = [[never closed\nfunction inside() end\n",
        "unclosed_comment.lua": b"--[==[ opened\nlocal hidden = 1\n",
        "luau.lua": LUAU,
        "lua54.lua": LUA54,
        "deep_tables.lua": b"local t = " + b"{" * DEEP + b"}" * DEEP + b"\n",
        "deep_functions.lua": b"x = " + b"function() return " * DEEP + b"1" + b" end" * DEEP,
        "deep_parens.lua": b"x = " + b"(" * DEEP + b"1" + b")" * DEEP + b"\n",
        "deep_blocks.lua": b"do " * DEEP + b"end " * DEEP + b"\n",
        "deep_ifs.lua": b"if a then\n" * DEEP + b"end\n" * DEEP,
        "deep_nested_functions.lua": b"local function outer()\n"
        + b"".join(b"  " * (1 + i % 8) + b"local function f()\n" for i in range(DEEP))
        + b"end\n" * (DEEP + 1),
        # SLL prediction stops at the stray `)`; the LL stage then needs minutes for the chain
        "call_chain.lua": b"local q = query" + b".where(1)" * 400 + b"\n)\n",
        "stray_ends.lua": b"end end end\n}}})))\nlocal function after() end\n",
    }
    return files if deep else {n: d for n, d in files.items() if not n.startswith("deep_")}


# Skipped, with the reason the summary gives; every other file is indexed.
SKIPPED = {
    "huge.lua": "larger than 400000 bytes",
    "binary.lua": "binary file",
    "late_nul.lua": "binary file",
    "utf16.lua": "binary file",
}


def index_json(env: dict, target: Path, name: str) -> dict:
    done = victor_cli("index", str(target), "--name", name, "--json", env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def check_summary(summary: dict, files: dict[str, bytes], skipped: dict[str, str]) -> int:
    """Checks the run's summary; returns the number of files it accounts for."""
    reasons = dict(summary["skipped"])
    assert sorted(reasons) == sorted(skipped), reasons
    for path, reason in skipped.items():
        assert reason in reasons[path], (path, reasons[path])
    indexed = len(files) - len(skipped)
    assert summary["files_new"] == indexed
    assert sum(summary["parse_modes"].values()) == indexed
    assert summary["parse_modes"].get("lines", 0) <= 1  # deep nesting may need line windows
    # the summary says why a file was not parsed by luaparser
    errors = dict(summary["parse_errors"])
    assert all(errors.values())
    assert {"syntax_error.lua", "luau.lua", "call_chain.lua"} <= set(errors)
    return len(reasons) + summary["files_new"]


@pytest.fixture
def bad_env(cli_env) -> dict[str, str]:
    return {**cli_env, "VICTOR_MAX_FILE_BYTES": str(MAX_BYTES), "VICTOR_PARSE_TIME_LIMIT": "2"}


@pytest.mark.hardening
async def test_bad_files_in_process(settings, ollama, tmp_path):
    """The quick version for the default suite: the files but the deep ones, in process."""
    from indexer.service import open_victor

    folder = tmp_path / "bad"
    folder.mkdir()
    files = bad_files(deep=False)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    quick = settings.model_copy(update={"max_file_bytes": MAX_BYTES, "parse_time_limit": 2.0})
    async with open_victor(quick) as victor:
        report = await victor.index(str(folder), name="bad")
    check_summary(report.summary(), files, SKIPPED)
    expected = {n: d for n, d in files.items() if n not in SKIPPED}
    await assert_index_holds(settings.database_url.get_secret_value(), "bad", expected)


@pytest.mark.hardening
async def test_bad_files_in_a_folder(bad_env, ollama, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    files = bad_files()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "fifo.lua")  # would block a plain open()
    skipped = {**SKIPPED, "fifo.lua": "not a regular file"}

    summary = index_json(bad_env, folder, "bad")
    accounted = check_summary(summary, {**files, "fifo.lua": b""}, skipped)
    expected = {n: d for n, d in files.items() if n not in skipped}
    modes = await assert_index_holds(bad_env["VICTOR_DATABASE_URL"], "bad", expected)
    assert modes["lua54.lua"] in ("ast", "scanner") and modes["crlf.lua"] == "ast"

    again = index_json(bad_env, folder, "bad")  # nothing changed: nothing to do
    assert again["files_unchanged"] == len(expected) and again["texts_embedded"] == 0

    found = victor_cli("search", "--json", "after_bad_bytes", env=bad_env)
    assert json.loads(found.stdout)[0]["path"] == "invalid_utf8.lua"
    tally.record("bad Lua files, folder, `victor index`", len(files) + 1, accounted)


@pytest.mark.hardening
async def test_bad_files_in_a_git_repository(bad_env, ollama, tmp_path):
    repo = tmp_path / "bad-git"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    files = bad_files()
    for name, data in files.items():
        (repo / name).write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bad files")

    summary = index_json(bad_env, repo, "bad-git")
    accounted = check_summary(summary, files, SKIPPED)
    expected = {n: d for n, d in files.items() if n not in SKIPPED}
    await assert_index_holds(bad_env["VICTOR_DATABASE_URL"], "bad-git", expected)
    tally.record("bad Lua files, git repository, `victor index`", len(files), accounted)
