"""Chunk every Lua file of some corpora with one version of the chunker, and compare two runs.

    python -m bench.chunk_compare dump OUT.jsonl CORPUS_DIR...   (the code on PYTHONPATH)
    python -m bench.chunk_compare diff OLD.jsonl NEW.jsonl [--out FILE]

A change to the parser that must not change its output (such as the two-stage SLL/LL parse)
is checked by dumping with the old code and with the new, then diffing: every file's parse
mode, error and chunks must be equal. Files are parsed in one process, in path order, with a
generous time limit (a file stopped by it is reported, not compared: where the limit falls
depends on the machine's load). Each line also records the file's CPU seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

DUMP_TIME_LIMIT = 300.0


def dump(out: Path, corpora: list[Path]) -> None:
    from indexer.indexing.sources import decode_lua
    from indexer.parsing import luaparser_defs
    from indexer.parsing.chunker import chunk_source

    # Count the LL stage of the two-stage parse where there is one (the old code has none).
    stage = getattr(luaparser_defs, "_parse_in", None)
    ll_runs = 0
    if stage is not None:

        def counted(mode, *args):
            nonlocal ll_runs
            ll_runs += mode.name == "LL"
            return stage(mode, *args)

        luaparser_defs._parse_in = counted
    with out.open("w") as f:
        for root in corpora:
            files = sorted(p for p in root.rglob("*.lua") if p.is_file() and not p.is_symlink())
            for p in files:
                source = decode_lua(p.read_bytes())
                before, cpu = ll_runs, time.process_time()
                r = chunk_source(str(p.relative_to(root)), source, time_limit=DUMP_TIME_LIMIT)
                chunks = json.dumps([dataclasses.asdict(c) for c in r.chunks], sort_keys=True)
                line = {
                    "corpus": root.name,
                    "path": r.path,
                    "mode": r.mode.value,
                    "error": r.error,
                    "chunks": hashlib.sha256(chunks.encode()).hexdigest(),
                    "cpu_s": round(time.process_time() - cpu, 4),
                    "ll_stage": ll_runs > before if stage is not None else None,
                }
                f.write(json.dumps(line) + "\n")
                f.flush()


def diff(old: Path, new: Path) -> dict:
    def load(path: Path) -> dict:
        lines = (json.loads(x) for x in path.read_text().splitlines())
        return {(r["corpus"], r["path"]): r for r in lines}

    a, b = load(old), load(new)
    stopped = [k for k in a if "time limit" in a[k]["error"] or "time limit" in b[k]["error"]]
    differ = [
        k
        for k in a
        if k not in stopped
        and (a[k]["mode"], a[k]["error"], a[k]["chunks"])
        != (b[k]["mode"], b[k]["error"], b[k]["chunks"])
    ]
    corpora: dict[str, dict] = {}
    for k in a:
        c = corpora.setdefault(k[0], {"files": 0, "old_cpu_s": 0.0, "new_cpu_s": 0.0})
        c["files"] += 1
        c["old_cpu_s"] += a[k]["cpu_s"]
        c["new_cpu_s"] += b[k]["cpu_s"]
    for c in corpora.values():
        c["old_cpu_s"], c["new_cpu_s"] = round(c["old_cpu_s"], 1), round(c["new_cpu_s"], 1)
    return {
        "files_compared": len(a) - len(stopped),
        "files_only_in_one": sorted(map(list, set(a) ^ set(b))),
        "stopped_by_the_time_limit": [list(k) for k in stopped],
        "differences": [list(k) for k in differ],
        "not_ast_old": sum(r["mode"] != "ast" for r in a.values()),
        "not_ast_new": sum(r["mode"] != "ast" for r in b.values()),
        "ll_stage_files": [list(k) for k in b if b[k]["ll_stage"]],
        "ll_stage_parsed": [list(k) for k in b if b[k]["ll_stage"] and b[k]["mode"] == "ast"],
        "corpora": corpora,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("corpora", type=Path, nargs="+")
    c = sub.add_parser("diff")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    c.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.out, args.corpora)
        return
    report = diff(args.old, args.new)
    print(json.dumps({k: v for k, v in report.items() if k != "corpora"}, indent=1))
    for name, c in report["corpora"].items():
        print(f"{name}: {c['files']} files, CPU {c['old_cpu_s']} s old, {c['new_cpu_s']} s new")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    sys.exit(1 if report["differences"] or report["files_only_in_one"] else 0)


if __name__ == "__main__":
    main()
