"""Lua source -> chunks: `chunker.chunk_source` for one file, `pool.chunk_files` for many."""
