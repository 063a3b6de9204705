"""Search value syntax: tokens with escapes, date ranges at every precision, include specs."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.simulator.search import IncludeSpec, SearchError, parse_date_range, parse_search, parse_token

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", (None, "abc")),
        ("sys|abc", ("sys", "abc")),
        ("|abc", ("", "abc")),
        ("sys|", ("sys", "")),
        (r"a\|b", (None, "a|b")),
        (r"s|a\,b", ("s", "a,b")),
    ],
)
def test_tokens(text: str, expected: tuple[str | None, str]) -> None:
    assert parse_token(text) == expected


def test_token_with_two_bars_is_refused() -> None:
    with pytest.raises(SearchError):
        parse_token("a|b|c")


@pytest.mark.parametrize(
    ("text", "prefix", "start", "length"),
    [
        ("2022", "eq", datetime(2022, 1, 1, tzinfo=PARIS), timedelta(days=365)),
        ("ge2024-02", "ge", datetime(2024, 2, 1, tzinfo=PARIS), timedelta(days=29)),
        ("lt2023-12", "lt", datetime(2023, 12, 1, tzinfo=PARIS), timedelta(days=31)),
        ("gt2023-03-04", "gt", datetime(2023, 3, 4, tzinfo=PARIS), timedelta(days=1)),
        ("le2023-03-04T10:20", "le", datetime(2023, 3, 4, 10, 20, tzinfo=PARIS), timedelta(minutes=1)),
        (
            "eq2023-03-04T10:20:30Z",
            "eq",
            datetime(2023, 3, 4, 10, 20, 30, tzinfo=ZoneInfo("UTC")),
            timedelta(seconds=1),
        ),
        (
            "sa2023-03-04T10:20:30.5+02:00",
            "sa",
            datetime.fromisoformat("2023-03-04T10:20:30.500+02:00"),
            timedelta(milliseconds=100),
        ),
    ],
)
def test_date_ranges(text: str, prefix: str, start: datetime, length: timedelta) -> None:
    got_prefix, got_start, got_end = parse_date_range(text)
    assert (got_prefix, got_start, got_end - got_start) == (prefix, start, length)


@pytest.mark.parametrize("text", ["", "22", "2022-1", "ap2022", "2022-02-30", "2022-01-01T25:00"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(SearchError):
        parse_date_range(text)


def test_include_specs_are_parsed_and_deduplicated() -> None:
    request = parse_search(
        "HealthcareService",
        [
            ("_include", "HealthcareService:organization"),
            ("_include", "HealthcareService:organization"),
            ("_include:iterate", "Organization:partof:Organization"),
            ("_revinclude", "PractitionerRole:service"),
        ],
        strict=True,
    )
    assert request.includes == (
        IncludeSpec("HealthcareService", "organization", None, iterate=False, reverse=False),
        IncludeSpec("Organization", "partof", "Organization", iterate=True, reverse=False),
        IncludeSpec("PractitionerRole", "service", None, iterate=False, reverse=True),
    )
    assert str(request.includes[1]) == "_include:iterate=Organization:partof:Organization"


def test_lastupdated_takes_no_comma() -> None:
    with pytest.raises(SearchError, match="_lastUpdated"):
        parse_search("Organization", [("_lastUpdated", "ge2020,le2021")], strict=True)
