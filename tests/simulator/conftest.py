"""Fixtures of the simulator tests: a shared scale-300 dataset and an in-process HTTP client on the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from bridge.simulator.dataset import Dataset, generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app

BASE = "http://sim"


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return generate_dataset(300, 1)


@pytest.fixture
def app(dataset: Dataset) -> FastAPI:
    return create_simulator_app(SimulatorConfig(), dataset)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        yield http
