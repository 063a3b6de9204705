"""report.html in a real headless Chromium (the Debian package, driven by Playwright): it opens, shows the
parity numbers of report.json, the search box and the drill-down reveal an entity's fields side by side,
and nothing is fetched from the network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from tests.compare.inject import inject

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_dir(extraction: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    legacy, _ = inject(extraction.read_bytes())
    (folder / "legacy.xml").write_bytes(legacy)
    assert (
        main(
            [
                "compare",
                "documents",
                str(folder / "legacy.xml"),
                str(extraction),
                "--out",
                str(folder / "out"),
                "--quiet",
            ]
        )
        == 0
    )
    return folder / "out"


@pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (`make browser` installs the Debian package)"
)
def test_the_report_opens_offline_and_drills_down(report_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    report: dict[str, Any] = json.loads((report_dir / "report.json").read_text("utf-8"))
    page_url = (report_dir / "report.html").as_uri()
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context()
        context.route(
            "**/*",
            lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_(),
        )
        page = context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_url)
        assert page.locator(".card.parity b").inner_text() == f"{report['parity'] * 100:.2f} %"
        assert page.locator('.card[data-key="matched"] b').inner_text() == str(report["entities"]["matched"])
        assert page.locator('.card[data-key="only_legacy"] b').inner_text() == str(
            len(report["entities"]["only_legacy"])
        )
        body = page.locator("main").inner_text()
        for kind, counts in report["by_kind"].items():
            assert f"{kind}\t{counts['matched']}" in body
            assert f"{counts['parity'] * 100:.2f} %" in body
        assert page.locator("svg.chart").count() == 4
        difference = next(d for d in report["differences"] if d["path"] == "organization/primaryName")
        page.fill("#search", difference["entity"])
        rows = page.locator("tr.ent")
        assert rows.count() == 1
        rows.first.click()
        drill = page.locator("table.drill")
        assert drill.is_visible()
        changed = drill.locator("tr.diff")
        assert changed.count() == 1
        cells = changed.first.locator("td").all_inner_texts()
        assert cells == [difference["path"], difference["legacy"], difference["bridge"]]
        assert drill.locator("tr").count() > 5  # every field of the entity, not only the differing one
        browser.close()
    assert errors == []
    assert requested == [page_url]  # the page fetched nothing else
