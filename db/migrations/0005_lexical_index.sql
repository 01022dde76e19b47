-- The lexical index Victor keeps itself (indexer/store/postings.py, queried by
-- indexer/search/lexical.py), written in the same transaction as the chunks it describes:
-- postings of each searchable chunk's words with their counts per field, ordered per
-- (repository, word) by impact so that a query reads the best postings of a common word first;
-- document frequencies per (repository, word); per repository the chunk count and the field
-- length sums of BM25. Existing chunks get their postings right after this migration
-- (indexer/store/migrations.py).
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
