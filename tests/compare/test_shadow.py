"""Shadow mode of `serve`: the client's answer is never changed nor delayed beyond the budget, a legacy side
that is down or slow never fails a request, each comparison is a JSON line; `compare shadow-log` sums them
up."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bridge.app import create_app
from bridge.cli import main
from bridge.config import load_settings
from tests.compare.conftest import SCALE, SEED, legacy_app
from tests.compare.inject import inject, report_differences
from tests.server import running_server

REPO = Path(__file__).resolve().parents[2]
MODIFICATIONS = b"""<csd:getModificationsRequest xmlns:csd="urn:ihe:iti:csd:2013">
  <csd:lastModified>2000-01-01T00:00:00Z</csd:lastModified>
</csd:getModificationsRequest>"""
ORGANIZATION_SEARCH = b"""<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013">
  <csd:function urn="urn:ihe:iti:csd:2014:stored-function:organization-search">
    <csd:requestParams><csd:max>25</csd:max></csd:requestParams>
  </csd:function>
</csd:careServicesRequest>"""
BARE = {"Content-Type": "application/xml; charset=utf-8"}


@contextmanager
def shadow_bridge(
    legacy: str, log: Path, budget_ms: float = 1000, mappings: Path | None = None
) -> Iterator[str]:
    settings = load_settings(
        demo_scale=SCALE,
        demo_seed=SEED,
        shadow_legacy_url=legacy,
        shadow_log=log,
        shadow_budget_ms=budget_ms,
        mappings_dir=mappings,
    )
    with running_server(create_app(settings)) as url:
        yield url


def records(log: Path, count: int, timeout_s: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists():
            lines = [json.loads(line) for line in log.read_text("utf-8").splitlines() if line.strip()]
            if len(lines) >= count:
                return lines
        time.sleep(0.1)
    raise AssertionError(f"{count} shadow record(s) expected in {log}")


def test_the_bridge_answers_and_the_legacy_side_is_compared_in_the_background(
    bridge_url: str, legacy_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "shadow.jsonl"
    direct = {
        body: httpx.post(f"{bridge_url}/csd", content=body, headers=BARE, timeout=60)
        for body in (MODIFICATIONS, ORGANIZATION_SEARCH)
    }
    with shadow_bridge(legacy_url, log) as url:
        for body, plain in direct.items():
            answer = httpx.post(f"{url}/csd", content=body, headers=BARE, timeout=60)
            assert answer.status_code == 200
            assert answer.content == plain.content  # the client's answer is the bridge's, unchanged
        found = records(log, 2)
        scraped = httpx.get(f"{url}/metrics", timeout=30).text
    for record in found:  # each recorded comparison is counted, with its differences
        differences = record["differences"]
        assert isinstance(differences, list)
        result = "different" if differences else "equal"
        function = record["function"]
        assert (
            f'ror_bridge_shadow_comparisons_total{{function="{function}",result="{result}"}} 1.0' in scraped
        )
        if differences:
            counted = (
                f'ror_bridge_shadow_differences_total{{function="{function}"}} {float(len(differences))}'
            )
            assert counted in scraped
    by_function = {r["function"]: r for r in found}
    assert set(by_function) == {"modifications", "organization-search"}
    for body, plain in direct.items():
        function = "modifications" if body is MODIFICATIONS else "organization-search"
        record = by_function[function]
        expected = inject(plain.content)[1]
        assert record["answered_by"] == "bridge"
        assert record["problem"] == ""
        assert report_differences(record) == expected.differences  # type: ignore[arg-type]
        assert record["entities"]["only_bridge"] == len(expected.only_bridge)  # type: ignore[index]
        assert record["entities"]["only_legacy"] == len(expected.only_legacy)  # type: ignore[index]
    out = tmp_path / "out"
    assert main(["compare", "shadow-log", str(log), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert set(report["by_function"]) == {"modifications", "organization-search"}
    matched = sum(r["entities"]["matched"] for r in found)  # type: ignore[index]
    equal = sum(r["entities"]["equal"] for r in found)  # type: ignore[index]
    assert report["entities"]["matched"] == matched
    assert report["entities"]["equal"] == equal
    assert report_differences(report) == set().union(*(report_differences(r) for r in found))  # type: ignore[arg-type]


def test_a_legacy_side_that_is_down_never_fails_the_request(bridge_url: str, tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    plain = httpx.post(f"{bridge_url}/csd", content=ORGANIZATION_SEARCH, headers=BARE, timeout=60)
    with shadow_bridge("http://127.0.0.1:9/csd", log) as url:
        answer = httpx.post(f"{url}/csd", content=ORGANIZATION_SEARCH, headers=BARE, timeout=60)
        assert answer.status_code == 200
        assert answer.content == plain.content
        (record,) = records(log, 1)
    assert str(record["problem"]).startswith("legacy: unreachable")
    assert record["entities"] is None


def _legacy_first(tmp_path: Path) -> Path:
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings)
    rules = (mappings / "compare.yaml").read_text("utf-8")
    (mappings / "compare.yaml").write_text(
        rules.replace("  functions: {}", "  functions: {organization-search: legacy}"), "utf-8"
    )
    return mappings


def test_legacy_first_answers_the_legacy_answer_and_compares_the_bridge_in_the_background(
    bridge_url: str, legacy_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "shadow.jsonl"
    plain = httpx.post(f"{bridge_url}/csd", content=ORGANIZATION_SEARCH, headers=BARE, timeout=60)
    legacy = httpx.post(legacy_url, content=ORGANIZATION_SEARCH, headers=BARE, timeout=60)
    with shadow_bridge(legacy_url, log, budget_ms=20_000, mappings=_legacy_first(tmp_path)) as url:
        answer = httpx.post(f"{url}/csd", content=ORGANIZATION_SEARCH, headers=BARE, timeout=60)
        assert answer.content == legacy.content != plain.content
        (record,) = records(log, 1)
    assert record["answered_by"] == "legacy"
    assert report_differences(record) == inject(plain.content)[1].differences  # type: ignore[arg-type]


def test_a_slow_legacy_side_costs_the_client_at_most_the_budget(bridge_url: str, tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    plain = httpx.post(f"{bridge_url}/csd", content=ORGANIZATION_SEARCH, headers=BARE, timeout=60)
    with (
        running_server(legacy_app(bridge_url, delay_s=5.0)) as slow,
        shadow_bridge(f"{slow}/legacy/csd", log, budget_ms=300, mappings=_legacy_first(tmp_path)) as url,
    ):
        started = time.monotonic()
        answer = httpx.post(f"{url}/csd", content=ORGANIZATION_SEARCH, headers=BARE, timeout=60)
        elapsed = time.monotonic() - started
        assert answer.status_code == 200
        assert answer.content == plain.content  # the bridge answered instead
        assert elapsed < 3.0, elapsed
        (record,) = records(log, 1, timeout_s=60)
    assert record["answered_by"] == "bridge (legacy over budget)"
    assert record["problem"] == ""  # the late legacy answer is still compared
    assert report_differences(record) == inject(plain.content)[1].differences  # type: ignore[arg-type]
    assert float(record["legacy_ms"]) >= 5000  # type: ignore[arg-type]
