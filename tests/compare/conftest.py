"""Fixtures of the comparison tests: the bridge served for real on its demo data, its extraction, and a fake
legacy CSD service that answers with the bridge's own answers carrying known injected differences."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.app import create_app
from bridge.config import load_settings
from tests.compare.inject import inject
from tests.server import running_server

SCALE = 40
SEED = 11


@pytest.fixture(scope="session")
def bridge_url() -> Iterator[str]:
    app = create_app(load_settings(demo_scale=SCALE, demo_seed=SEED))
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="session")
def extraction(bridge_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bridge's GET /extraction, saved: the "bridge" document of the documents mode."""
    path = tmp_path_factory.mktemp("extraction") / "bridge.xml"
    response = httpx.get(f"{bridge_url}/extraction", timeout=120)
    response.raise_for_status()
    path.write_bytes(response.content)
    return path


def legacy_app(bridge_url: str, *, delay_s: float = 0.0) -> Starlette:
    """A legacy CSD service: forwards each request to the bridge, answers the injected copy of its answer."""

    async def csd(request: Request) -> Response:
        import asyncio

        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "soapaction")}
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.post(f"{bridge_url}/csd", content=body, headers=headers)
        if delay_s:
            await asyncio.sleep(delay_s)
        content = answer.content
        if answer.status_code == 200:
            content, _ = inject(content)
        return Response(content, status_code=answer.status_code, media_type=answer.headers["content-type"])

    return Starlette(routes=[Route("/legacy/csd", csd, methods=["POST"])])


@pytest.fixture(scope="session")
def legacy_url(bridge_url: str) -> Iterator[str]:
    with running_server(legacy_app(bridge_url)) as url:
        yield f"{url}/legacy/csd"
