"""``h2o-chat models``: the models the server serves."""

from __future__ import annotations

import argparse

import orjson

from h2o_chat.cli._connect import add_url_argument, connect
from h2o_chat.cli._output import table


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``models`` subcommand."""
    parser = commands.add_parser(
        "models",
        help="list the models the server serves",
        description="List the models the server serves: id, backend, context length, aliases.",
        epilog="examples:\n"
        "  h2o-chat models --url http://127.0.0.1:8000\n"
        "  h2o-chat models --json | jq -r '.[].id'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_url_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    with connect(args.url) as connection:
        served = connection.models()
    if args.json:
        print(orjson.dumps([m.to_dict() for m in served], option=orjson.OPT_INDENT_2).decode())
    else:
        rows = [(m.id, m.backend, str(m.context_length), ", ".join(m.aliases)) for m in served]
        print(table(("id", "backend", "context", "aliases"), rows))
    return 0
