"""The pure layer stays pure: importing the protocol (and the errors) loads no HTTP library."""

from __future__ import annotations

import subprocess
import sys


def test_protocol_imports_no_http_library() -> None:
    code = (
        "import sys, h2o_chat.protocol, h2o_chat.errors; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore', 'h11'}))"
    )
    # A fresh interpreter: this one has long imported httpx for other tests.
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
