-- Lexical search (indexer/words.py). The words of each chunk by field, identifiers split
-- (`get_selection` -> `get selection getselection`); `lex` weighs them A..D and stems them.
-- Rows written before this migration get their fields after it, recomputed from the chunk
-- itself (indexer/store/migrations.py: the lexical version).
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
