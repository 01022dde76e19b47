"""A synthetic Lua codebase of any size, loaded fast into Victor's schema, for load benchmarks.

    from bench.synthetic import load_index, WordVectors
    timings = asyncio.run(load_index(url, 100_000, dims=384))

The chunks look like a real game or application codebase, so every side of the search does
real work: modules in folders, functions and methods with snake_case and camelCase names
made of common programming words (Zipf-distributed, plus a long tail of rare
project-specific words), doc comments, bodies with locals, calls, loops, error messages and
nested helpers. The lexical columns (weighted tsvector, symbol keys, defined names) are
computed by Victor's own code (`indexer.store.lexical_values`), exactly as indexing does.

Vectors are not from a model (1M real embeddings would take hours on a CPU) but have the
structure of real ones: every word has a fixed random direction, and a chunk's vector is the
normalised sum of its name, doc and body words' directions, a direction shared by all code
(real embeddings are anisotropic) and noise. Chunks about the same things are neighbours,
and `WordVectors.embed` turns a question into a vector the same way, so dense search returns
chunks that share words with the question, as with a real model. The stand-in Ollama
(`WordVectorOllama`) answers /api/embed with these vectors, instantly.

Loading: COPY in batches, with the secondary indexes dropped during the load and rebuilt
after it (each timed), as a bulk load should be; the index definitions are read from the
database, so they are always exactly the schema's.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import threading
import time
import zlib
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from indexer import store
from indexer import words as lexical
from indexer.config import Settings
from indexer.store import postings

MODEL = "bench-embed"  # the stand-in's model name: no query/document prefixes

_VERBS = """
    get set add remove update draw load save parse build create destroy find check init reset
    start stop open close read write send receive handle process apply merge split sort filter
    map reduce validate compute resolve register unregister spawn despawn attach detach enable
    disable push pop insert clear copy clone compare encode decode serialize deserialize fetch
    emit listen notify schedule cancel retry flush render move rotate scale play pause resume
    format convert normalize lookup connect disconnect queue dequeue trigger collect refresh
    toggle select sync wrap unwrap bind unbind equip unequip buy sell craft upgrade heal damage
"""
VERBS = _VERBS.split()
_NOUNS = """
    player inventory item slot enemy weapon armor quest dialog menu button window widget panel
    config setting option file path buffer string table list queue stack map tree node graph
    edge vertex entity component system scene camera sprite texture image sound music channel
    event listener handler callback timer clock frame tick state machine transition animation
    tween physics body collision shape rect circle point vector matrix color font text label
    input key mouse touch cursor network socket packet message request response session user
    account profile score level world tile chunk region zone spawn path target ai behavior
    cache pool resource asset loader parser lexer token error result value count index size
    width height position velocity angle speed health mana stamina gold price cart order shop
    store save record version schema migration log logger debug test mock fixture module class
    object instance field property method argument param option flag mode type kind name id key
"""
NOUNS = _NOUNS.split()
_ADJECTIVES = """
    current next previous default active visible hidden local global max min total new old
    last first empty full dirty pending selected focused enabled valid raw cached remote
"""
ADJECTIVES = _ADJECTIVES.split()
_AREAS = """
    core game ui net audio gfx physics ai data util save shop quest combat world editor tools
    input scene anim fx lib
"""
AREAS = _AREAS.split()
_SYLLABLES = "ka ro mi zu te la vor nix pel dra quo shi ban tor ulm gri fes yak om ne"
SYLLABLES = _SYLLABLES.split()
PARAMS = ["self", "dt", "opts", "callback", "key", "value", "index", "count", "name", "target"]


def _zipf(n: int, s: float = 1.1) -> list[float]:
    """Cumulative Zipf weights for n ranked choices (for random.choices(cum_weights=...))."""
    weights = 1.0 / np.arange(1, n + 1) ** s
    return np.cumsum(weights).tolist()


def _pseudo_words(count: int, seed: int) -> list[str]:
    """Made-up project words (`kavornix`, `drapel`): the rare end of a codebase's vocabulary."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < count:
        found["".join(rng.choices(SYLLABLES, k=rng.randint(2, 3)))] = None
    return list(found)


def _camel(words: list[str]) -> str:
    return words[0] + "".join(w.capitalize() for w in words[1:])


@dataclass(frozen=True, slots=True)
class Chunk:
    path: str
    symbol: str
    kind: str
    signature: str
    doc: str
    start_line: int
    end_line: int
    text: str
    words: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # name, doc, body words


class Codebase:
    """Deterministic synthetic chunks: `chunk(i)` is the same for the same seed and i."""

    CHUNKS_PER_FILE = 10

    def __init__(self, seed: int = 1, rare_words: int = 4000):
        self.seed = seed
        self.rare = _pseudo_words(rare_words, seed)
        self.common = VERBS + NOUNS + ADJECTIVES
        self._verb_w = _zipf(len(VERBS), 0.8)
        self._noun_w = _zipf(len(NOUNS), 0.6)
        self._rare_w = _zipf(len(self.rare), 1.0)

    # --- words ----------------------------------------------------------------------------

    def verb(self, rng: random.Random) -> str:
        return rng.choices(VERBS, cum_weights=self._verb_w)[0]

    def noun(self, rng: random.Random) -> str:
        """Mostly common nouns; one in six is a rare project word."""
        if rng.random() < 1 / 6:
            return rng.choices(self.rare, cum_weights=self._rare_w)[0]
        return rng.choices(NOUNS, cum_weights=self._noun_w)[0]

    # --- files ----------------------------------------------------------------------------

    def file(self, f: int) -> tuple[str, str, str]:
        """(path, class name, module name) of file number f."""
        rng = random.Random(self.seed * 1_000_003 + f)
        area = rng.choice(AREAS)
        a, b = self.noun(rng), self.noun(rng)
        stem = f"{a}_{b}" if rng.random() < 0.5 else a
        path = f"src/{area}/{self.noun(rng)}/{stem}_{f}.lua"
        return path, a.capitalize() + b.capitalize(), f"{area}.{stem}"

    def files(self, n_chunks: int) -> list[str]:
        count = (n_chunks + self.CHUNKS_PER_FILE - 1) // self.CHUNKS_PER_FILE
        return [self.file(f)[0] for f in range(count)]

    # --- chunks ---------------------------------------------------------------------------

    def chunk(self, i: int) -> Chunk:
        f, k = divmod(i, self.CHUNKS_PER_FILE)
        path, cls, module = self.file(f)
        rng = random.Random(self.seed * 7_919 + i * 104_729)
        start = 1 + k * 30
        if k == 0 or rng.random() < 0.08:
            return self._module_chunk(rng, path, cls, module, start)
        verb, a = self.verb(rng), self.noun(rng)
        parts = [verb, a] + ([self.noun(rng)] if rng.random() < 0.3 else [])
        params = rng.sample(PARAMS[1:], rng.randint(0, 3))
        if rng.random() < 0.45:
            kind, name = "method", _camel(parts) if rng.random() < 0.5 else "_".join(parts)
            symbol, signature = f"{cls}:{name}", f"function {cls}:{name}({', '.join(params)})"
        else:
            kind, name = "function", "_".join(parts)
            local = rng.random() < 0.3
            symbol = name if local else f"M.{name}"
            signature = f"{'local ' if local else ''}function {symbol}({', '.join(params)})"
        doc, doc_words = self._doc(rng, parts, params)
        body, body_words = self._body(rng, params)
        text = (doc + "\n" if doc else "") + signature + "\n" + body + "\nend"
        lines = text.count("\n") + 1
        return Chunk(
            path,
            symbol,
            kind,
            signature,
            doc,
            start,
            start + lines - 1,
            text,
            (tuple(parts), tuple(doc_words), tuple(body_words)),
        )

    def _module_chunk(self, rng, path, cls, module, start) -> Chunk:
        fields = [self.noun(rng) for _ in range(rng.randint(2, 6))]
        lines = [f"local {cls} = {{}}", f"{cls}.__index = {cls}", ""]
        lines += [f"local {w}_default = {rng.randint(0, 500)}" for w in fields]
        lines += [f'local {fields[0]}s = require("{module}.{fields[-1]}")', f"return {cls}"]
        text = "\n".join(lines)
        return Chunk(
            path,
            module,
            "module",
            "",
            "",
            start,
            start + len(lines) - 1,
            text,
            ((), (), tuple(fields)),
        )

    def _doc(self, rng, parts, params) -> tuple[str, list[str]]:
        if rng.random() < 0.4:
            return "", []
        adj, other = rng.choice(ADJECTIVES), self.noun(rng)
        words = [parts[0], adj, *parts[1:], other]
        lines = [f"--- {parts[0].capitalize()} the {adj} {' '.join(parts[1:])} of the {other}."]
        if rng.random() < 0.5:
            extra = [self.noun(rng), self.verb(rng), self.noun(rng)]
            lines.append(f"-- Used when the {extra[0]} must {extra[1]} its {extra[2]}.")
            words += extra
        for p in params:
            lines.append(f"-- @param {p} the {self.noun(rng)}")
        return "\n".join(lines), words

    def _body(self, rng, params) -> tuple[str, list[str]]:
        words: list[str] = []
        lines: list[str] = []
        names = [*params] or ["self"]
        # a function is about a few things: most lines reuse its topic words
        topic = [self.noun(rng) for _ in range(rng.randint(2, 5))]
        verbs = [self.verb(rng) for _ in range(2)]

        def noun() -> str:
            return rng.choice(topic) if rng.random() < 0.85 else self.noun(rng)

        for _ in range(rng.randint(3, 24)):
            a, b = noun(), noun()
            v = rng.choice(verbs) if rng.random() < 0.7 else self.verb(rng)
            words += [a, b, v]
            pick = rng.random()
            if pick < 0.25:
                lines.append(f"  local {a} = {rng.choice(names)}.{b}s[{rng.randint(1, 9)}]")
                names.append(a)
            elif pick < 0.4:
                lines.append(f"  if not {rng.choice(names)} then return nil end")
            elif pick < 0.55:
                lines.append(f"  self:{_camel([v, b])}({rng.choice(names)})")
            elif pick < 0.68:
                lines.append(f"  {a}.{v}_{b}({rng.choice(names)}, {rng.randint(0, 99)})")
            elif pick < 0.78:
                lines.append(f"  for _, {a} in ipairs(self.{b}s) do {a}:{v}() end")
            elif pick < 0.86:
                lines.append(f'  error("cannot {v} {a}: " .. tostring({rng.choice(names)}))')
            elif pick < 0.93:
                lines.append(f"  local {a}_{b} = ({rng.choice(names)} or 0) + {rng.random():.2f}")
                names.append(f"{a}_{b}")
            else:
                lines.append(f"  local function {v}_{a}(x) return x.{b} end")
        lines.append(f"  return {rng.choice(names)}")
        return "\n".join(lines), words


# --- vectors --------------------------------------------------------------------------------


class WordVectors:
    """A fixed random direction per word; texts become normalised sums of them (see module)."""

    def __init__(self, codebase: Codebase, dims: int, seed: int = 2):
        self.dims = dims
        rng = np.random.default_rng(seed)
        vocabulary = list(dict.fromkeys(codebase.common + codebase.rare + PARAMS))
        matrix = rng.standard_normal((len(vocabulary), dims)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        self.index = {w: n for n, w in enumerate(vocabulary)}
        self.matrix = matrix
        common = rng.standard_normal(dims).astype(np.float32)
        self.common = common / np.linalg.norm(common)
        self.seed = seed

    def word(self, word: str) -> np.ndarray:
        w = word.lower()
        for candidate in (w, w[:-1], w[:-2], w[:-3]):  # saves, saved, saving -> save
            if candidate in self.index:
                return self.matrix[self.index[candidate]]
        rng = np.random.default_rng(zlib.crc32(w.encode()))
        v = rng.standard_normal(self.dims).astype(np.float32)
        return v / np.linalg.norm(v)

    def _combine(
        self, groups: list[tuple[list[str], float]], noise: float, key: int = 0
    ) -> np.ndarray:
        v = 0.6 * self.common
        for words, weight in groups:
            for w in words:
                v = v + weight * self.word(w)
        v = v / max(np.linalg.norm(v), 1e-6)
        if noise:
            rng = np.random.default_rng((self.seed, key))
            jitter = rng.standard_normal(self.dims).astype(np.float32)
            v = v + noise * jitter / self.dims**0.5
        return (v / np.linalg.norm(v)).astype(np.float32)

    def chunk(self, chunk: Chunk, i: int) -> np.ndarray:
        """Chunk number i's vector (its noise depends on i only: the same in any process)."""
        name, doc, body = chunk.words
        groups = [(list(name), 1.0), (list(doc), 0.5), (list(body[:30]), 0.2)]
        return self._combine(groups, 0.5, i)

    def embed(self, text: str) -> np.ndarray:
        """A query's vector: its words' directions (identifiers split, as Victor splits them)."""
        words = [w for w in lexical.words(text) if len(w) > 2]
        return self._combine([(words, 1.0)], 0.0)


class VectorOllama:
    """Ollama's /api/embed answering at once with precomputed random unit vectors, or after
    `delay_ms` (Ollama's own time to embed, which a stand-in does not have). Records how
    long each answer took inside the server (`service_ms`, the delay included)."""

    def __init__(self, dims: int, seed: int = 7, delay_ms: float = 0.0):
        rng = np.random.default_rng(seed)
        pool = rng.standard_normal((256, dims)).astype(np.float32)
        self.vectors = (pool / np.linalg.norm(pool, axis=1, keepdims=True)).tolist()
        self.count = 0
        self.service_ms: list[float] = []
        self.delay_ms = delay_ms
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def vectors_for(self, texts: list[str]) -> list[list[float]]:
        with self.lock:
            start, self.count = self.count, self.count + len(texts)
        return [self.vectors[(start + i) % len(self.vectors)] for i in range(len(texts))]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # or delayed ACKs add 40 ms to every answer

            def log_message(self, *args):
                pass

            def do_POST(self):
                started = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                texts = json.loads(self.rfile.read(length) or b"{}").get("input") or [""]
                texts = [texts] if isinstance(texts, str) else texts
                if fake.delay_ms:
                    time.sleep(fake.delay_ms / 1000)
                body = json.dumps({"model": MODEL, "embeddings": fake.vectors_for(texts)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                fake.service_ms.append((time.perf_counter() - started) * 1000)

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WordVectorOllama(VectorOllama):
    """Ollama's /api/embed answering at once with `WordVectors.embed` of each input."""

    def __init__(self, vectors: WordVectors, delay_ms: float = 0.0):
        self.words = vectors
        super().__init__(vectors.dims, delay_ms=delay_ms)

    def vectors_for(self, texts: list[str]) -> list[list[float]]:
        return [self.words.embed(t).tolist() for t in texts]


class InProcessEmbedder:
    """Victor's Embedder protocol over WordVectors, in process: search without HTTP."""

    def __init__(self, vectors: WordVectors, space: str):
        self.vectors = vectors
        self.space = space
        self.model = MODEL

    async def embed_queries(self, texts):
        return [self.vectors.embed(t) for t in texts]

    async def embed_query(self, text):
        return self.vectors.embed(text)

    async def embed_documents(self, texts):
        return [self.vectors.embed(t) for t in texts]

    async def dimensions(self) -> int:
        return self.vectors.dims

    async def ready(self) -> None:
        return None

    async def close(self) -> None:
        return None


# --- questions --------------------------------------------------------------------------------

PROSE = [
    "How does the {adj} {noun} {verb} its {noun2}?",
    "Where do we {verb} the {noun} {noun2}?",
    "Which function should I call to {verb} a {noun}?",
    "What happens to the {noun} after we {verb} the {noun2}?",
    "Why does it fail when I {verb} the {adj} {noun}?",
    "Explain how to {verb} the {noun} {noun2} in the {area} module",
    "how is the {noun}'s {noun2} computed",
    "Is there a helper that can {verb} every {noun} in the {noun2} list?",
]


def questions(codebase: Codebase, count: int, seed: int = 3) -> list[str]:
    """Prose questions made of the codebase's words (common and rare)."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        out.append(
            PROSE[n % len(PROSE)].format(
                adj=rng.choice(ADJECTIVES),
                noun=codebase.noun(rng),
                noun2=codebase.noun(rng),
                verb=codebase.verb(rng),
                area=rng.choice(AREAS),
            )
        )
    return out


def symbol_queries(symbols: list[str], seed: int = 4) -> list[str]:
    """Lookups as people type them: `Class:method`, `where is x defined`, `how does x work`."""
    rng = random.Random(seed)
    out = []
    for n, symbol in enumerate(symbols):
        last = symbol.split(":")[-1].split(".")[-1]
        out.append(
            [symbol, f"where is {last} defined", f"how does {last} work", last][n % 4]
            if rng.random() < 0.9
            else f"{symbol} returns nil sometimes, why?"
        )
    return out


async def sample_symbols(conn, count: int) -> list[str]:
    """Function and method names that are in the index, spread over it."""
    rows = await conn.fetch(
        "SELECT symbol FROM chunks WHERE kind IN ('function', 'method') "
        "AND id % greatest((SELECT count(*) FROM chunks) / $1, 1) = 0 ORDER BY id LIMIT $1",
        count,
    )
    return [r["symbol"] for r in rows]


# --- loading --------------------------------------------------------------------------------

REPOS = [("game", 0.55), ("engine", 0.25), ("tools", 0.15), ("plugins", 0.05)]
_COLUMNS = ("repo_id", *store.CHUNK_COLUMNS[1:])
_made: dict = {}  # per generating process: the codebase and its vectors


def _records(seed: int, dims: int, repo_of_file: list[int], lo: int, hi: int) -> list[tuple]:
    """Rows for chunks lo..hi, columns as _COLUMNS (runs in a worker process)."""
    if _made.get("key") != (seed, dims):
        codebase = Codebase(seed)
        _made.update(key=(seed, dims), codebase=codebase, vectors=WordVectors(codebase, dims))
    codebase, vectors = _made["codebase"], _made["vectors"]
    records = []
    for i in range(lo, hi):
        c = codebase.chunk(i)
        lex = store.lexical_values(c.path, c.symbol, c.kind, c.signature, c.doc, c.text)
        searchable = lex[-1]
        records.append(
            (
                repo_of_file[i // codebase.CHUNKS_PER_FILE],
                c.path,
                c.symbol,
                c.kind,
                c.signature,
                c.doc,
                c.start_line,
                c.end_line,
                0,
                c.text,
                hashlib.sha256(c.text.encode()).digest(),
                vectors.chunk(c, i) if searchable else None,
                None,
                *lex,
            )
        )
    return records


async def load_index(
    url: str,
    n: int,
    dims: int = 384,
    *,
    seed: int = 1,
    maintenance_work_mem: str = "1GB",
    parallel_workers: int = 1,
    generators: int = 2,
    progress=None,
) -> dict:
    """Victor's schema, bound to the stand-in's vector space, with n synthetic chunks in four
    repositories. Returns the seconds each step took."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    codebase = Codebase(seed)
    # index builds take longer than the default statement timeout (VICTOR_SQL_TIMEOUT, 300 s)
    settings = Settings(database_url=url, embed_model=MODEL, sql_timeout=86_400)
    pool = await store.create_pool(settings, max_size=2)  # applies the schema
    try:
        async with pool.acquire() as conn:
            await store.bind_space(conn, settings.embedding_space, settings.model, dims)
            indexes = await conn.fetch(
                "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS sql "
                "FROM pg_index WHERE indrelid = 'chunks'::regclass AND NOT indisprimary"
            )
            for index in indexes:
                await conn.execute(f"DROP INDEX {index['name']}")
            repo_ids = []
            for name, _ in REPOS:
                repo_ids.append(
                    await conn.fetchval(
                        "INSERT INTO repos (name, source, indexed_at) VALUES ($1, '-', now()) "
                        "RETURNING id",
                        name,
                    )
                )
            files = codebase.files(n)
            cut = np.cumsum([share for _, share in REPOS]) * len(files)
            repo_of_file = [repo_ids[int(np.searchsorted(cut, f, side="right"))] for f in
                            range(len(files))]  # fmt: skip
            await conn.copy_records_to_table(
                "files",
                records=[
                    (repo_of_file[f], p, "0" * 64, "ast", 1, 1000) for f, p in enumerate(files)
                ],
                columns=[
                    "repo_id",
                    "path",
                    "content_hash",
                    "parse_mode",
                    "chunker_version",
                    "size_bytes",
                ],
            )
            # two processes make the rows (Victor's lexical code is the slow part) while
            # this one copies them in
            batch = 5_000
            loop = asyncio.get_running_loop()
            with ProcessPoolExecutor(generators) as makers:
                batches = iter(range(0, n, batch))

                def make(lo: int):
                    args = (seed, dims, repo_of_file, lo, min(n, lo + batch))
                    return loop.run_in_executor(makers, _records, *args)

                # a few batches ahead, not all of them: memory stays bounded
                ahead = deque(make(lo) for lo in itertools.islice(batches, 2 * generators))
                loaded = 0
                while ahead:
                    records = await ahead.popleft()
                    if (lo := next(batches, None)) is not None:
                        ahead.append(make(lo))
                    await conn.copy_records_to_table("chunks", records=records, columns=_COLUMNS)
                    loaded += len(records)
                    if progress and loaded % 100_000 == 0:
                        progress(f"{loaded} of {n} chunks loaded")
            timings["load_s"] = time.perf_counter() - started
            await conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
            await conn.execute(f"SET max_parallel_maintenance_workers = {int(parallel_workers)}")
            for index in indexes:
                t = time.perf_counter()
                await conn.execute(index["sql"])
                seconds = time.perf_counter() - t
                timings[f"build_{index['name']}_s"] = seconds
                if progress:
                    progress(f"{index['name']} built in {seconds:.0f} s")
            t = time.perf_counter()
            async with conn.transaction():  # the lexical index, as a schema upgrade builds it
                await postings.rebuild(conn)
            timings["build_lexical_index_s"] = time.perf_counter() - t
            if progress:
                progress(f"lexical index built in {timings['build_lexical_index_s']:.0f} s")
            t = time.perf_counter()  # the big repositories' own graphs, as an index run builds them
            built = await store.repo_graphs.reconcile(pool)
            timings["build_repo_graphs_s"] = seconds = time.perf_counter() - t
            if progress and built:
                progress(f"{len(built)} repository graphs built in {seconds:.0f} s")
            t = time.perf_counter()
            await conn.execute("VACUUM (ANALYZE) chunks")
            await conn.execute("VACUUM (ANALYZE) lex_postings")
            await conn.execute("ANALYZE")
            timings["vacuum_analyze_s"] = time.perf_counter() - t
    finally:
        await pool.close()
    timings["total_s"] = time.perf_counter() - started
    return {k: round(v, 1) for k, v in timings.items()}


@dataclass
class Bench:
    """What a bench on the loaded synthetic index works with: its codebase, the word vectors
    its queries are embedded with, that embedder, and a small pool on the index."""

    codebase: Codebase
    words: WordVectors
    embedder: InProcessEmbedder
    pool: object  # asyncpg.Pool


async def open_bench(url: str, dims: int = 384) -> Bench:
    settings = Settings(database_url=url, embed_model=MODEL)
    codebase = Codebase()
    words = WordVectors(codebase, dims)
    embedder = InProcessEmbedder(words, settings.embedding_space)
    pool = await store.create_pool(settings, max_size=2, apply=False)
    return Bench(codebase, words, embedder, pool)
