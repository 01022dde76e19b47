"""SQL with named parameters (`:name`) for asyncpg, which only knows `$1, $2, ...`: long queries
stay readable and their arguments cannot be passed in the wrong order."""

from __future__ import annotations

import functools
import re

# `:name`, but not the `::` of a cast
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def named(sql: str, **params: object) -> tuple[str, list[object]]:
    """(`$n` SQL, arguments) for `conn.fetch(sql, *args)`; every name must be given."""
    text, order = _numbered(sql)
    missing = [n for n in order if n not in params]
    if missing:
        raise KeyError(f"SQL parameter :{missing[0]} has no value")
    unused = params.keys() - set(order)
    if unused:
        raise KeyError(f"values given for no SQL parameter: {sorted(unused)}")
    return text, [params[n] for n in order]


@functools.lru_cache(maxsize=256)  # a few statements, each numbered once (not per search)
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with `$n` for its `:name`s, and the names in their order."""
    order: list[str] = []

    def number(m: re.Match) -> str:
        name = m.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(order)
