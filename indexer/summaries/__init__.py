"""LLM-written summaries of functions, an extra lexical field next to the code (docs/summaries.md):
the prompt and its token estimate (prompt.py), the summary model over HTTP (client.py), and one
summary run with its cost estimate (run.py). Off by default (VICTOR_SUMMARY_BACKEND=off)."""
