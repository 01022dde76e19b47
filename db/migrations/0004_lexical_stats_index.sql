-- Every lexical search needs the number of searchable chunks in scope and their mean
-- field lengths (BM25); this index answers that with an index-only scan instead of reading
-- the whole table (docs/hardening.md, "Load and scale")
CREATE INDEX IF NOT EXISTS chunks_lex_stats_idx ON chunks (repo_id) INCLUDE (lex_len, lex_doc_len)
    WHERE searchable;
