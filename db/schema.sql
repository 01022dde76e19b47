-- Victor's schema. Idempotent: safe to apply any number of times
-- (`victor init-db`, and automatically on first use).
--
-- The embedding column has no fixed dimension here: the dimension follows
-- the embedding model, which is recorded in victor_meta. When the model is
-- first set, Victor fixes the column type to vector(<dims>) and creates the
-- HNSW cosine index (see indexer/store.py: use_embedding_space). A different
-- model is refused until `victor reembed` re-embeds everything, so vectors
-- of two models are never mixed.

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE IF NOT EXISTS victor_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per indexed repository (a folder or a git repository).
CREATE TABLE IF NOT EXISTS repos (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    source      text NOT NULL,          -- folder path or git URL, as given (never with credentials)
    ref         text,                   -- git ref asked for (branch, tag, sha)
    commit_sha  text,                   -- last commit indexed completely (git sources)
    github_url  text,                   -- https://github.com/OWNER/REPO, for permalinks
    created_at  timestamptz NOT NULL DEFAULT now(),
    indexed_at  timestamptz,            -- end of the last complete run
    last_run    jsonb                   -- summary of the last run (counts, skipped files, time)
);

-- One row per indexed file. content_hash decides whether a file changed;
-- chunker_version re-chunks every file when the chunking rules change.
CREATE TABLE IF NOT EXISTS files (
    repo_id         int NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path            text NOT NULL,
    content_hash    text NOT NULL,      -- sha256 of the file's bytes
    commit_sha      text,               -- commit the content was read from (git sources)
    parse_mode      text NOT NULL,      -- ast | scanner | lines
    parse_error     text,               -- why luaparser was not used, when it was not
    chunker_version int NOT NULL,
    size_bytes      int NOT NULL,
    indexed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, path)
);

-- Symbol-level chunks. A file's chunks are replaced in the same transaction
-- as its files row, so after a crash a file is entirely old or entirely new.
CREATE TABLE IF NOT EXISTS chunks (
    id          bigserial PRIMARY KEY,
    repo_id     int NOT NULL,
    path        text NOT NULL,
    symbol      text NOT NULL,          -- qualified name: M.foo, Class:method, module name
    kind        text NOT NULL,          -- function | method | module | window
    signature   text NOT NULL DEFAULT '',
    doc         text NOT NULL DEFAULT '',
    start_line  int NOT NULL,
    end_line    int NOT NULL,
    part        int NOT NULL DEFAULT 0, -- 1, 2, ... for the windows of a large function
    text        text NOT NULL,
    embed_hash  bytea NOT NULL,         -- sha256 of the text that was embedded
    embedding   vector,
    FOREIGN KEY (repo_id, path) REFERENCES files (repo_id, path) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS chunks_file_idx ON chunks (repo_id, path);

-- v2: lexical search (indexer/lexical.py). The words of each chunk by field, identifiers
-- split (`get_selection` -> `get selection getselection`); `lex` weighs them A..D and stems
-- them. v1 rows get their fields from indexer/db.py (recomputed from the chunk itself).
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS lex_name text NOT NULL DEFAULT '';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS lex_context text NOT NULL DEFAULT '';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS lex_doc text NOT NULL DEFAULT '';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS lex_body text NOT NULL DEFAULT '';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS lex_len int NOT NULL DEFAULT 0;  -- words in lex_body
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS lex_doc_len int NOT NULL DEFAULT 0;  -- words in lex_doc
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS lex tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', lex_name), 'A')
    || setweight(to_tsvector('english', lex_context), 'B')
    || setweight(to_tsvector('english', lex_doc), 'C')
    || setweight(to_tsvector('english', lex_body), 'D')
) STORED;
-- symbol lookup: the functions a chunk defines (its own and any nested ones), and the last
-- name of each lower-cased (`Picker:get_selection` -> get_selection)
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS defines text[] NOT NULL DEFAULT '{}';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS symbol_keys text[] NOT NULL DEFAULT '{}';
-- false for chunks with nothing to find (`end`, `}`): stored for coverage, never returned
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS searchable boolean NOT NULL DEFAULT true;
-- hash of the short name embedding text (indexer/embedtext.py), when the chunk has one
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS name_hash bytea;
CREATE INDEX IF NOT EXISTS chunks_lex_idx ON chunks USING gin (lex);
CREATE INDEX IF NOT EXISTS chunks_symbol_keys_idx ON chunks USING gin (symbol_keys);
-- v4: every lexical search needs the number of searchable chunks in scope and their mean
-- field lengths (BM25); this index answers that with an index-only scan instead of reading
-- the whole table (docs/hardening.md, "Load and scale")
CREATE INDEX IF NOT EXISTS chunks_lex_stats_idx ON chunks (repo_id) INCLUDE (lex_len, lex_doc_len)
    WHERE searchable;

-- v5: the lexical index Victor keeps itself (indexer/postings.py, queried by indexer/bm25f.py),
-- written in the same transaction as the chunks it describes. Postings of each searchable
-- chunk's words with their counts per field, ordered per (repository, word) by impact so a
-- query reads the best postings of a common word first; document frequencies per
-- (repository, word); per repository the chunk count and field length sums of BM25.
CREATE TABLE IF NOT EXISTS lex_postings (
    chunk_id  bigint NOT NULL,
    term      text COLLATE "C" NOT NULL,   -- a lexeme of chunks.lex
    repo_id   int NOT NULL,
    impact    real NOT NULL,               -- BM25F part at reference lengths: an ordering key
    na        smallint NOT NULL,           -- occurrences in field A (name) .. D (body)
    nb        smallint NOT NULL,
    nc        smallint NOT NULL,
    nd        smallint NOT NULL,
    doc_len   int NOT NULL,                -- chunks.lex_doc_len
    body_len  int NOT NULL,                -- chunks.lex_len
    module    boolean NOT NULL,            -- a module or window chunk
    PRIMARY KEY (chunk_id, term)
);
CREATE INDEX IF NOT EXISTS lex_postings_impact_idx
    ON lex_postings (repo_id, term, impact DESC, chunk_id);
CREATE TABLE IF NOT EXISTS lex_terms (
    repo_id  int NOT NULL,
    term     text COLLATE "C" NOT NULL,
    df       int NOT NULL,                 -- searchable chunks of the repository holding it
    PRIMARY KEY (repo_id, term)
);
CREATE TABLE IF NOT EXISTS lex_stats (
    repo_id   int PRIMARY KEY,
    chunks    bigint NOT NULL,             -- searchable chunks
    body_len  bigint NOT NULL,             -- sum of their lex_len
    doc_len   bigint NOT NULL              -- sum of their lex_doc_len
);

-- Embeddings by (embedding space, hash of the embedded text): an unchanged or
-- moved function is never embedded twice.
CREATE TABLE IF NOT EXISTS embedding_cache (
    space      text NOT NULL,
    text_hash  bytea NOT NULL,
    embedding  vector NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space, text_hash)
);

-- Repositories followed by the GitHub webhook and `victor sync` (`victor repo add`):
-- repos.source is the clone URL, repos.ref the branch, repos.github_url the key a push
-- delivery's repository.html_url is matched against.
ALTER TABLE repos ADD COLUMN IF NOT EXISTS tracked boolean NOT NULL DEFAULT false;

-- Durable sync jobs, claimed with FOR UPDATE SKIP LOCKED (indexer/jobs.py).
-- At most one pending job per repository: a push for a repository that already has
-- one updates it (the newest `after` wins) instead of queueing more work.
CREATE TABLE IF NOT EXISTS sync_jobs (
    id            bigserial PRIMARY KEY,
    repo_id       int NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'superseded')),
    reason        text NOT NULL,          -- push | manual | repo add
    after_sha     text,                   -- newest pushed commit (informative: the worker
                                          -- indexes the branch head it fetches)
    pushes        int NOT NULL DEFAULT 1, -- deliveries coalesced into this job
    attempts      int NOT NULL DEFAULT 0,
    max_attempts  int NOT NULL DEFAULT 5,
    run_after     timestamptz NOT NULL DEFAULT now(),  -- retry backoff
    lease_until   timestamptz,            -- a running job whose lease passed is taken again
    worker        text,                   -- host:pid of the worker holding it
    error         text,                   -- last failure, written for the operator
    result        jsonb,                  -- sync summary when done
    superseded_by bigint,                 -- the pending job that took over its work
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS sync_jobs_one_pending ON sync_jobs (repo_id)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS sync_jobs_open ON sync_jobs (run_after)
    WHERE state IN ('pending', 'running');

-- GitHub deliveries that queued work, by X-GitHub-Delivery: a redelivery finds its jobs here.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery    text PRIMARY KEY,
    job_ids     bigint[] NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO victor_meta (key, value) VALUES ('schema_version', '5')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
