"""The `victor` command line: a thin layer over `indexer.service`.

Errors a user can meet are printed as one line (`victor: error: ...`), never
as a traceback; VICTOR_DEBUG=1 shows the traceback for bug reports.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.syntax import Syntax
from rich.table import Table

from indexer import __version__, store
from indexer.config import Settings, load_settings
from indexer.errors import VictorError
from indexer.search import MODES, Found, Mode, SearchResult
from indexer.service import Victor, open_victor
from indexer.store import CONNECTION_LOST, lost


def _console(stderr: bool = False) -> Console:
    """A terminal gets rich's wrapping to its width; a pipe or a file gets whole lines (rich
    would otherwise cut them at 80 columns)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 10_000)


err = _console(stderr=True)
out = _console()


class Stopping:
    """What the running command says on Ctrl-C: at once (`now`), and once stopped (`done`).

    A command sets these to say what it keeps (`index`: the files already saved)."""

    now: Callable[[], str]
    done: Callable[[], str]

    @classmethod
    def reset(cls) -> None:
        cls.now = staticmethod(lambda: "stopping…")
        cls.done = staticmethod(lambda: "interrupted; the index is consistent (re-run to finish).")


async def _interruptible(coro: Awaitable[object]) -> object:
    """Ctrl-C cancels the command at once, saying what it finishes; a second one ends the
    process on the spot. Nothing the command waits for (an embedding request, a query, the
    parse workers) delays the first by more than a fraction of a second."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_sigint() -> None:
        if task.cancelling():
            click.echo("victor: stopped at once.", err=True)
            os._exit(130)
        err.print(f"victor: {Stopping.now()}", highlight=False)
        task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        return await coro
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def run_async(func):
    """Run an async command; turn Victor's errors into one clear line."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        Stopping.reset()
        try:
            return asyncio.run(_interruptible(func(*args, **kwargs)))
        except VictorError as exc:
            _fail(str(exc))
        except CONNECTION_LOST as exc:
            _fail(lost(exc))
        except (KeyboardInterrupt, asyncio.CancelledError):
            _interrupted()
        except BrokenPipeError:
            _closed_pipe()
        except Exception as exc:
            if os.environ.get("VICTOR_DEBUG"):
                raise
            _fail(f"unexpected {exc.__class__.__name__}: {exc} (VICTOR_DEBUG=1 shows details)")

    return wrapper


def _interrupted() -> None:
    """Exit 130 after Ctrl-C, at once. The exit hooks run (they stop the embedded
    PostgreSQL), but not the interpreter's finalisation: it would wait for, or abort on (torch
    in a daemon thread: "terminate called without an active exception"), an embedding batch
    that nobody wants any more."""
    click.echo(f"victor: error: {Stopping.done()}", err=True)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _closed_pipe() -> None:
    """The reader went away (`victor search ... | head -1`): stop quietly, as cat does. Later
    writes (the interpreter flushing stdout at exit) go to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a reader that went away


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"victor: error: {message}", err=True)
    sys.exit(code)


def settings_from(ctx: click.Context, **overrides: object) -> Settings:
    try:
        return load_settings(**(ctx.obj or {}), **overrides)
    except Exception as exc:  # pydantic ValidationError: say which variable is wrong
        _fail(f"bad configuration: {exc}")
        raise  # unreachable


@asynccontextmanager
async def opened(ctx: click.Context, **overrides: object) -> AsyncIterator[Victor]:
    """Victor for a command: settings from the environment and the global options."""
    async with open_victor(settings_from(ctx, **overrides)) as victor:
        yield victor


@click.group()
@click.version_option(__version__, prog_name="victor")
@click.option(
    "--backend",
    type=click.Choice(["ollama", "local"]),
    default=None,
    help="Embedding backend (VICTOR_EMBED_BACKEND).",
)
@click.option("--model", default=None, help="Embedding model (VICTOR_EMBED_MODEL).")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log what Victor does (skipped files, retries); -vv also the libraries' logs "
    "(the embedded PostgreSQL, HTTP).",
)
@click.pass_context
def cli(ctx: click.Context, backend: str | None, model: str | None, verbose: int) -> None:
    """Victor: index Lua code into PostgreSQL + pgvector and search it."""
    logging.basicConfig(
        level=logging.INFO if verbose > 1 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if verbose:  # Victor's own lines; libraries stay at WARNING unless -vv
        for name in ("indexer", "victor"):
            logging.getLogger(name).setLevel(logging.INFO)
    if verbose < 2:
        # While the database is down, asyncpg's pool logs a traceback at each attempt to
        # reconnect; Victor says what happened in one line of its own.
        logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    ctx.obj = {"embed_backend": backend, "embed_model": model}


async def load_model(victor: Victor) -> None:
    """The in-process model takes seconds (up to minutes on a busy machine) to load: say so,
    rather than show a progress bar stuck at 0 files."""
    if victor.settings.embed_backend != "local":
        return
    with err.status(f"loading the embedding model {victor.settings.model} (in-process)…"):
        started = time.monotonic()
        await victor.embedder.ready()
        load_documents_model = getattr(victor.embedder, "ready_for_documents", None)
        if load_documents_model is not None:
            await load_documents_model()
    err.print(
        f"loaded the embedding model {victor.settings.model} in {time.monotonic() - started:.1f} s",
        highlight=False,
    )


class RichProgress:
    """Files, chunks, rate and ETA on stderr."""

    def __init__(self, name: str):
        self.name = name
        self.chunks = 0
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[chunks]} chunks · {task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.task = None
        self.started = time.monotonic()
        self.files = 0  # saved in the index
        self.total: int | None = None

    def start(self, files: int) -> None:
        self.total = files
        self.bar.start()
        self.task = self.bar.add_task(f"indexing {self.name}", total=files, chunks=0, rate="")

    def advance(self, files: int, chunks: int) -> None:
        self.files += files
        self.chunks += chunks
        rate = self.chunks / max(time.monotonic() - self.started, 1e-6)
        self.bar.update(self.task, advance=files, chunks=self.chunks, rate=f"{rate:.0f} chunks/s")

    def stop(self) -> None:
        self.bar.stop()

    def stopping(self) -> str:
        """Said at Ctrl-C: what is kept, what is finished, what is dropped."""
        if self.total is None:
            return "stopping: nothing is being indexed yet…"
        return (
            f"stopping: {self.files} of {self.total} files are saved; finishing a batch being "
            "written, dropping what is still being parsed or embedded…"
        )

    def stopped(self) -> str:
        if self.total is None:
            return "interrupted before indexing began; the index is unchanged."
        return (
            f"interrupted: {self.files} of {self.total} files indexed and kept; the index is "
            f"consistent. Run the same command again to index the other {self.total - self.files}."
        )


@cli.command()
@click.argument("target")
@click.option("--name", help="Name of the repository in the index (default: folder/repo name).")
@click.option("--ref", help="Git ref to index (branch, tag or commit; default HEAD).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
@run_async
async def index(ctx, target: str, name: str | None, ref: str | None, as_json: bool) -> None:
    """Index a folder, a git repository or a git URL (incremental)."""
    settings = settings_from(ctx)
    progress = RichProgress(name or target)
    Stopping.now, Stopping.done = progress.stopping, progress.stopped
    async with open_victor(settings) as victor:
        await load_model(victor)
        try:
            report = await victor.index(target, name=name, ref=ref, progress=progress)
        finally:
            progress.stop()
    if report.files_new + report.files_changed + report.files_unchanged == 0:
        skipped = f" ({len(report.skipped)} files skipped)" if report.skipped else ""
        click.echo(
            f"victor: warning: no Lua file to index in {target}{skipped}; "
            "nothing was kept in the index.",
            err=True,
        )
    for notice in report.notices:
        click.echo(f"victor: note: {notice}", err=True)
    if as_json:
        out.print_json(json.dumps(report.summary()))
        return
    table = Table(
        title=f"indexed {report.repo}" + (f" @ {report.commit[:12]}" if report.commit else ""),
        show_header=False,
    )
    table.add_row(
        "files",
        f"{report.files_new} new, {report.files_changed} changed, "
        f"{report.files_unchanged} unchanged, {report.files_deleted} deleted, "
        f"{len(report.skipped)} skipped",
    )
    table.add_row(
        "chunks",
        f"{report.chunks_written} written: {report.chunks_embedded} embedded, "
        f"{report.chunks_reused} reused from cache, {report.chunks_not_embedded} not searchable",
    )
    modes = ", ".join(f"{n} {m}" for m, n in sorted(report.parse_modes.items())) or "nothing parsed"
    table.add_row("parsed", modes)
    table.add_row("time", f"{report.seconds:.1f} s")
    err.print(table)
    for item in report.skipped:
        err.print(f"  skipped {item.path}: {item.reason}", highlight=False)


BATCH_GROUP = 256  # --batch queries from a file embedded and searched per round
BATCH_TIMEOUT = 60.0  # --batch: seconds for a round's query embedding (not the chat's 3 s)
DEGRADED_EXIT = 3  # --strict: some answer came from lexical search alone


@cli.command()
@click.argument("query", required=False)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="hybrid",
    show_default=True,
    help="hybrid: embeddings + identifier-aware lexical; dense or lexical alone to compare.",
)
@click.option("-k", "--top-k", default=8, show_default=True, type=click.IntRange(1, 200))
@click.option("--repo", "repos", multiple=True, help="Only this repository (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option(
    "--batch",
    type=click.File("r", encoding="utf-8"),
    help='Many queries: JSON lines {"id", "query"} from FILE, or - for stdin (each line is '
    "answered as it arrives: a long-lived search process); prints JSON lines "
    '{"id", "mode", "results"} with results as --json prints them.',
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to wait for the query embedding before answering from lexical search "
    f"alone (default: VICTOR_QUERY_TIMEOUT for one query, {BATCH_TIMEOUT:g} for --batch).",
)
@click.option(
    "-C",
    "--context",
    default=6,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="Lines of code shown under each result, highlighted (0: locations only).",
)
@click.option("-l", "--locations", is_flag=True, help="Show only locations (same as -C 0).")
@click.option(
    "--strict",
    is_flag=True,
    help=f"Exit with status {DEGRADED_EXIT} when any answer came from lexical search alone "
    "(embedder down or slower than --timeout).",
)
@click.pass_context
@run_async
async def search(
    ctx,
    query: str | None,
    mode: Mode,
    top_k: int,
    repos: tuple[str, ...],
    as_json: bool,
    batch: TextIO | None,
    timeout: float | None,
    strict: bool,
    context: int,
    locations: bool,
) -> None:
    """Search the index for QUERY (or for every query of --batch FILE).

    Each result shows its location and its first lines of code (-C N lines; -l for
    locations only)."""
    context = 0 if locations else context
    if batch is not None and query is not None:
        _fail("give either QUERY or --batch FILE, not both.")
    if batch is not None:
        items = read_batch(batch) if _is_regular_file(batch) else None
    elif query is None or not query.strip():
        _fail("the query is empty.")
        return
    async with opened(ctx) as victor:
        for name in repos:  # an unknown repository is an error that lists the known ones
            await store.get_repo(victor.pool, name)
        if batch is not None:
            run = BatchRun(
                victor,
                mode=mode,
                top_k=top_k,
                repos=repos or None,
                timeout=timeout or BATCH_TIMEOUT,
            )
            if items is not None:
                await run.from_items(items)
            else:
                await run.from_stream(batch)
            run.finish(strict)
            return
        (found,) = await victor.search(
            [query], mode=mode, top_k=top_k, repos=repos or None, timeout=timeout
        )
    warn_degraded([found])
    if as_json:
        click.echo(json.dumps([r.to_json() for r in found.results], indent=2))
    else:
        if not found.results:
            err.print("no results")
        for r in found.results:
            out.print(
                f"[bold]{r.score:.3f}[/] {r.repo}:{r.path}:{r.start_line}-{r.end_line} "
                f"[cyan]{r.symbol}[/] ({r.kind})",
                highlight=False,
            )
            if context:
                show_code(r, context)
    if strict and found.notice:
        sys.exit(DEGRADED_EXIT)


def show_code(result: SearchResult, lines: int) -> None:
    """The first `lines` lines of a result's code, with line numbers, highlighted as Lua in a
    terminal (rich's Syntax, Pygments' Lua lexer), plain text in a pipe."""
    text = result.text.splitlines()
    shown = "\n".join(text[:lines])
    out.print(
        Syntax(
            shown,
            "lua",
            line_numbers=True,
            start_line=result.start_line,
            theme="ansi_dark",
            background_color="default",
            word_wrap=False,
        )
    )
    if len(text) > lines:
        out.print(f"    … {len(text) - lines} more lines", style="dim", highlight=False)
    out.print()


def _is_regular_file(file: TextIO) -> bool:
    """A file is read whole (checked before searching, embedded in groups); a pipe or a
    terminal is answered line by line as it arrives."""
    try:
        return stat.S_ISREG(os.fstat(file.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def parse_batch_line(line: str) -> tuple[object, str]:
    """(id, query) of one --batch line; ValueError says what is wrong with it."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(item, dict) or not isinstance(item.get("query"), str):
        raise ValueError('expected {"id": ..., "query": "..."}')
    if not item["query"].strip():
        raise ValueError("the query is empty.")
    return item.get("id"), item["query"]


def read_batch(lines: Iterable[str]) -> list[tuple[object, str]]:
    """(id, query) pairs from JSON lines; any bad line stops before searching anything."""
    items: list[tuple[object, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(parse_batch_line(line))
        except ValueError as exc:
            _fail(f"--batch line {number}: {exc}")
    return items


def _emit(row: dict) -> None:
    """One JSON line, flushed at once: the reader of a long-lived batch waits for it."""
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()


class BatchRun:
    """`victor search --batch`: one JSON line per query, in input order, each flushed; a
    lexical-only answer is said on stderr when it happens and counted for the exit status."""

    def __init__(
        self, victor: Victor, *, mode: Mode, top_k: int, repos: Sequence[str] | None, timeout: float
    ):
        self.victor = victor
        self.args = {"mode": mode, "top_k": top_k, "repos": repos, "timeout": timeout}
        self.answered = 0
        self.degraded = 0
        self.bad_lines = 0
        self.notices: set[str] = set()
        Stopping.now = lambda: f"stopping: {self._answered()} answered; no more input is read…"
        Stopping.done = lambda: f"interrupted after answering {self._answered()}."

    def _answered(self) -> str:
        return f"{self.answered} quer{'y' if self.answered == 1 else 'ies'}"

    async def answer(self, group: list[tuple[object, str]]) -> None:
        found = await self.victor.search([q for _, q in group], **self.args)
        for (qid, _), f in zip(group, found, strict=True):
            row: dict = {"id": qid, "mode": f.mode, "results": [r.to_json() for r in f.results]}
            if f.notice:
                row["notice"] = f.notice
                self.degraded += 1
                if f.notice not in self.notices:  # once per cause, when it happens
                    self.notices.add(f.notice)
                    click.echo(f"victor: warning: query {qid!r}: {f.notice}", err=True)
            _emit(row)
            self.answered += 1

    async def from_items(self, items: list[tuple[object, str]]) -> None:
        for start in range(0, len(items), BATCH_GROUP):
            await self.answer(items[start : start + BATCH_GROUP])

    async def from_stream(self, stream: TextIO) -> None:
        """Answer each line as it arrives. The lines are read by a daemon thread, so that
        Ctrl-C or the end of the process never waits for a blocked read."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def read() -> None:
            for line in stream:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read, name="victor-batch-stdin", daemon=True).start()
        number = 0
        while (line := await lines.get()) is not None:
            number += 1
            if not line.strip():
                continue
            try:
                item = parse_batch_line(line)
            except ValueError as exc:
                # a long-lived reader gets an answer for every line, and the process goes on
                self.bad_lines += 1
                click.echo(f"victor: error: --batch line {number}: {exc}", err=True)
                _emit({"id": None, "line": number, "error": str(exc)})
                continue
            await self.answer([item])

    def finish(self, strict: bool) -> None:
        if self.degraded:
            click.echo(
                f"victor: warning: {self.degraded} of {self.answered} queries were answered by "
                "lexical search alone (see each line's notice)"
                + ("" if strict else "; --strict makes this an error"),
                err=True,
            )
        if self.bad_lines:
            sys.exit(1)
        if strict and self.degraded:
            sys.exit(DEGRADED_EXIT)


def warn_degraded(found: Sequence[Found]) -> None:
    """One warning line on stderr when a search could not use the embedder."""
    notices = list(dict.fromkeys(f.notice for f in found if f.notice))
    for notice in notices:
        click.echo(f"victor: warning: {notice}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@run_async
async def status(ctx, as_json: bool) -> None:
    """Repositories in the index, their commits and counts, the model."""
    async with opened(ctx) as victor:
        space = await store.embedding_space(victor.pool)
        repos = await victor.repos()
        counts = await store.repo_counts(victor.pool)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": {
                        "name": space.model,
                        "dims": space.dims,
                        # where the model puts the probes (indexer.embedding.scale)
                        "scale": asdict(space.scale) if space.scale else None,
                    }
                    if space
                    else None,
                    "repos": [
                        {
                            "name": r.name,
                            "files": counts.get(r.id, (0, 0))[0],
                            "chunks": counts.get(r.id, (0, 0))[1],
                            "commit": r.commit_sha,
                            "indexed_at": r.indexed_at.isoformat() if r.indexed_at else None,
                            "source": r.source,
                        }
                        for r in repos
                    ],
                },
                indent=2,
            )
        )
        return
    model = f"{space.model} ({space.dims} dims)" if space else "none yet"
    out.print(f"embedding model: {model}", highlight=False)
    table = Table("repo", "files", "chunks", "commit", "last run", "source")
    for r in repos:
        files, chunks = counts.get(r.id, (0, 0))
        when = r.indexed_at.strftime("%Y-%m-%d %H:%M") if r.indexed_at else "never completed"
        table.add_row(r.name, str(files), str(chunks), (r.commit_sha or "")[:12], when, r.source)
    out.print(table)


@cli.command()
@click.argument("name")
@click.pass_context
@run_async
async def remove(ctx, name: str) -> None:
    """Remove a repository and its chunks from the index."""
    async with opened(ctx) as victor:
        await victor.remove(name)
    err.print(f"removed {name}")


@cli.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@run_async
async def reembed(ctx, yes: bool) -> None:
    """Re-embed the whole index with the configured model (after changing it)."""
    from indexer.indexing.reembed import reembed as run_reembed

    async with opened(ctx) as victor:
        recorded = await store.embedding_space(victor.pool)
        if recorded is not None and recorded.space == victor.embedder.space:
            err.print(f"the index already uses {recorded.model}; nothing to do")
            return
        old = recorded.model if recorded else "nothing"
        if not yes and not click.confirm(
            f"Re-embed every chunk with {victor.settings.model} (index now uses {old})?", err=True
        ):
            return
        progress = RichProgress("re-embedding")
        try:
            chunks, embedded = await run_reembed(victor.pool, victor.embedder, progress)
        finally:
            progress.stop()
    err.print(f"{chunks} chunks now use {victor.settings.model} ({embedded} texts embedded)")


# --- victor summarize (indexer/summaries, docs/summaries.md) --------------------------------


class SummaryProgress:
    """Functions summarised, rate and ETA on stderr."""

    def __init__(self):
        self.bar = Progress(
            TextColumn("[bold]summarising"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("functions"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
        )
        self.task = None

    def start(self, files: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("summarising", total=files)

    def advance(self, files: int, chunks: int) -> None:
        self.bar.update(self.task, advance=files)

    def stop(self) -> None:
        self.bar.stop()


@cli.command()
@click.argument("repos", nargs=-1)
@click.option("--estimate", is_flag=True, help="Only say what a run would send; ask nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--clear", is_flag=True, help="Search without summaries again (they stay kept).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate or report as JSON.")
@click.pass_context
@run_async
async def summarize(
    ctx, repos: tuple[str, ...], estimate: bool, yes: bool, clear: bool, as_json: bool
) -> None:
    """Add LLM-written summaries to functions without one (REPOS, or all): an extra searched
    field, off unless VICTOR_SUMMARY_BACKEND is set (docs/summaries.md)."""
    from indexer.summaries import run as summaries

    async with opened(ctx) as victor:
        ids = [(await store.get_repo(victor.pool, n)).id for n in repos] or None
        if clear:
            changed = await summaries.clear(victor.pool, ids)
            err.print(f"{changed} functions are searched without their summary now")
            return
        if not victor.settings.summaries_on:
            _fail(
                "summaries are off: set VICTOR_SUMMARY_BACKEND and VICTOR_SUMMARY_MODEL "
                "(docs/summaries.md)"
            )
        cost = await summaries.estimate(victor.pool, victor.settings, ids)
        if as_json and estimate:
            click.echo(json.dumps(cost.as_dict()))
            return
        if cost.to_summarise:
            err.print(
                f"{cost.to_summarise} functions to summarise with {cost.summariser} "
                f"({cost.already} already are): one request each, about {cost.input_tokens:,} "
                f"input tokens and {cost.output_tokens:,} output tokens "
                f"(at most {cost.output_tokens_max:,})"
            )
        else:
            err.print(
                f"nothing to summarise: {cost.already} functions have a summary from "
                f"{cost.summariser}"
            )
        if estimate:
            return
        # with nothing to ask, a run still sets summaries kept but not searched yet (--clear)
        if cost.to_summarise and not yes and not click.confirm("Summarise them now?", err=True):
            return
        progress = SummaryProgress()
        try:
            report = await summaries.summarize(victor.pool, victor.settings, ids, progress=progress)
        finally:
            progress.stop()
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    err.print(
        f"{report.summarised} summaries written, {report.applied} functions searched with a "
        f"new summary ({report.input_tokens:,} input / {report.output_tokens:,} output tokens "
        f"reported, {report.seconds:.1f} s)"
    )


@cli.command("init-db")
@click.pass_context
@run_async
async def init_db(ctx) -> None:
    """Create or upgrade the tables and indexes (numbered migrations; safe to run again)."""
    from indexer.redaction import redact_url
    from indexer.store import migrations

    settings = settings_from(ctx)
    url = await asyncio.to_thread(store.database_url, settings)
    conn = await store.connect_once(url)
    try:
        applied = await migrations.migrate(conn)
        last = max(await migrations.applied(conn))
        version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname='vector'")
    finally:
        await conn.close()
    now = f"{len(applied)} migrations applied now" if applied else "nothing to apply"
    err.print(
        f"schema up to date at migration {last:04d} ({now}) in {redact_url(url)} "
        f"(pgvector {version})",
        highlight=False,
    )


@cli.command()
@click.pass_context
@run_async
async def doctor(ctx) -> None:
    """Check the database, pgvector, the embedder, the model and the index."""
    from victor.doctor import run_checks

    settings = settings_from(ctx)
    ok = True
    async for check in run_checks(settings):
        mark = (
            "[yellow]skip[/]"
            if check.skipped
            else "[yellow]note[/]"
            if check.note
            else "[green]ok[/]"
            if check.ok
            else "[red]FAIL[/]"
        )
        out.print(f"{mark:>12}  {check.name}: {check.detail}", highlight=False)
        ok = ok and check.ok
    if not ok:
        sys.exit(1)


@cli.group()
def openwebui() -> None:
    """Set Victor up in Open WebUI: the "Lua Codebase" toggle, a model preset."""


@openwebui.command("install-function")
@click.option(
    "--url",
    envvar="OPEN_WEBUI_URL",
    default="http://localhost:3000",
    show_default=True,
    help="Open WebUI's address (OPEN_WEBUI_URL).",
)
@click.option(
    "--token",
    envvar="OPEN_WEBUI_TOKEN",
    required=True,
    help="An admin's API key or JWT, from Settings → Account (OPEN_WEBUI_TOKEN).",
)
@click.option(
    "--file",
    "function_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The Function's source (default: the one that comes with Victor).",
)
@click.option(
    "--global/--not-global",
    "make_global",
    default=True,
    show_default=True,
    help="Offer the toggle in the chats of every model.",
)
@click.option(
    "--preset",
    "base_model",
    metavar="BASE_MODEL_ID",
    help="Also create a model preset on this model, with the toggle on by default.",
)
@click.option("--preset-name", default="Claude · Lua", show_default=True)
@click.option("--preset-id", help="Id of the preset (default: from its name, e.g. claude-lua).")
def install_function(
    url: str,
    token: str,
    function_file: Path | None,
    make_global: bool,
    base_model: str | None,
    preset_name: str,
    preset_id: str | None,
) -> None:
    """Create or update the "Lua Codebase" toggle Function in Open WebUI."""
    from victor import openwebui as owui

    source = function_file.read_text(encoding="utf-8") if function_file else owui.function_source()
    try:
        with owui.OpenWebUI(url, token) as api:
            done = owui.install_function(api, source, make_global=make_global)
            scope = "offered in every chat" if done.is_global else "attach it to models yourself"
            err.print(f"Function {owui.FUNCTION_ID} {done.action}: active, {scope}")
            if base_model:
                pid, action = owui.install_preset(
                    api, base_model, name=preset_name, preset_id=preset_id
                )
                err.print(
                    f"Model preset {preset_name!r} ({pid}) {action} on {base_model}: "
                    "the Lua Codebase toggle is on in its new chats",
                    highlight=False,
                )
    except VictorError as exc:
        _fail(str(exc))


@cli.command()
@click.argument("name")
@click.option("--full", is_flag=True, help="Compare every file, not only the changed ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the sync summary as JSON.")
@click.pass_context
@run_async
async def sync(ctx, name: str, full: bool, as_json: bool) -> None:
    """Fetch a tracked repository and index what changed (what a push does)."""
    async with opened(ctx) as victor:
        report = await victor.sync(name, full=full)
    for notice in (report.index or {}).get("notices", []):
        click.echo(f"victor: note: {notice}", err=True)
    if as_json:
        out.print_json(json.dumps(report.summary()))
        return
    index = report.index
    err.print(
        f"{report.repo} is at {report.branch} {report.commit[:12]} ({report.mode}: {report.why})\n"
        f"  files: {index['files_new']} new, {index['files_changed']} changed, "
        f"{index['files_deleted']} deleted; chunks: {index['chunks_embedded']} embedded, "
        f"{index['chunks_reused']} reused; {index['seconds']:.1f} s",
        highlight=False,
    )
    if report.note:
        err.print(f"  note: {report.note}", highlight=False)


@cli.command()
@click.option("--drain", is_flag=True, help="Run what is queued, then exit.")
@click.pass_context
@run_async
async def worker(ctx, drain: bool) -> None:
    """Run the sync jobs queued by the webhook. SIGTERM finishes or hands back the current job."""
    from indexer.logs import setup_logging
    from indexer.sync.worker import Worker

    async with opened(ctx) as victor:
        setup_logging(victor.settings)  # Victor's lines at INFO, libraries at WARNING
        runner = Worker(victor, drain=drain)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        err.print(f"victor worker {runner.id}: waiting for jobs", highlight=False)
        await runner.run()
    err.print(f"victor worker {runner.id}: stopped after {runner.jobs_run} jobs", highlight=False)


@cli.group()
def repo() -> None:
    """Repositories followed by the GitHub webhook and `victor sync`."""


@repo.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--branch", default="main", show_default=True, help="Branch to follow.")
@click.option(
    "--github-url",
    help="https://github.com/OWNER/REPO (default: read from a github.com URL). GitHub push "
    "deliveries are matched by it and search results link to it; without one, run "
    "`victor sync NAME` to update.",
)
@click.option("--no-check", is_flag=True, help="Do not check now that the branch can be fetched.")
@click.pass_context
@run_async
async def repo_add(
    ctx, name: str, url: str, branch: str, github_url: str | None, no_check: bool
) -> None:
    """Follow BRANCH of the git repository at URL under NAME (and queue its first sync).

    URL is any git URL (GitHub, another host over https or ssh, file://) or the path of a
    local git repository."""
    async with opened(ctx) as victor:
        added, job = await victor.track(
            name, url, branch=branch, github_url=github_url, check=not no_check
        )
    if added.github_url:
        page = f"({added.github_url})"
        updates = "Pushes to that branch re-index it once the GitHub webhook is set up"
    else:
        page = "(no GitHub page: pushes from GitHub will not match it)"
        updates = (
            f"Run `victor sync {name}` (or from a cron job or a git hook) to update it; "
            "pass --github-url for GitHub pushes and permalinks"
        )
    err.print(
        f"following {added.name}: {added.source} branch {added.ref} {page}\n"
        f"queued job {job}: a running `victor worker` indexes it; or run `victor sync {name}`.\n"
        f"{updates} (docs/webhook.md).",
        highlight=False,
    )


@repo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@run_async
async def repo_list(ctx, as_json: bool) -> None:
    """The repositories followed, their branch and last indexed commit."""
    async with opened(ctx) as victor:
        tracked = await store.tracked_repos(victor.pool)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "url": r.source,
                        "branch": r.ref,
                        "github_url": r.github_url,
                        "commit": r.commit_sha,
                        "indexed_at": r.indexed_at.isoformat() if r.indexed_at else None,
                    }
                    for r in tracked
                ],
                indent=2,
            )
        )
        return
    if not tracked:
        err.print("no repository is followed; add one: victor repo add NAME URL --branch main")
        return
    table = Table("name", "branch", "url", "github", "commit", "indexed")
    for r in tracked:
        when = r.indexed_at.strftime("%Y-%m-%d %H:%M") if r.indexed_at else "never"
        table.add_row(
            r.name, r.ref or "", r.source, r.github_url or "", (r.commit_sha or "")[:12], when
        )
    out.print(table)


@repo.command("remove")
@click.argument("name")
@click.pass_context
@run_async
async def repo_remove(ctx, name: str) -> None:
    """Stop following NAME (its index stays; `victor remove NAME` deletes it)."""
    async with opened(ctx) as victor:
        await victor.untrack(name)
    err.print(f"no longer following {name}; its index stays searchable")


@cli.command("jobs")
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@run_async
async def jobs_command(ctx, limit: int, as_json: bool) -> None:
    """Recent sync jobs: state, attempts, errors."""
    from indexer.sync import jobs

    async with opened(ctx) as victor:
        recent = await jobs.recent(victor.pool, limit)
    if as_json:
        click.echo(json.dumps([j.to_json() for j in recent], indent=2))
        return
    table = Table("id", "repo", "state", "reason", "after", "tries", "updated", "error")
    for j in recent:
        table.add_row(
            str(j.id),
            j.repo,
            j.state,
            j.reason,
            (j.after_sha or "")[:12],
            f"{j.attempts}/{j.max_attempts}",
            j.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            j.error or "",
        )
    out.print(table)


# --- victor mcp (the tools live in victor/mcp_server.py) -------------------------------------


@cli.command("mcp")
@click.option(
    "--transport",
    type=click.Choice(["http", "stdio"]),
    default="http",
    show_default=True,
    help="http: Streamable HTTP at http://HOST:PORT/mcp (Open WebUI, Claude Code); "
    "stdio: over stdin/stdout, started by the client (Claude Desktop).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
@run_async
async def mcp_command(ctx, transport: str, host: str, port: int) -> None:
    """Serve the index as MCP tools (search_code, find_definition, find_references,
    read_code, list_files, list_repos), read-only. Beyond 127.0.0.1 it requires
    VICTOR_MCP_TOKEN as a bearer token."""
    try:
        from victor import mcp_server
    except ImportError as exc:
        _fail(
            f"victor mcp needs the MCP SDK ({exc.name} is missing): "
            "in Victor's checkout, pip install -e '.[mcp]'"
        )
        return
    logging.getLogger("victor").setLevel(logging.INFO)
    settings = settings_from(ctx)

    def ready(where: str) -> None:
        # stdout belongs to the protocol with stdio: everything we say goes to stderr
        click.echo(f"victor mcp: serving {where}", err=True)

    await mcp_server.serve(settings, transport=transport, host=host, port=port, ready=ready)


def main() -> None:
    try:
        cli(prog_name="victor")
    except BrokenPipeError:  # raised outside a command, e.g. while printing --help
        _closed_pipe()


if __name__ == "__main__":
    main()
