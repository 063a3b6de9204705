"""The "changed since" instant is typed once per request (issue 12 item 3): `RequestParams.since`,
time-zone-aware, the default time zone applied in one place (`Since.at`); no text round trip."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import bridge.translate.resolvers
from bridge.errors import InvalidParameterError
from bridge.model import CsdRequest, RequestForm, RequestParams, Since, Transaction
from bridge.translate import Mappings, to_fhir_plan
from bridge.translate.plan import function_of

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
ROR = "urn:ror:csd:stored-function:"


def establishments(date: str) -> CsdRequest:
    return CsdRequest(
        Transaction.CARE_SERVICES,
        RequestForm.ROOT_URN_2016,
        function_urn=ROR + "establishments-updated-since",
        params=RequestParams(extra=(("dateMiseAJour", date),)),
    )


def iti74(when: datetime) -> CsdRequest:
    return CsdRequest(Transaction.MODIFICATIONS, RequestForm.MODIFICATIONS, last_modified=when)


def test_a_time_without_offset_is_read_in_the_request_time_zone_and_stated_as_sent() -> None:
    since = Since.at(datetime(2024, 1, 2, 3, 4, 5), UTC, wall_clock=True)
    assert since.instant.tzinfo is UTC
    assert since.fhir_instant() == "2024-01-02T03:04:05"
    with_offset = Since.at(datetime.fromisoformat("2024-01-02T03:04:05.25+02:00"), UTC, wall_clock=True)
    assert not with_offset.wall_clock
    assert with_offset.fhir_instant() == "2024-01-02T01:04:05.25Z"


def test_iti74_carries_its_last_modified_typed_not_as_text(mappings: Mappings) -> None:
    spec, params = function_of(mappings, iti74(datetime(2025, 6, 1, 10, 0)))
    assert spec is mappings.modifications
    assert params.extra == ()  # no ISO string to parse back
    assert params.since is not None
    assert params.since.instant == datetime(2025, 6, 1, 10, 0, tzinfo=mappings.timezone)
    offset = mappings.timezone.utcoffset(datetime(2025, 6, 1, 10, 0))
    assert offset is not None
    expected = (datetime(2025, 6, 1, 10, 0) - offset).strftime("%Y-%m-%dT%H:%M:%SZ")
    plan = to_fhir_plan(mappings, iti74(datetime(2025, 6, 1, 10, 0)), now=NOW)
    assert plan.queries[0].params[0] == ("_lastUpdated", f"ge{expected}")


def test_the_date_of_a_request_is_parsed_once_for_all_its_queries(
    mappings: Mappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    real = bridge.translate.resolvers._extra_datetime

    def counting(params: RequestParams, name: str) -> datetime | None:
        calls[name] += 1
        return real(params, name)

    monkeypatch.setattr(bridge.translate.resolvers, "_extra_datetime", counting)
    plan = to_fhir_plan(mappings, establishments("2025-12-01T08:00:00"), now=NOW)
    assert len(plan.queries) > 1
    assert all(("_lastUpdated", "ge2025-12-01T08:00:00") in q.params for q in plan.queries)
    assert calls == Counter({"dateMiseAJour": 1})


def test_the_future_check_reads_a_time_without_offset_in_the_request_time_zone(mappings: Mappings) -> None:
    # NOW + 4 minutes in the request time zone is within the margin; NOW + 6 minutes is not.
    local = NOW.astimezone(mappings.timezone).replace(tzinfo=None)
    to_fhir_plan(mappings, establishments((local + timedelta(minutes=4)).isoformat()), now=NOW)
    with pytest.raises(InvalidParameterError, match="in the future"):
        to_fhir_plan(mappings, establishments((local + timedelta(minutes=6)).isoformat()), now=NOW)


def test_a_date_that_is_not_iso_8601_is_refused_with_its_name(mappings: Mappings) -> None:
    with pytest.raises(InvalidParameterError, match=r"dateMiseAJour '01/12/2025' is not an ISO 8601 date"):
        to_fhir_plan(mappings, establishments("01/12/2025"), now=NOW)
