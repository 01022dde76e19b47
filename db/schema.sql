-- Victor's schema as it stands after every migration in db/migrations: the readable snapshot.
-- It is not applied: databases are built and upgraded by the numbered migrations
-- (indexer/store/migrations.py). tests/test_migrations.py fails when the two disagree.
--
-- The embedding columns have no fixed dimension here: it follows the embedding model, which is
-- recorded in victor_meta. When the model is first set, Victor fixes chunks.embedding to
-- vector(<dims>) and creates the HNSW cosine index (indexer/store/space.py). Another model is
-- refused until `victor reembed` re-embeds everything, so vectors of two models never mix.

CREATE EXTENSION IF NOT EXISTS vector;

-- Which migrations ran, and when.
CREATE TABLE victor_migrations (
    id         int PRIMARY KEY,        -- the number of db/migrations/NNNN_name.sql
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Facts about the index: the embedding space (model, prefixes, dimensions), the lexical version.
CREATE TABLE victor_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per indexed repository (a folder or a git repository).
CREATE TABLE repos (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    source      text NOT NULL,          -- folder path or git URL, as given (never with credentials)
    ref         text,                   -- git ref asked for (branch, tag, sha)
    commit_sha  text,                   -- last commit indexed completely (git sources)
    github_url  text,                   -- https://github.com/OWNER/REPO, for permalinks
    created_at  timestamptz NOT NULL DEFAULT now(),
    indexed_at  timestamptz,            -- end of the last complete run
    last_run    jsonb,                  -- summary of the last run (counts, skipped files, time)
    tracked     boolean NOT NULL DEFAULT false  -- followed by the webhook and `victor sync`
);

-- One row per indexed file. content_hash decides whether a file changed; chunker_version
-- re-chunks every file when the chunking rules change.
CREATE TABLE files (
    repo_id         int NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path            text NOT NULL,
    content_hash    text NOT NULL,      -- git's blob id of the file's bytes (sha1 of "blob N\0" + bytes)
    commit_sha      text,               -- commit the content was read from (git sources)
    parse_mode      text NOT NULL,      -- ast | scanner | lines
    parse_error     text,               -- why luaparser was not used, when it was not
    chunker_version int NOT NULL,
    size_bytes      int NOT NULL,
    indexed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, path)
);

-- Symbol-level chunks. A file's chunks are replaced in the same transaction as its files row,
-- so after a crash a file is entirely old or entirely new.
CREATE TABLE chunks (
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
    -- NULL for chunks that are not searchable. Kept in the row, not in TOAST: a search of a few
    -- repositories reads all of their vectors (indexer/search/dense.py)
    embedding   vector STORAGE MAIN,
    -- lexical fields (indexer/words.py): identifier-split words by field
    lex_name    text NOT NULL DEFAULT '',   -- A: the qualified name
    lex_context text NOT NULL DEFAULT '',   -- B: module path, parameters
    lex_doc     text NOT NULL DEFAULT '',   -- C: doc comment, called names
    lex_body    text NOT NULL DEFAULT '',   -- D: the body
    lex_len     int NOT NULL DEFAULT 0,     -- words in lex_body
    lex_doc_len int NOT NULL DEFAULT 0,     -- words in lex_doc
    lex         tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', lex_name), 'A')
        || setweight(to_tsvector('english', lex_context), 'B')
        || setweight(to_tsvector('english', lex_doc), 'C')
        || setweight(to_tsvector('english', lex_body), 'D')
    ) STORED,
    -- symbol lookup: the functions a chunk defines (its own and nested ones), and the last
    -- name of each lower-cased (`Picker:get_selection` -> get_selection)
    defines     text[] NOT NULL DEFAULT '{}',
    symbol_keys text[] NOT NULL DEFAULT '{}',
    searchable  boolean NOT NULL DEFAULT true,  -- false for `end`, `}`: stored, never returned
    name_hash   bytea,                  -- hash of the short name text (indexer/embedding/texts.py)
    summary     text NOT NULL DEFAULT '',   -- LLM-written summary searched in field C, '' when off
    FOREIGN KEY (repo_id, path) REFERENCES files (repo_id, path) ON DELETE CASCADE
);
CREATE INDEX chunks_file_idx ON chunks (repo_id, path);
CREATE INDEX chunks_lex_idx ON chunks USING gin (lex);
CREATE INDEX chunks_symbol_keys_idx ON chunks USING gin (symbol_keys);

-- The lexical index Victor keeps itself (indexer/store/postings.py), in step with chunks:
-- postings ordered per (repository, word) by impact, document frequencies, and per repository
-- the chunk count and field length sums of BM25.
CREATE TABLE lex_postings (
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
CREATE INDEX lex_postings_impact_idx
    ON lex_postings (repo_id, term, impact DESC, chunk_id);
CREATE TABLE lex_terms (
    repo_id  int NOT NULL,
    term     text COLLATE "C" NOT NULL,
    df       int NOT NULL,                 -- searchable chunks of the repository holding it
    PRIMARY KEY (repo_id, term)
);
CREATE SEQUENCE lex_version;
CREATE TABLE lex_stats (
    repo_id   int PRIMARY KEY,
    chunks    bigint NOT NULL,             -- searchable chunks
    body_len  bigint NOT NULL,             -- sum of their lex_len
    doc_len   bigint NOT NULL,             -- sum of their lex_doc_len
    -- new with every transaction that changes the repository's postings (a process holding
    -- them in memory, indexer/search/lexical_memory.py, compares it with what it loaded)
    version   bigint NOT NULL DEFAULT nextval('lex_version')
);

-- Embeddings by (embedding space, hash of the embedded text): an unchanged or moved function
-- is never embedded twice.
CREATE TABLE embedding_cache (
    space      text NOT NULL,
    text_hash  bytea NOT NULL,
    embedding  vector NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space, text_hash)
);

-- LLM-written summaries of functions (indexer/summaries, docs/summaries.md) by summariser and
-- hash of the chunk summarised (chunks.embed_hash): unchanged code is never summarised twice.
CREATE TABLE chunk_summaries (
    summariser    text NOT NULL,       -- backend:model|p<prompt version> that wrote it
    text_hash     bytea NOT NULL,      -- chunks.embed_hash of the chunk it summarises
    summary       text NOT NULL,
    input_tokens  int,                 -- as the model reported them (NULL when it did not)
    output_tokens int,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (summariser, text_hash)
);

-- Durable sync jobs, claimed with FOR UPDATE SKIP LOCKED (indexer/sync/jobs.py). At most one
-- pending job per repository: a push for a repository that already has one updates it (the
-- newest `after` wins) instead of queueing more work.
CREATE TABLE sync_jobs (
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
CREATE UNIQUE INDEX sync_jobs_one_pending ON sync_jobs (repo_id) WHERE state = 'pending';
CREATE INDEX sync_jobs_open ON sync_jobs (run_after) WHERE state IN ('pending', 'running');

-- GitHub deliveries that queued work, by X-GitHub-Delivery: a redelivery finds its jobs here.
CREATE TABLE webhook_deliveries (
    delivery    text PRIMARY KEY,
    job_ids     bigint[] NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
