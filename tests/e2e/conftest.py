"""The bridge served for real (uvicorn on 127.0.0.1) on its embedded ROR simulator, for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from bridge.app import create_app
from bridge.config import load_settings
from bridge.simulator.dataset import Dataset
from tests.server import running_server

# Small enough to start fast, large enough for every depth of the organisation tree.
SCALE = 120
SEED = 7


@dataclass(frozen=True)
class RunningBridge:
    url: str
    app: FastAPI
    dataset: Dataset

    @property
    def csd(self) -> str:
        return f"{self.url}/csd"


@pytest.fixture(scope="session")
def bridge() -> Iterator[RunningBridge]:
    app = create_app(load_settings(demo_scale=SCALE, demo_seed=SEED))
    dataset = app.state.upstream.dataset
    assert dataset is not None
    with running_server(app) as url:
        yield RunningBridge(url=url, app=app, dataset=dataset)


def identifier(resource: dict[str, Any], system: str) -> str | None:
    for item in resource.get("identifier", []):
        if item.get("system") == system:
            return str(item["value"])
    return None
