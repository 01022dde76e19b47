"""One query's results, for tests that search once (`Victor.search` takes many queries)."""

from __future__ import annotations

from indexer.search import SearchResult
from indexer.service import Victor


async def results(victor: Victor, query: str, **options) -> list[SearchResult]:
    (found,) = await victor.search([query], **options)
    return found.results
