"""The one-million-offer check (issue 3 item 2), slow: a real simulator process within 2 GiB, started in under
a minute, answering every kind of request (`make sim-scale` prints the same figures)."""

from __future__ import annotations

import pytest

from tests.simulator.scale import report, run


@pytest.mark.slow
def test_one_million_offers_fit_in_2_gib_and_start_within_a_minute() -> None:
    figures = run(1_000_000, 1, 3)
    assert figures["counts"]["HealthcareService"] == 1_000_000
    assert report(figures) == []
