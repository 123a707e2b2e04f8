"""Plugins for the whole suite: the reliability summary (RELIABILITY.md)."""

pytest_plugins = ["tests.reliability.report"]
