"""A tally of the bad inputs the hardening tests tried, for the table in docs/hardening.md.

Tests call `record(...)` with what they tried (hypothesis examples actually run, hand-written
cases), how many passed and what was lost. With VICTOR_TALLY set (scripts/test-hardening sets
it), each record is appended to that file as a JSON line; otherwise nothing is written.

    python -m tests.support.tally FILE    # the table of a run
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def record(what: str, tried: int, passed: int, lost: int = 0, note: str = "") -> None:
    path = os.environ.get("VICTOR_TALLY")
    if not path:
        return
    line = {"what": what, "tried": tried, "passed": passed, "lost": lost, "note": note}
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    out = ["| bad input | tried | passed | lost |", "|---|---:|---:|---:|"]
    for r in rows:
        note = f" ({r['note']})" if r["note"] else ""
        out.append(f"| {r['what']}{note} | {r['tried']} | {r['passed']} | {r['lost']} |")
    total = [sum(r[k] for r in rows) for k in ("tried", "passed", "lost")]
    out.append(f"| **total** | **{total[0]}** | **{total[1]}** | **{total[2]}** |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
