"""Running ``h2o-chat`` as a subprocess, and the prompts the tests ask."""

from __future__ import annotations

import subprocess
import sys

JAPAN = "What is the capital of Japan?"
GREEDY = ("-p", "do_sample=false")
# Greedy decoding without a repetition penalty makes the small model count on and on.
LONG = ("-p", "do_sample=false", "-p", "repetition_penalty=1.0", "-p", "max_new_tokens=2500")
LONG_PROMPT = "List the numbers from 1 to 1000, separated by commas."


def h2o_chat(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``h2o-chat ARGS`` to completion with ``stdin`` piped in."""
    return subprocess.run(
        [sys.executable, "-m", "h2o_chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a failed command (exit status 1, no traceback)."""
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]
