"""Kept for ``python:tests.server.backends:failing`` in tests/cli: the engines now live in
:mod:`tests.support.backends`; remove this once nothing names it."""

from tests.support.backends import failing, slow, transcript

__all__ = ["failing", "slow", "transcript"]
