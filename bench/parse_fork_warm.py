"""Would forking a warm parser save the second worker's warm-up? CPU seconds of one process that
parses alone for T CPU seconds and then forks, the two halves of what is left parsed after the
fork (dealt largest first in turn, as the pool hands files out), against T=0 (two cold
processes) and a T larger than the whole parse (one process).

    python -m bench.parse_fork_warm CORPUS_DIR T [--part 4]

Prints one JSON line. `wall_on_2_idle_cores_s` is what the split would take with two idle
cores: the part parsed alone, then the slower half.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.index_bench import load_corpus
from indexer.parsing.chunker import chunk_source


def main() -> None:
    parser = argparse.ArgumentParser(description="forking a warm parser")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("seconds", type=float, help="CPU seconds parsed alone before the fork")
    parser.add_argument("--part", type=int, default=4)
    args = parser.parse_args()
    items = sorted(load_corpus(args.corpus, args.part), key=lambda item: len(item[1]))
    start, alone = time.process_time(), 0
    if args.seconds > 0:
        chunk_source(*items.pop(0))  # the pool gives a fresh worker the smallest file first
        alone = 1
        while items and time.process_time() - start < args.seconds:
            chunk_source(*items.pop())
            alone += 1
    before = time.process_time() - start
    read, write = os.pipe()
    child = os.fork()
    started = time.process_time()
    for item in items[::-1][1 if child == 0 else 0 :: 2]:
        chunk_source(*item)
    mine = time.process_time() - started
    if child == 0:
        os.write(write, json.dumps(mine).encode())
        os._exit(0)
    os.waitpid(child, 0)
    theirs = json.loads(os.read(read, 100))
    print(
        json.dumps(
            {
                "alone_cpu_s_target": args.seconds,
                "files_alone": alone,
                "alone_cpu_s": round(before, 1),
                "halves_cpu_s": [round(mine, 1), round(theirs, 1)],
                "total_cpu_s": round(before + mine + theirs, 1),
                "wall_on_2_idle_cores_s": round(before + max(mine, theirs), 1),
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
