"""``h2o_chat.server.config`` in-process: ``--model``/``--alias`` parsing and the checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from h2o_chat.protocol.payloads import H2O_2023_MODELS
from h2o_chat.server.backends.sources import GGUFSource, SyntheticSource, UpstreamSource
from h2o_chat.server.config import (
    BUILTIN_MODEL_ID,
    ModelSpec,
    ServerConfig,
    check_names,
    parse_alias,
    parse_model_spec,
)
from h2o_chat.server.store.base import (
    PostgresDatabase,
    SQLiteDatabase,
    default_database,
    parse_database,
)

ECHO = ModelSpec("echo", SyntheticSource())
FIVE = ModelSpec("five", SyntheticSource(5))


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("echo=synthetic", ECHO),
        (" five = synthetic:5 ", FIVE),
        ("up=http://h/v1?key=1#m", ModelSpec("up", UpstreamSource("http://h/v1?key=1", "m"))),
        ("SmolLM2=builtin", ModelSpec("SmolLM2", GGUFSource())),
    ],
)
def test_a_model_spec_is_an_id_and_a_parsed_source(text: str, spec: ModelSpec) -> None:
    assert parse_model_spec(text) == spec


@pytest.mark.parametrize("text", ["echo", "=synthetic", "echo=", " = ", ""])
def test_a_model_spec_needs_an_id_and_a_source(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_model_spec(text)
    assert str(caught.value) == f"expected ID=SOURCE, got {text!r}"


def test_a_model_spec_with_a_bad_source_says_what_a_source_is() -> None:
    with pytest.raises(ValueError, match="unknown model source 'ftp://nowhere': expected builtin"):
        parse_model_spec("x=ftp://nowhere")


def test_an_alias_is_a_name_and_an_id() -> None:
    assert parse_alias(" parrot = echo ") == ("parrot", "echo")
    for text in ("parrot", "parrot=", "=echo"):
        with pytest.raises(ValueError) as caught:
            parse_alias(text)
        assert str(caught.value) == f"expected NAME=ID, got {text!r}"


def test_distinct_ids_and_aliases_of_served_ids_pass() -> None:
    check_names(["echo", "five"], {"parrot": "echo", "hand": "five", "p2": "echo"})
    check_names([], {})


@pytest.mark.parametrize(
    ("ids", "aliases", "message"),
    [
        (["echo", "five", "echo"], {}, "model id 'echo' given twice"),
        (["echo", "five"], {"five": "echo"}, "alias 'five' is already a model id"),
        (["echo"], {"parrot": "gpt-5"}, "alias 'parrot' points to 'gpt-5', which is not served"),
        (["echo"], {"p": "echo", "q": "p"}, "alias 'q' points to 'p', which is not served"),
    ],
)
def test_names_that_would_mean_two_things_are_refused(
    ids: list[str], aliases: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        check_names(ids, aliases)
    assert str(caught.value) == message


def test_the_default_serves_the_builtin_model_under_the_seed_ids(tmp_path: Path) -> None:
    config = ServerConfig(aliases={"smol": BUILTIN_MODEL_ID}, db=SQLiteDatabase(tmp_path / "db"))
    assert config.models == (ModelSpec(BUILTIN_MODEL_ID, GGUFSource()),)
    assert config.model_ids == [BUILTIN_MODEL_ID]
    h2o_2023_aliases = dict.fromkeys(H2O_2023_MODELS.values(), BUILTIN_MODEL_ID)
    assert config.aliases == {**h2o_2023_aliases, "smol": BUILTIN_MODEL_ID}


def test_named_models_get_only_their_own_aliases(tmp_path: Path) -> None:
    config = ServerConfig(
        models=(ECHO, FIVE), aliases={"parrot": "echo"}, db=SQLiteDatabase(tmp_path)
    )
    assert (config.model_ids, config.aliases) == (["echo", "five"], {"parrot": "echo"})


def test_the_config_checks_its_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model id 'echo' given twice"):
        ServerConfig(models=(ECHO, ECHO), db=SQLiteDatabase(tmp_path))
    with pytest.raises(ValueError, match="alias 'x' points to 'nowhere'"):
        ServerConfig(models=(ECHO,), aliases={"x": "nowhere"}, db=SQLiteDatabase(tmp_path))


@pytest.mark.parametrize(
    ("field", "lowest", "message"),
    [
        ("queue_size", 0, "queue size must be >= 0"),
        ("keep_alive", 0.001, "keep-alive interval must be > 0 seconds"),
        ("upstream_parallel", 1, "upstream parallel must be >= 1"),
        ("max_body_bytes", 1, "max body bytes must be >= 1"),
    ],
)
def test_limits_have_a_floor(tmp_path: Path, field: str, lowest: Any, message: str) -> None:
    lowest_ok: dict[str, Any] = {field: lowest}
    assert (
        getattr(ServerConfig(models=(ECHO,), db=SQLiteDatabase(tmp_path), **lowest_ok), field)
        == lowest
    )
    below: dict[str, Any] = {field: lowest - 1 if isinstance(lowest, int) else 0.0}
    with pytest.raises(ValueError) as caught:
        ServerConfig(models=(ECHO,), db=SQLiteDatabase(tmp_path), **below)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "database"),
    [
        ("chat.sqlite3", SQLiteDatabase(Path("chat.sqlite3"))),
        (" /srv/h2o/db ", SQLiteDatabase(Path("/srv/h2o/db"))),
        ("postgresql://h2o@db:5432/chat", PostgresDatabase("postgresql://h2o@db:5432/chat")),
        ("postgres:///chat?host=/run/pg", PostgresDatabase("postgres:///chat?host=/run/pg")),
    ],
)
def test_db_is_a_sqlite_path_or_a_postgresql_url(text: str, database: object) -> None:
    assert parse_database(text) == database


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a SQLite file path or a postgresql:// URL, got nothing"),
        ("mysql://db/chat", "unknown database URL scheme 'mysql'"),
    ],
)
def test_db_that_is_neither_says_what_it_takes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_database(text)


def test_a_postgresql_password_never_shows() -> None:
    database = parse_database("postgresql://h2o:s3cret@db:5432/chat")
    assert str(database) == "postgresql://h2o:***@db:5432/chat"
    assert "s3cret" not in repr(ServerConfig(models=(ECHO,), db=database))


def test_the_default_db_is_a_sqlite_file_in_the_data_directory() -> None:
    assert ServerConfig(models=(ECHO,)).db == default_database()
    assert default_database().path.name == "h2o-chat.sqlite3"
