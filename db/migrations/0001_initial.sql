-- The first schema: repositories, files, symbol-level chunks with their vectors, and the
-- embedding cache. The embedding column has no dimension yet: the first index fixes it to
-- the model's (indexer/store/space.py).

CREATE EXTENSION IF NOT EXISTS vector;

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

-- Embeddings by (embedding space, hash of the embedded text): an unchanged or
-- moved function is never embedded twice.
CREATE TABLE IF NOT EXISTS embedding_cache (
    space      text NOT NULL,
    text_hash  bytea NOT NULL,
    embedding  vector NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space, text_hash)
);
