"""The held-out copy of a corpus: target doc comments blanked, everything else byte-identical.

Without this, a system would find a doc-comment query by matching the very comment it was cut
from. Lines are emptied, not removed, so every target's line numbers stay valid in the copy.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

from bench.retrieval.queries import Query


def blank_lines(data: bytes, lines: set[int]) -> bytes:
    """Empty the given 1-based lines of `data`, keeping their line ends (and a CR before LF)."""
    out = data.split(b"\n")
    for n in lines:
        if 1 <= n <= len(out):
            out[n - 1] = b"\r" if out[n - 1].endswith(b"\r") else b""
    return b"\n".join(out)


def _linked_dirs(folder: str, names: list[str]) -> set[str]:
    """Links to directories: Victor never follows them, and one may loop (ZeroBrane Studio's
    macOS bundle links back to the repository root)."""
    return {n for n in names if (Path(folder) / n).is_symlink() and (Path(folder) / n).is_dir()}


def write_heldout(corpus: Path, queries: list[Query], dest: Path) -> Path:
    """Copy `corpus` to `dest` (which must not exist) with the doc lines of `queries` blanked."""
    # file links are copied as files (never write through a link); directory links are left out
    shutil.copytree(corpus, dest, ignore=_linked_dirs)
    by_file: dict[str, set[int]] = defaultdict(set)
    for q in queries:
        first, last = q.doc_lines
        if first:
            by_file[q.path].update(range(first, last + 1))
    for rel, lines in by_file.items():
        target = dest / rel
        target.write_bytes(blank_lines(target.read_bytes(), lines))
    return dest
