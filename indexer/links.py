"""Links to lines of a file at a commit: the GitHub permalink, for search results and browsing.

A module of its own because both the store (`store.browse`) and search (`search.context`) use
it, and the store must not import search.
"""

from __future__ import annotations

from urllib.parse import quote


def permalink(
    github_url: str | None, commit: str | None, path: str, start: int, end: int
) -> str | None:
    """`https://github.com/o/r/blob/<commit>/<path>#L<start>-L<end>`, or None when the
    repository's GitHub page or the commit is unknown."""
    if not github_url or not commit:
        return None
    anchor = f"#L{start}" if start == end else f"#L{start}-L{end}"
    return f"{github_url.rstrip('/')}/blob/{commit}/{quote(path)}{anchor}"
