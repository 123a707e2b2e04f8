"""A fault server shared by the client tests, with a fresh plan for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.faultserver import FaultServer, Plan, running_fault_server


@pytest.fixture(scope="module")
def fault_server_module() -> Iterator[tuple[str, FaultServer]]:
    with running_fault_server() as running:
        yield running


@pytest.fixture
def fault(fault_server_module: tuple[str, FaultServer]) -> FaultServer:
    server = fault_server_module[1]
    server.plan = Plan()
    server.requests.clear()
    server.bodies.clear()
    return server


@pytest.fixture
def url(fault_server_module: tuple[str, FaultServer], fault: FaultServer) -> str:
    return fault_server_module[0]
