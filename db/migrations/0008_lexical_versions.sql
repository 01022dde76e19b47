-- A version of each repository's lexical index: every transaction that changes a repository's
-- postings gives its lex_stats row a new value from one sequence (indexer/store/postings.py),
-- so a chat process holding the postings in memory (indexer/search/lexical_memory.py) knows
-- they are still what the database holds by reading that row. A sequence never gives a value
-- twice, also across `postings.rebuild`, which empties the table.
CREATE SEQUENCE IF NOT EXISTS lex_version;
ALTER TABLE lex_stats ADD COLUMN IF NOT EXISTS version bigint NOT NULL
    DEFAULT nextval('lex_version');
