"""Two instances filling the same extraction cache key at once: one whole document, no partial file."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

import httpx

from bridge.app import create_app
from bridge.config import load_settings
from tests.server import running_server


def test_two_instances_fill_one_key_without_corruption(tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"

    def instance() -> object:
        return create_app(
            load_settings(demo_scale=80, demo_seed=5, extraction_cache_s=600, extraction_cache_dir=cache)
        )

    bodies: list[bytes] = []
    headers: list[str] = []
    with ExitStack() as stack:
        urls = [stack.enter_context(running_server(instance())) for _ in range(2)]

        def fetch(url: str) -> None:
            response = httpx.get(f"{url}/extraction", timeout=60)
            assert response.status_code == 200
            bodies.append(response.content)
            headers.append(response.headers["X-Extraction-Cache"])

        threads = [threading.Thread(target=fetch, args=(url,)) for url in urls * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        hit = httpx.get(f"{urls[1]}/extraction", timeout=60)
    assert len(bodies) == 4
    assert headers.count("miss") >= 2  # at least two instances wrote the same key at once
    documents = {body.split(b"<csd:organizationDirectory>", 1)[1] for body in bodies}
    assert len(documents) == 1  # same data: the same document whatever the instance
    (cached,) = cache.glob("extraction-*.xml")
    assert cached.read_bytes() in bodies
    assert cached.read_bytes().rstrip().endswith(b"</csd:CSD>")
    assert not list(cache.glob(".*.part"))  # every writer renamed or removed its temporary file
    assert hit.headers["X-Extraction-Cache"] == "hit"
    assert hit.content == cached.read_bytes()
