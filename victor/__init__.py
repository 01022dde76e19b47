"""The victor command line and in-process adapters."""
