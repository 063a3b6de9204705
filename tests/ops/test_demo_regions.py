"""The demo fills every legacy region at its default scale; an empty extraction says so (issue 16 item 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge.config import Settings
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.translate import load_mappings
from tests.test_cli import cli


def test_every_region_has_offers_at_the_default_demo_scale() -> None:
    defaults = Settings()
    dataset = generate_dataset(defaults.demo_scale, defaults.demo_seed)
    codes = dataset.lists.regions.codes
    with_offers = {
        codes[int(index)].code for index in np.unique(np.asarray(dataset.org_region)[dataset.offer_provider])
    }
    mappings = load_mappings(shipped_dir("mappings"))
    empty = [code for code, region in mappings.regions.items() if not set(region.region_codes) & with_offers]
    assert len(mappings.regions) == 17
    assert empty == [], f"legacy regions without any offer in the demo: {empty}"


def test_an_empty_extraction_says_so_on_stderr(tmp_path: Path) -> None:
    small = {"BRIDGE_DEMO_SCALE": "30"}  # three establishments: most regions are empty
    empty = cli("extract", "--region", "paca", "-o", str(tmp_path / "paca.xml"), env=small)
    assert empty.returncode == 0, empty.stderr
    assert "warning: the extraction is empty: no entity of region paca" in empty.stderr
    assert (tmp_path / "paca.xml").read_text(encoding="utf-8").rstrip().endswith("</csd:CSD>")
    filled = cli("extract", "-o", str(tmp_path / "all.xml"), env=small)
    assert filled.returncode == 0, filled.stderr
    assert "the extraction is empty" not in filled.stderr
    quiet = cli("extract", "--region", "paca", "-o", str(tmp_path / "quiet.xml"), "--quiet", env=small)
    assert quiet.stderr == ""  # --quiet: nothing at all
