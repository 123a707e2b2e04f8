"""``python -m bench.inline_sqlite serve ARGS``: ``h2o-chat serve`` with its SQLite statements
run on the event loop, as the server ran them before the store had a thread of its own.

The reference of benchmark 8: the same code and SQL, only where it runs differs.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from h2o_chat.cli import main
from h2o_chat.server.store.base import StoreUnavailable
from h2o_chat.server.store.sqlite import UNAVAILABLE, SQLiteStore

T = TypeVar("T")


async def _on_the_loop(
    self: SQLiteStore, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    try:
        return function(*args, **kwargs)
    except sqlite3.OperationalError as exc:
        if str(exc).lower().startswith(UNAVAILABLE):
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        raise


SQLiteStore._run = _on_the_loop  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
