"""A Lua project large enough for the parser's process pool, made from tests/fixtures/lua.

The pool only starts for inputs of at least `MIN_PARALLEL_CHARS` characters (100,000):
more than the fixtures hold, less than is worth committing as generated text. So the
project is made at test time: copies of the four fixture files in folders pkg00, pkg01,
... until the sources are large enough. Two of the files parse with luaparser and two need
the scanner (Luau, a missing `end`), so both parse paths run in the workers; each copy has
its own path, hence its own module name and chunks.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lua"

# luaparser needs minutes for these few hundred bytes: a file a worker is surely still busy
# with when a test kills it (its time limit stops it otherwise). SLL prediction reads the chain
# at once and stops at the stray `)`; the LL stage then needs minutes for the chain.
SLOW = "x = f" + "()" * 400 + "\n)\n"


def pool_corpus(min_chars: int) -> list[tuple[str, str]]:
    """(path, source) pairs holding at least `min_chars` characters of Lua."""
    files = [(f.name, f.read_text(encoding="utf-8")) for f in sorted(FIXTURES.glob("*.lua"))]
    items: list[tuple[str, str]] = []
    total = 0
    while total < min_chars:
        folder = f"pkg{len(items) // len(files):02d}"
        for name, source in files:
            items.append((f"{folder}/{name}", source))
            total += len(source)
    return items


def write(items: list[tuple[str, str]], folder: Path) -> Path:
    for rel, source in items:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return folder
