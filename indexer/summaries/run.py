"""One summary run (`victor summarize`): what it would cost, then summarise what has no summary
yet, batch by batch, each batch kept and searchable before the next is asked for.

Summaries are kept by (summariser, chunk hash), so a run after a push asks the model only about
the functions that changed, and an interrupted run (Ctrl-C, a crash, the model gone) keeps every
batch it finished: the next run goes on from there. Setting a chunk's summary takes its
repository's lock, the one an index run holds: the two never write the same chunks at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import asyncpg

from indexer import store
from indexer.config import Settings
from indexer.errors import VictorError
from indexer.indexing.run import NoProgress, Progress
from indexer.store import summaries as stored
from indexer.summaries.client import ChatSummariser, Summary
from indexer.summaries.prompt import (
    TYPICAL_OUTPUT_TOKENS,
    Subject,
    input_tokens,
    summariser_key,
)

log = logging.getLogger(__name__)

BATCH_PER_REQUEST_SLOT = 8  # a batch is concurrency x this many requests, kept in one go


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a run would ask the model, before it asks."""

    summariser: str
    to_summarise: int  # functions (distinct texts) without a summary: one request each
    already: int  # functions of the scope already summarised by this summariser
    input_tokens: int  # estimated (prompt.CHARS_PER_TOKEN)
    output_tokens: int  # typical: a sentence or two each
    output_tokens_max: int  # bound: VICTOR_SUMMARY_MAX_TOKENS each

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SummaryReport:
    summarised: int = 0  # new summaries written by the model
    applied: int = 0  # chunks whose searched summary changed
    input_tokens: int = 0  # as the model reported them
    output_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


async def estimate(pool: asyncpg.Pool, settings: Settings, repo_ids: list[int] | None) -> Estimate:
    key = summariser_key(settings)
    todo = await stored.todo(pool, key, repo_ids)
    n = len(todo.ids)
    return Estimate(
        summariser=key,
        to_summarise=n,
        already=todo.done,
        input_tokens=input_tokens(todo.chars, n),
        output_tokens=n * TYPICAL_OUTPUT_TOKENS,
        output_tokens_max=n * settings.summary_max_tokens,
    )


async def summarize(
    pool: asyncpg.Pool,
    settings: Settings,
    repo_ids: list[int] | None,
    *,
    progress: Progress | None = None,
) -> SummaryReport:
    """Summarise every function of the scope (`repo_ids`, None: all) that has no summary from
    the configured summariser, and make the summaries searchable."""
    started = time.monotonic()
    progress = progress or NoProgress()
    report = SummaryReport()
    async with ChatSummariser(settings) as model, store.summary_lock(pool) as held:
        if not held:
            raise VictorError("another `victor summarize` is running; wait for it to finish")
        scope = repo_ids if repo_ids is not None else [r.id for r in await store.list_repos(pool)]
        # summaries kept by an earlier run that stopped before setting them, or that an index
        # run wrote rows for meanwhile
        report.applied += await _apply(pool, model.key, scope)
        todo = await stored.todo(pool, model.key, repo_ids)
        progress.start(len(todo.ids))
        size = settings.summary_concurrency * BATCH_PER_REQUEST_SLOT
        gate = asyncio.Semaphore(settings.summary_concurrency)
        try:
            for i in range(0, len(todo.ids), size):
                batch = todo.ids[i : i + size]
                await _batch(pool, model, gate, scope, batch, report, progress)
        finally:
            report.seconds = round(time.monotonic() - started, 3)
    return report


async def after_sync(pool: asyncpg.Pool, settings: Settings, repo_id: int) -> dict:
    """Summarise what a sync left without a summary (VICTOR_SUMMARY_ON_SYNC), at most
    VICTOR_SUMMARY_SYNC_LIMIT functions: a push is cheap, a first run is asked for by hand.
    Never raises a Victor error: the sync itself succeeded, the report says what happened."""
    if not (settings.summaries_on and settings.summary_on_sync):
        return {}
    try:
        cost = await estimate(pool, settings, [repo_id])
        if cost.to_summarise > settings.summary_sync_limit:
            why = (
                f"{cost.to_summarise} functions to summarise, more than "
                f"VICTOR_SUMMARY_SYNC_LIMIT ({settings.summary_sync_limit}): run "
                "`victor summarize`"
            )
            log.warning("summaries after the sync: %s", why)
            return {"skipped": why}
        if not cost.to_summarise:
            return {"summarised": 0}
        return (await summarize(pool, settings, [repo_id])).as_dict()
    except VictorError as exc:  # messages carry no key (client.py)
        log.warning("summaries after the sync failed: %s", exc)
        return {"error": str(exc)}


async def clear(pool: asyncpg.Pool, repo_ids: list[int] | None) -> int:
    """Search without summaries again (kept summaries stay: turning them back on is free)."""
    scope = repo_ids if repo_ids is not None else [r.id for r in await store.list_repos(pool)]
    return await _apply(pool, None, scope)


async def _batch(
    pool: asyncpg.Pool,
    model: ChatSummariser,
    gate: asyncio.Semaphore,
    scope: Sequence[int],
    ids: Sequence[int],
    report: SummaryReport,
    progress: Progress,
) -> None:
    rows = await stored.subjects(pool, ids)
    subjects = [Subject(bytes(r["embed_hash"]), r["path"], r["symbol"], r["text"]) for r in rows]

    async def one(subject: Subject) -> Summary:
        async with gate:
            return await model.summarise(subject)

    tasks = [asyncio.create_task(one(s)) for s in subjects]
    try:
        if tasks:  # the first failure stops the batch: a model that is down is not waited
            # for once per queued request
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    answers = [_outcome(t) for t in tasks]
    kept = [(s, a) for s, a in zip(subjects, answers, strict=True) if isinstance(a, Summary)]
    # what the model did answer is kept even when another request of the batch failed
    await stored.save(
        pool, model.key, [(s.text_hash, a.text, a.input_tokens, a.output_tokens) for s, a in kept]
    )
    report.summarised += len(kept)
    for _, a in kept:
        report.input_tokens += a.input_tokens or 0
        report.output_tokens += a.output_tokens or 0
    # every function of the scope with one of these texts (the same code in two repositories)
    report.applied += await _apply(pool, model.key, scope, [s.text_hash for s, _ in kept])
    failed = [a for a in answers if isinstance(a, BaseException)]
    progress.advance(len(kept) if failed else len(ids), len(kept))
    if failed:
        raise failed[0]


def _outcome(task: asyncio.Task) -> Summary | BaseException | None:
    if task.cancelled():
        return None
    return task.exception() or task.result()


async def _apply(
    pool: asyncpg.Pool,
    key: str | None,
    repo_ids: Sequence[int],
    hashes: Sequence[bytes] | None = None,
) -> int:
    """Set the summaries `key` wrote on the repositories' functions (of `hashes`, or all)."""
    if hashes is not None and not hashes:
        return 0
    changed = 0
    for repo_id in repo_ids:
        async with store.repo_lock(pool, repo_id), store.transaction(pool) as conn:
            changed += await stored.apply(conn, key, repo_id, hashes)
    return changed
