"""The bridge served for real (uvicorn on 127.0.0.1) on its embedded ROR simulator, for the interop lab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.app import create_app
from bridge.config import load_settings
from tests.e2e.conftest import SCALE, SEED, RunningBridge
from tests.server import running_server


@pytest.fixture(scope="session")
def lab_bridge() -> Iterator[RunningBridge]:
    app = create_app(load_settings(demo_scale=SCALE, demo_seed=SEED))
    dataset = app.state.upstream.dataset
    assert dataset is not None
    with running_server(app) as url:
        yield RunningBridge(url=url, app=app, dataset=dataset)
