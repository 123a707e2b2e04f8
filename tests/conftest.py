"""Plugins for the whole suite: the reliability summary (RELIABILITY.md), and the PostgreSQL
cluster the store and replica tests share (``postgres``, ``postgres_url``)."""

pytest_plugins = ["tests.reliability.report", "tests.support.postgres"]
