"""`searchset`: a page decoded as the walks read it, and without the includes an unordered walk handed out."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import UpstreamProtocolError
from bridge.fhir.searchset import Repeats, Searchset

URL = "https://ror.example/fhir/HealthcareService"


def entry(resource: dict[str, Any], mode: str | None = "match") -> dict[str, Any]:
    return {"resource": resource, **({"search": {"mode": mode}} if mode else {})}


def bundle(*entries: dict[str, Any], total: Any = None, next_url: str | None = None) -> bytes:
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": list(entries)}
    if total is not None:
        body["total"] = total
    if next_url is not None:
        body["link"] = [{"relation": "self", "url": URL}, {"relation": "next", "url": next_url}]
    return orjson.dumps(body)


def org(n: int, name: str = "x") -> dict[str, Any]:
    return {"resourceType": "Organization", "id": f"o{n}", "name": name}


def service(n: int) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": f"s{n}",
        "providedBy": {"reference": f"Organization/o{n}"},
    }


def test_an_include_is_left_out_once_a_page_with_the_same_bytes_was_handed_out() -> None:
    repeats = Repeats()
    first = repeats.decode(bundle(entry(service(1)), entry(org(1), "include")), URL)
    again = repeats.decode(bundle(entry(service(2)), entry(org(1), "include")), URL)
    assert [r["id"] for r in again.includes] == ["o1"], "not handed out yet: nothing is left out"
    repeats.remember(first)
    later = repeats.decode(bundle(entry(service(2)), entry(org(1), "include"), entry(org(2), "include")), URL)
    assert [r["id"] for r in later.includes] == ["o2"]
    assert [r["id"] for r in later.matches] == ["s2"]
    assert repeats.skipped == 1


def test_a_changed_include_and_a_repeated_match_are_never_left_out() -> None:
    repeats = Repeats()
    repeats.remember(repeats.decode(bundle(entry(service(1)), entry(org(1), "include")), URL))
    page = repeats.decode(bundle(entry(service(1)), entry(org(1, "renamed"), "include")), URL)
    assert [r["name"] for r in page.includes] == ["renamed"]
    assert [r["id"] for r in page.matches] == ["s1"], "matches are the walk's to de-duplicate, by key"
    # An organisation that is a match on one page and an include on another is handed out both times.
    repeats.remember(repeats.decode(bundle(entry(org(3))), URL))
    assert [r["id"] for r in repeats.decode(bundle(entry(org(3), "include")), URL).includes] == ["o3"]


def test_only_the_last_includes_are_remembered() -> None:
    repeats = Repeats(limit=2)
    for n in (1, 2, 3):
        repeats.remember(repeats.decode(bundle(entry(org(n), "include")), URL))
    page = repeats.decode(bundle(*(entry(org(n), "include") for n in (1, 2, 3))), URL)
    assert [r["id"] for r in page.includes] == ["o1"], "the oldest was forgotten: handed out again"
    with pytest.raises(ValueError, match="limit"):
        Repeats(limit=0)


def test_total_and_next_link_are_read_as_sent() -> None:
    page = Repeats().decode(bundle(entry(service(1)), total=12, next_url=f"{URL}?_getpages=x"), URL)
    assert (page.resource_type, page.type, page.total, page.next_link) == (
        "Bundle",
        "searchset",
        12,
        f"{URL}?_getpages=x",
    )
    odd = Repeats().decode(orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": "12"}), URL)
    assert (odd.total, odd.next_link, odd.matches) == ("12", None, []), (
        "a total that is no number is not trusted"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "not a search Bundle"),
        (orjson.dumps({"resourceType": "Bundle", "entry": [3]}), "not a search Bundle"),
        (
            orjson.dumps({"resourceType": "Bundle", "entry": [{"search": {"mode": "match"}}]}),
            "lacks resource",
        ),
        (bundle(entry({"resourceType": "Organization"})), "lacks resource"),
        (bundle(entry({"id": "o1"}, "include")), "lacks resource"),
        (bundle({"resource": [1], "search": {"mode": "match"}}), "lacks resource"),
    ],
)
def test_what_is_not_a_bundle_of_resources_is_a_protocol_error(body: bytes, reason: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=reason) as raised:
        Repeats().decode(body, URL)
    assert raised.value.request == URL
    with pytest.raises(UpstreamProtocolError):
        Searchset.from_bundle(orjson.loads(body), URL)


def test_a_body_cut_short_is_a_decode_error_for_the_caller_to_fetch_again() -> None:
    body = bundle(entry(service(1)), entry(org(1), "include"))
    with pytest.raises(msgspec.DecodeError) as raised:
        Repeats().decode(body[: len(body) // 2], URL)
    assert not isinstance(raised.value, msgspec.ValidationError)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_resources = st.builds(
    lambda kind, n, extra: {"resourceType": kind, "id": str(n), **extra},
    st.sampled_from(["Organization", "Location", "HealthcareService"]),
    st.integers(0, 5),
    st.dictionaries(st.sampled_from(["name", "meta", "partOf", "note"]), _json, max_size=3),
)
_entries = st.lists(
    st.builds(
        lambda resource, search: {"resource": resource, **({} if search is None else {"search": search})},
        _resources,
        st.none()
        | st.just({})
        | st.builds(lambda m: {"mode": m}, st.sampled_from(["match", "include", "outcome"])),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(entries=_entries, total=st.none() | st.integers(0, 20))
def test_nothing_remembered_a_page_decodes_as_orjson_reads_it(
    entries: list[dict[str, Any]], total: int | None
) -> None:
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if total is not None:
        body["total"] = total
    raw = orjson.dumps(body)
    decoded, parsed = Repeats().decode(raw, URL), Searchset.from_bundle(orjson.loads(raw), URL)
    assert _read(decoded) == _read(parsed)
    assert len(decoded.digests) == len(decoded.includes), (
        "each include handed out is remembered with its page"
    )


def _read(page: Searchset) -> tuple[Any, ...]:
    return (page.resource_type, page.type, page.total, page.next_link, page.matches, page.includes)
