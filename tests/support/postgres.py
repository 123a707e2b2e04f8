"""A PostgreSQL cluster of the tests' own, and the pytest fixtures that hand it out.

:func:`cluster` runs Debian's ``initdb`` and ``pg_ctl`` (found with ``pg_config --bindir``,
else under ``/usr/lib/postgresql/*/bin``) in a temporary directory, listening on a free port
of 127.0.0.1 (its unix socket in that directory, never ``/var/run``), and removes it all
afterwards. PostgreSQL refuses to run as root, so under root (CI, containers) the cluster
belongs to ``nobody`` and its commands run through ``runuser`` (or ``setpriv``).

Registered as a plugin in ``tests/conftest.py``: the session-scoped ``postgres`` fixture is
one cluster for the whole run; ``postgres_url`` is a fresh empty database in it per test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.servers import free_port

STORES = ("sqlite", "postgresql")  # for tests parametrized over both stores
USER = "h2o"  # the cluster's superuser, trusted on loopback
UNPRIVILEGED = "nobody"
# Settings for a throwaway cluster: no fsync (a clean stop still writes everything out).
SETTINGS = ("fsync=off", "full_page_writes=off", "max_connections=200")
START_SECONDS = 60


def bindir() -> Path:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``)."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if (Path(found) / "initdb").exists():
            return Path(found)
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if versions:
        return Path(versions[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: ./dev installs Debian's postgresql package")


def _as_owner() -> list[str]:
    """The command prefix that runs a program as the cluster's owner."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", UNPRIVILEGED, "--"]
    return ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups"]


@dataclass
class Cluster:
    """A running PostgreSQL cluster in ``root``, on 127.0.0.1:``port``."""

    root: Path
    port: int
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str | Path) -> None:
        command = [*_as_owner(), *map(str, argv)]
        done = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
        )
        if done.returncode != 0:
            log = self.log()
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}{done.stdout}\n{log}")

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        options += "".join(f" -c {setting}" for setting in SETTINGS)
        self._run(
            self.bin / "pg_ctl", "start", "-w", "-t", str(START_SECONDS), "-D", self.data,
            "-l", self.root / "postgres.log", "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` disconnects every client and writes everything out;
        ``immediate`` is a crash (recovered from the WAL at the next start)."""
        self._run(self.bin / "pg_ctl", "stop", "-w", "-m", mode, "-D", self.data)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def query(
        self, url: str, statement: str, params: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        """Run one statement on the database at ``url`` (autocommit); its rows, if any."""
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A new cluster, started; stopped and deleted when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="h2o-chat-pg-"))  # in /tmp: nobody can reach it
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(UNPRIVILEGED)
            os.chown(root, owner.pw_uid, owner.pw_gid)
        running = Cluster(root, free_port(), bindir())
        running._run(
            running.bin / "initdb", "-D", running.data, "-U", USER, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        running.start()
        try:
            yield running
        finally:
            if running.running():
                running.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """One PostgreSQL cluster for the whole test run."""
    with cluster() as running:
        yield running


@pytest.fixture
def postgres_url(postgres: Cluster) -> str:
    """A fresh, empty database of the session's cluster."""
    return postgres.create_database()


def db_argument(kind: str, request: pytest.FixtureRequest, directory: Path) -> Path | str:
    """``--db`` for a server of the store ``kind`` (one of :data:`STORES`): a new SQLite file
    in ``directory``, or a new database of the session's cluster."""
    if kind == "sqlite":
        return directory / "h2o-chat.sqlite3"
    running: Cluster = request.getfixturevalue("postgres")
    return running.create_database()
