"""The ``h2o-chat`` command line: ``ask``, ``chat``, ``serve``, ``models``, ``pull``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from h2o_chat.cli._output import CLIError, server_extra
from h2o_chat.local import require_server


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered.

    ``serve`` is only named here: its own parser is built when it runs (:func:`_serve`).
    """
    from h2o_chat.cli import ask, chat, models, pull

    parser = argparse.ArgumentParser(
        prog="h2o-chat",
        description="Chat with models over the H2o (chat-ui + TGI) protocol, or serve them.",
        epilog="examples:\n"
        "  h2o-chat ask 'What is the capital of Japan?'\n"
        "  h2o-chat chat\n"
        "  h2o-chat serve --port 8000      # then, elsewhere:\n"
        "  H2O_CHAT_URL=http://127.0.0.1:8000 h2o-chat models\n"
        "\n"
        "Without --url or H2O_CHAT_URL, ask, chat and models run the built-in model locally.\n"
        "'h2o-chat COMMAND --help' shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log requests and errors to stderr"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (ask, chat, models, pull):
        module.register(commands)
    serve = commands.add_parser("serve", help="run an H2o-compatible chat server", add_help=False)
    serve.set_defaults(handler=_serve)
    return parser


def _serve(args: argparse.Namespace) -> int:
    """``h2o-chat serve``: its options and the server come from the ``server`` extra."""
    with server_extra("'h2o-chat serve'"):
        require_server()
    from h2o_chat.cli import serve

    return serve.main(args.serve_argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``h2o-chat`` script: 0 ok, 1 error (one line on stderr), 130 Ctrl-C."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        args.serve_argv = rest  # for serve's own parser
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        logging.getLogger("h2o_chat").setLevel(logging.DEBUG)
    try:
        result: int = args.handler(args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``| head``): stop quietly, without a second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
