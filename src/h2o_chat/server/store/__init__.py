"""Where sessions and conversations live: :mod:`.base` (the interface, the records, the schema
version and the rule of one turn at a time), :mod:`.sqlite` (one file, one process) and
:mod:`.postgres` (one database behind any number of replicas)."""

from __future__ import annotations

from h2o_chat.server.store.base import (
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    StopHandler,
    Store,
)


async def open_store(database: Database, on_stop: StopHandler) -> Store:
    """Open (create, migrate) the store ``database`` names.

    ``on_stop(conversation_id)`` is called when another replica asks this one to stop that
    conversation's generations. psycopg is imported only for a PostgreSQL database.
    """
    match database:
        case SQLiteDatabase(path):
            from h2o_chat.server.store.sqlite import SQLiteStore

            return await SQLiteStore.open(path)
        case PostgresDatabase():
            from h2o_chat.server.store.postgres import PostgresStore

            return await PostgresStore.open(database, on_stop)
