"""TEMPORARY stand-in (line windows) until the real chunker lands from the chunker branch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .models import Chunk, ChunkKind, FileChunks, ParseMode

CHUNKER_VERSION = 0


def chunk_source(path: str, source: str, *, max_chars: int = 3000, time_limit=None) -> FileChunks:
    lines = source.split("\n")
    chunks = []
    for i in range(0, len(lines), 40):
        part = lines[i : i + 40]
        if any(p.strip() for p in part):
            chunks.append(
                Chunk(path, ChunkKind.WINDOW, "", "", i + 1, i + len(part), "\n".join(part))
            )
    return FileChunks(path, ParseMode.LINES, chunks)


def chunk_files(
    items: Iterable[tuple[str, str]], *, workers=None, max_chars=3000, time_limit=None
) -> Iterator[FileChunks]:
    for path, text in items:
        yield chunk_source(path, text, max_chars=max_chars)
