"""``h2o-chat chat``: an interactive session on one server-side conversation."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import platformdirs

from h2o_chat import errors
from h2o_chat.cli._args import add_chat_arguments, parse_params
from h2o_chat.cli._connect import Connection, connect
from h2o_chat.cli._output import CLIError
from h2o_chat.cli._turn import run_turn

HELP = """\
/help          show this help
/new           start a new conversation
/model [NAME]  show the served models, or start a new conversation with NAME
/system [TEXT] start a new conversation with this system prompt (none without TEXT)
/exit          quit (or Ctrl-D)
Enter sends; Alt-Enter (Esc Enter) or a trailing backslash starts a new line.
Ctrl-C stops an answer, or clears the line at the prompt."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``chat`` subcommand."""
    parser = commands.add_parser(
        "chat",
        help="chat interactively on one conversation",
        description="Chat interactively on one server-side conversation; each turn sends only\n"
        "the new message. When stdin is not a terminal, each line is one turn (a trailing\n"
        "backslash continues it) and the first failure exits with status 1.",
        epilog="commands in the session:\n" + HELP + "\n\nexamples:\n"
        "  h2o-chat chat --system 'Answer briefly.'\n"
        "  h2o-chat chat -m h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3 -p temperature=0.2\n"
        "  printf 'Hi\\nAnd again?\\n' | h2o-chat chat",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_chat_arguments(parser)
    parser.set_defaults(handler=run)


def history_path() -> str:
    """The prompt history file under the user's data directory, kept across runs."""
    directory = platformdirs.user_data_path("h2o-chat")
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory / "chat_history")


def terminal_lines() -> Iterator[str]:
    """Lines typed at a prompt_toolkit prompt; Ctrl-C clears the line, Ctrl-D ends."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    bindings = KeyBindings()

    @bindings.add("enter")
    def _submit(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.document.is_cursor_at_the_end and buffer.text.endswith("\\"):
            buffer.delete_before_cursor()
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    session: PromptSession[str] = PromptSession(
        history=FileHistory(history_path()),
        multiline=True,
        key_bindings=bindings,
        prompt_continuation="... ",
    )
    while True:
        try:
            yield session.prompt(">>> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


def piped_lines() -> Iterator[str]:
    """Lines of stdin; a line ending in a backslash continues on the next one."""
    pending: list[str] = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        yield "\n".join([*pending, line])
        pending.clear()
    if pending:
        yield "\n".join(pending)


class Session:
    """The REPL's state: one conversation, its model, system prompt and parameters."""

    def __init__(
        self,
        connection: Connection,
        model: str | None,
        system: str | None,
        params: dict[str, Any],
        interactive: bool,
    ) -> None:
        self.connection = connection
        self.params = params
        self.interactive = interactive
        self.system = system
        self.conversation = connection.conversation(model, system)

    def new(self, *, model: str | None = None, system: str | None = None) -> None:
        """Start a new conversation (keeping the model unless given)."""
        self.system = system
        self.conversation = self.connection.conversation(model or self.connection.model, system)
        with_system = ", system prompt set" if system else ""
        self.note(f"(new conversation with {self.connection.model}{with_system})")

    def note(self, text: str) -> None:
        """A message from the REPL itself, shown only to a person at a terminal."""
        if self.interactive:
            print(text, flush=True)

    def handle(self, line: str) -> bool:
        """Run one command or turn; False when the session should end."""
        command, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if command in ("/exit", "/quit", "/bye"):
            return False
        if command == "/help":
            print(HELP)
        elif command == "/new":
            self.new(system=self.system)
        elif command == "/system":
            self.new(system=rest or None)
        elif command == "/model":
            self.switch_model(rest)
        elif command.startswith("/"):
            self.error(f"unknown command {command}; /help lists the commands")
        elif line.strip():
            self.ask(line)
        return True

    def switch_model(self, name: str) -> None:
        """``/model``: list the served models, or move to a new conversation with ``name``."""
        served = self.connection.models()
        if name and any(name == m.id or name in m.aliases for m in served):
            self.new(model=name, system=self.system)
            return
        names = ", ".join(m.id for m in served)
        if name:
            self.error(f"model {name!r} is not served; the server serves: {names}")
        else:
            print(f"model: {self.connection.model}; served: {names}")

    def ask(self, text: str) -> None:
        """One turn; Ctrl-C stops the answer and returns to the prompt."""
        try:
            run_turn(self.conversation, text, self.params)
        except KeyboardInterrupt:
            print("\n[stopped]", flush=True)

    def error(self, message: str) -> None:
        """Report a failed command or turn: at a terminal, go on; in a script, stop."""
        if not self.interactive:
            raise CLIError(message)
        print(f"error: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """The REPL; exit 0 on /exit or Ctrl-D, 1 when a scripted turn fails."""
    params = parse_params(args.param)
    interactive = sys.stdin.isatty()
    with connect(args.url) as connection:
        session = Session(connection, args.model, args.system, params, interactive)
        session.note(f"Chatting with {connection.model}. /help for commands, Ctrl-D to quit.")
        lines = terminal_lines() if interactive else piped_lines()
        for line in lines:
            try:
                if not session.handle(line):
                    break
            except errors.H2oError as exc:
                session.error(connection.explain(exc))
    return 0
