"""Running ``h2o-chat`` as a child of a test, and the prompts the tests ask."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence

import pexpect

JAPAN = "What is the capital of Japan?"
GREEDY = ("-p", "do_sample=false")
# Greedy decoding without a repetition penalty makes the small model count on and on.
LONG = ("-p", "do_sample=false", "-p", "repetition_penalty=1.0", "-p", "max_new_tokens=2500")
LONG_PROMPT = "List the numbers from 1 to 1000, separated by commas."

H2O_CHAT = (sys.executable, "-m", "h2o_chat")


def default_sigint() -> None:
    """In the child before it runs ``h2o-chat``: SIGINT back to its default action.

    A shell without job control starts a background job with SIGINT ignored, and an ignored
    signal stays ignored across exec; a test launched that way (``bash -c 'pytest & wait'``)
    would otherwise send its Ctrl-C to a child that never sees it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def h2o_chat(
    *args: str,
    env: dict[str, str],
    stdin: str = "",
    timeout: float = 240,
    program: Sequence[str] = H2O_CHAT,
) -> subprocess.CompletedProcess[str]:
    """Run ``h2o-chat ARGS`` (``program``: how to start it) to completion, ``stdin`` piped in."""
    return subprocess.run(
        [*program, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``h2o-chat ARGS`` started with stdout and stderr piped, for a test to interrupt."""
    return subprocess.Popen(
        [*H2O_CHAT, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=default_sigint,
    )


def spawn(
    *args: str, env: dict[str, str], dimensions: tuple[int, int] | None = None
) -> pexpect.spawn:
    """``h2o-chat ARGS`` in a pseudo-terminal, where Ctrl-C (``sendintr``) reaches it."""
    return pexpect.spawn(
        H2O_CHAT[0],
        [*H2O_CHAT[1:], *args],
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=dimensions,
        preexec_fn=default_sigint,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a failed command (exit status 1, no traceback)."""
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]
