-- LLM-written summaries of functions (indexer/summaries, docs/summaries.md), off by default.
-- chunk_summaries keeps every summary a summariser wrote, by the hash of the chunk it read
-- (chunks.embed_hash: path, name and code): re-indexing unchanged code never asks the model again.
-- chunks.summary is the summary a chunk is searched with: its words join the chunk's lexical
-- field C (indexer/words.py), so the lexical index is updated with it, in one transaction.
-- Empty for every chunk until `victor summarize` runs: nothing changes while summaries are off.
CREATE TABLE IF NOT EXISTS chunk_summaries (
    summariser    text NOT NULL,       -- backend:model|p<prompt version> that wrote it
    text_hash     bytea NOT NULL,      -- chunks.embed_hash of the chunk it summarises
    summary       text NOT NULL,
    input_tokens  int,                 -- as the model reported them (NULL when it did not)
    output_tokens int,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (summariser, text_hash)
);
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS summary text NOT NULL DEFAULT '';
