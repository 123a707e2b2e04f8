"""``h2o-chat ask``: one question, the answer streamed to stdout."""

from __future__ import annotations

import argparse
import sys

from h2o_chat.cli._args import add_chat_arguments, parse_params
from h2o_chat.cli._connect import connect
from h2o_chat.cli._output import CLIError
from h2o_chat.cli._turn import run_turn


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ask`` subcommand."""
    parser = commands.add_parser(
        "ask",
        help="ask one question and stream the answer",
        description="Ask one question; the answer streams to stdout token by token.",
        epilog="examples:\n"
        "  h2o-chat ask 'What is the capital of Japan?'\n"
        "  git diff | h2o-chat ask --system 'Review this diff.'\n"
        "  h2o-chat ask --json -p do_sample=false -p max_new_tokens=32 'Hi'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "prompt",
        nargs="?",
        metavar="PROMPT",
        help="the question; '-' or omitted reads it from stdin when stdin is not a terminal",
    )
    add_chat_arguments(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line: each token, then the result with timings",
    )
    parser.add_argument(
        "--no-stream", action="store_true", help="print the answer once it is complete"
    )
    parser.set_defaults(handler=run)


def read_prompt(prompt: str | None) -> str:
    """The prompt argument, or stdin when it is '-' or omitted and stdin is not a terminal."""
    if prompt is not None and prompt != "-":
        text = prompt
    elif prompt == "-" or not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        raise CLIError("no prompt given: pass PROMPT, or pipe it on stdin (echo hi | h2o-chat ask)")
    if not text.strip():
        raise CLIError("the prompt is empty: give the question as PROMPT or on stdin")
    return text


def run(args: argparse.Namespace) -> int:
    """Ask the question; exit 0, 1 on error, 130 on Ctrl-C (raised as KeyboardInterrupt)."""
    params = parse_params(args.param)  # a mistake in the options before waiting on stdin
    text = read_prompt(args.prompt)
    with connect(args.url) as connection:
        conversation = connection.conversation(args.model, args.system)
        run_turn(conversation, text, params, json=args.json, stream=not args.no_stream)
    return 0
