"""The command line of the pages written from the code (docs/configuration.md, docs/cli.md):
write the page, or with --check tell whether the committed one is stale."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path


def main(argv: list[str] | None, *, command: str, doc: str, output: Path, text: str) -> int:
    """Write `text` to `output` (or, with --check, exit 1 with a diff when they differ)."""
    parser = argparse.ArgumentParser(prog=command, description=doc.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    parser.add_argument("--output", type=Path, default=output, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    page: Path = args.output
    name = f"docs/{output.name}"
    committed = page.read_text(encoding="utf-8") if page.exists() else ""
    if args.check:
        if committed == text:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{name} (committed)",
                f"{name} (from the code)",
            )
        )
        print(f"\n{name} is stale: run `{command}` and commit it.")
        return 1
    if committed != text:
        page.write_text(text, encoding="utf-8")
        print(f"wrote {page}")
    return 0
