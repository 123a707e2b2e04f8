"""``h2o_chat.server.backends.sources`` in-process: a SOURCE parsed, then its engine built."""

from __future__ import annotations

from pathlib import Path

import pytest

from h2o_chat.server.backends.base import Backend
from h2o_chat.server.backends.llamacpp_settings import EngineSettings
from h2o_chat.server.backends.openai_upstream import OpenAIUpstreamBackend
from h2o_chat.server.backends.sources import (
    GGUFSource,
    PythonSource,
    Source,
    SyntheticSource,
    UpstreamSource,
    load_backend,
    parse_source,
)
from h2o_chat.server.backends.synthetic import SyntheticBackend
from tests.support.backends import Transcript

PARALLEL = 3


def load(model_id: str, source: Source) -> Backend:
    return load_backend(model_id, source, upstream_timeout=5.0, upstream_parallel=PARALLEL)


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("builtin", GGUFSource()),
        ("http://127.0.0.1:8080/v1#qwen2.5", UpstreamSource("http://127.0.0.1:8080/v1", "qwen2.5")),
        ("https://example.org/v1", UpstreamSource("https://example.org/v1")),
        ("http://h/v1#", UpstreamSource("http://h/v1")),
        ("synthetic", SyntheticSource()),
        ("synthetic:0", SyntheticSource(0)),
        ("synthetic:12", SyntheticSource(12)),
        ("python:tests.support.backends:slow", PythonSource("tests.support.backends", "slow")),
        ("python:a:b:c", PythonSource("a:b", "c")),  # the factory is after the last colon
    ],
)
def test_each_kind_of_source_parses_to_its_value(text: str, source: Source) -> None:
    assert parse_source(text) == source


def test_a_gguf_source_must_be_an_existing_file(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    assert parse_source(str(model)) == GGUFSource(model)
    (tmp_path / "folder.gguf").mkdir()
    for missing in (tmp_path / "missing.gguf", tmp_path / "folder.gguf"):
        with pytest.raises(ValueError) as caught:
            parse_source(str(missing))
        assert str(caught.value) == (
            f"no GGUF file at {missing}: give the path of an existing .gguf file"
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("synthetic:", "expected synthetic or synthetic:N, got 'synthetic:'"),
        ("synthetic:x", "expected synthetic or synthetic:N, got 'synthetic:x'"),
        ("synthetic:-1", "expected synthetic or synthetic:N, got 'synthetic:-1'"),
        ("python:module", "expected python:MODULE:FACTORY, got 'python:module'"),
        ("python::factory", "expected python:MODULE:FACTORY, got 'python::factory'"),
        ("python:module:", "expected python:MODULE:FACTORY, got 'python:module:'"),
    ],
)
def test_a_malformed_source_says_what_is_expected(text: str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_source(text)
    assert str(caught.value) == expected


@pytest.mark.parametrize("text", ["", "ftp://nowhere", "Builtin", "model.GGUF", "synthetic5"])
def test_an_unknown_source_lists_the_kinds(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_source(text)
    assert str(caught.value) == (
        f"unknown model source {text!r}: expected builtin, a .gguf path, an http(s) URL, "
        "synthetic[:N] or python:MODULE:FACTORY"
    )


async def test_the_builtin_source_is_a_model_in_this_process_not_yet_loaded() -> None:
    engine = EngineSettings(parallel=3, threads=1)
    backend = load_backend(
        "smol", GGUFSource(), upstream_timeout=5.0, upstream_parallel=PARALLEL, engine=engine
    )
    try:
        assert isinstance(backend, Backend)
        assert (backend.kind, backend.parallel) == ("builtin", 3)  # the engine's slots
    finally:
        await backend.aclose()


async def test_an_upstream_source_names_its_model_or_the_served_id() -> None:
    named = load("qwen", UpstreamSource("http://127.0.0.1:9/v1/", "qwen2.5"))
    unnamed = load("qwen", UpstreamSource("http://127.0.0.1:9/v1"))
    try:
        for backend, model in ((named, "qwen2.5"), (unnamed, "qwen")):
            assert isinstance(backend, OpenAIUpstreamBackend)
            assert (backend.base_url, backend.model) == ("http://127.0.0.1:9/v1", model)
            assert backend.parallel == PARALLEL
    finally:
        await named.aclose()
        await unnamed.aclose()


def test_a_synthetic_source_is_the_synthetic_engine() -> None:
    backend = load("five", SyntheticSource(5))
    assert isinstance(backend, SyntheticBackend) and backend.count == 5


def transcript_named(model_id: str) -> Transcript:
    """A factory for the test below: it keeps the id it was called with."""
    backend = Transcript()
    backend.kind = model_id
    return backend


def not_a_backend(model_id: str) -> object:
    return model_id


def test_a_python_source_calls_its_factory_with_the_model_id() -> None:
    backend = load("scribe", PythonSource(__name__, "transcript_named"))
    assert isinstance(backend, Transcript) and backend.kind == "scribe"


def test_a_python_source_must_return_a_backend() -> None:
    with pytest.raises(TypeError) as caught:
        load("x", PythonSource(__name__, "not_a_backend"))
    assert str(caught.value) == f"python:{__name__}:not_a_backend returned str, not a backend"
