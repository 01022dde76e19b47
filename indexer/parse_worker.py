"""A parse worker process: chunks the Lua files its parent (`indexer.chunker`) sends it.

Started as `python -m indexer.parse_worker FD` with one end of a socket pair, not with
multiprocessing's `spawn`: spawn re-imports the parent's main module in every worker (the
`victor` CLI with rich, click and the embedder; measured 1-6 s a worker on this 2-core VM),
which cost more than two workers saved on a codebase the size of Penlight. This process
imports only the chunker, and `fork` is not an option (the parent may hold torch).
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection

from indexer.chunker import chunk_source


def main(fd: int) -> None:
    """Chunk (path, source) items from the connection until None or end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    conn = Connection(fd)
    opts = conn.recv()
    conn.send("ready")
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        path, source = item
        conn.send(chunk_source(path, source, **opts))


if __name__ == "__main__":
    main(int(sys.argv[1]))
