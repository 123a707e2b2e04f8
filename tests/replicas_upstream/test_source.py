"""A SOURCE of comma-separated upstream URLs: parsed into replicas, loaded as one replica set."""

from __future__ import annotations

from h2o_chat.server.backends.replicas import ReplicatedBackend
from h2o_chat.server.backends.sources import (
    ReplicatedSource,
    UpstreamSource,
    load_backend,
    parse_source,
)

SOURCE = "http://127.0.0.1:9/v1#smol, http://user:pw@127.0.0.1:10/v1"


def test_comma_separated_urls_are_replicas_of_one_model() -> None:
    assert parse_source(SOURCE) == ReplicatedSource(
        (
            UpstreamSource("http://127.0.0.1:9/v1", "smol"),
            UpstreamSource("http://user:pw@127.0.0.1:10/v1"),
        )
    )


async def test_replicas_load_as_one_set_of_upstream_engines() -> None:
    backend = load_backend("qwen", parse_source(SOURCE), upstream_timeout=5.0, upstream_parallel=3)
    try:
        assert isinstance(backend, ReplicatedBackend)
        assert (backend.kind, backend.parallel) == ("replicas", 6)
        assert [(s.url, s.up) for s in backend.replica_states()] == [
            ("http://127.0.0.1:9/v1", False),  # down until started
            ("http://127.0.0.1:10/v1", False),
        ]
    finally:
        await backend.aclose()
