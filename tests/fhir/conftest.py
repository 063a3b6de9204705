"""Fixtures of the client tests: one scripted upstream on 127.0.0.1 per module, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fhir.scripted import Scripted
from tests.server import running_server


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[Scripted]:
    scripted = Scripted()
    with running_server(scripted.app()) as root:
        scripted.root = root
        scripted.base = f"{root}/fhir"
        yield scripted


@pytest.fixture
def scripted(scripted_server: Scripted) -> Scripted:
    scripted_server.reset()
    return scripted_server
