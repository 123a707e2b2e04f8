"""Several ``h2o-chat serve`` replicas on one PostgreSQL database, as behind a load balancer.

Each replica is a :class:`~tests.support.lab.Lab` with the synthetic ``echo`` model and the
``recall`` engine (:class:`tests.support.backends.Recalling`: the history it was given, then,
for a message starting with ``long``, traced numbered tokens). The replicas share one trace
file, so a test can follow a generation whichever replica runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

from h2o_chat.protocol.stream import Event, StreamParser
from tests.support.h2o import checked
from tests.support.lab import BACKENDS, Lab, lab

REPLICA_MODELS = (*("--model", "echo=synthetic"), *("--model", f"recall={BACKENDS}:recalling"))


@contextlib.contextmanager
def replicas(tmp_path: Path, db: str, *args: str, count: int = 2) -> Iterator[list[Lab]]:
    """``count`` replicas on the database ``db`` (a ``postgresql://`` URL), until the block
    ends; ``args`` go to every one."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(lab(tmp_path, *REPLICA_MODELS, *args, db=db)) for _ in range(count)
        ]


def events(response: httpx.Response) -> Iterator[Event]:
    """The events of a streamed answer as they arrive."""
    parser = StreamParser()
    for chunk in response.iter_bytes():
        yield from checked(parser.feed(chunk))
    yield from checked(parser.close())


def replica_locks(url: str) -> int:
    """How many replicas hold their liveness lock on the database at ``url`` (see
    :mod:`h2o_chat.server.store.postgres`): the live replicas, once PostgreSQL has noticed a
    dead one's connections close."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    assert row is not None
    return int(row[0])
