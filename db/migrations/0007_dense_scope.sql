-- Nothing reads this index since Victor keeps its own lexical counts (lex_stats, 0005).
DROP INDEX IF EXISTS chunks_lex_stats_idx;
-- A search restricted to a few repositories reads all of their vectors
-- (indexer/search/dense.py, dense_ids): kept in the row rather than in TOAST, reading them
-- costs about a third (bench/README.md, "The dense side of a one-repository search"). The rows
-- already there are rewritten right after this migration (indexer/store/migrations.py).
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE MAIN;
