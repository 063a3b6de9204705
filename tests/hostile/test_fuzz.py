"""Property-based fuzzing (hypothesis) of the CSD endpoint: generated envelopes and request parameters, and
byte-level mutations of valid requests, against a real bridge over HTTP.

The property: every answer is a CSD answer or a Sender fault (never a Receiver or internal fault, never a
crash), in bounded time, and the server stays healthy. The default run is bounded (FUZZ_EXAMPLES, default
40 per property, a few tens of seconds in all); `make fuzz` runs many more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.app import create_app
from bridge.config import load_settings
from tests.server import running_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
REQUESTS = Path(__file__).resolve().parent.parent / "fixtures" / "requests"
S12 = "http://www.w3.org/2003/05/soap-envelope"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
FUNCTIONS = [
    "facility-search",
    "organization-search",
    "provider-search",
    "service-search",
    "internal-organization",
    "establishment-offers",
    "offer-search",
    "establishments-updated-since",
    "no-such-function",
]
PARAMETERS = [
    "primaryName",
    "name",
    "commonName",
    "start",
    "max",
    "champActivite",
    "modePriseEnCharge",
    "finess",
    "dateMiseAJour",
    "codePostal",
    "age",
    "distance",
    "_include",
]
TIMEOUT_S = 20


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = create_app(load_settings(demo_scale=40, demo_seed=5, max_request_bytes=65536, mapping_workers=0))
    with running_server(app) as base:
        yield base


# Text a legacy client (or an attacker) may put in a parameter: any character but surrogates, with the
# FHIR and URL separators over-represented.
values = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    st.text(alphabet=",|$&=%?#\\*:_ 0123456789abcXYZ-", max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["", " ", "2024-02-30T00:00:00Z", "1e3", "+5", "0x10", "NaN", "Δ" * 10]),
)
params = st.lists(st.tuples(st.sampled_from(PARAMETERS), values), max_size=6)


def _envelope(kind: str, inner: str) -> tuple[bytes, dict[str, str]]:
    if kind == "soap12":
        body = f'<env:Envelope xmlns:env="{S12}"><env:Body>{inner}</env:Body></env:Envelope>'
        return body.encode(), {"Content-Type": "application/soap+xml; charset=utf-8"}
    if kind == "soap11":
        body = f'<soap:Envelope xmlns:soap="{S11}"><soap:Body>{inner}</soap:Body></soap:Envelope>'
        return body.encode(), {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    return inner.encode(), {"Content-Type": "application/xml"}


def _check(response: httpx.Response, base: str) -> None:
    """A CSD answer, or a Sender fault; anything else (Receiver, internal, crash) fails the property."""
    if response.status_code == 200:
        etree.fromstring(response.content)  # a whole, well-formed answer
    else:
        assert response.status_code in (400, 500), response.status_code
        root = etree.fromstring(response.content)
        subcode = root.xpath("string(//*[local-name()='error']/@subcode)")
        code = root.xpath("string(//*[local-name()='Code']/*[local-name()='Value'] | //faultcode)")
        reason = root.xpath("string(//*[local-name()='Text'] | //faultstring)")
        # The request's faults: Sender/Client, or a SOAP version or mustUnderstand problem of the envelope.
        assert code.endswith((":Sender", ":Client", ":VersionMismatch", ":MustUnderstand")), (code, reason)
        assert subcode != "InternalError", reason
        assert "Traceback" not in response.text
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


@FUZZ
@given(
    kind=st.sampled_from(["soap12", "soap11", "bare"]),
    function=st.sampled_from(FUNCTIONS),
    pairs=params,
    form=st.sampled_from(["2014", "2016"]),
)
def test_generated_requests_never_fail_the_bridge(
    url: str, kind: str, function: str, pairs: list[tuple[str, str]], form: str
) -> None:
    urn = quoteattr(f"urn:ihe:iti:csd:2014:stored-function:{function}")
    # Characters XML cannot carry are kept on purpose: the parser must refuse them with a Sender fault.
    inner_params = "".join(f"<csd:{name}>{escape(value)}</csd:{name}>" for name, value in pairs)
    if form == "2014":
        request = (
            '<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013">'
            f"<csd:function urn={urn}><csd:requestParams>{inner_params}</csd:requestParams></csd:function>"
            "</csd:careServicesRequest>"
        )
    else:
        request = (
            f'<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013" urn={urn}>'
            f"<csd:requestParams>{inner_params}</csd:requestParams></csd:careServicesRequest>"
        )
    body, headers = _envelope(kind, request)
    response = httpx.post(f"{url}/csd", content=body, headers=headers, timeout=TIMEOUT_S)
    _check(response, url)


SEEDS = sorted(path for path in REQUESTS.glob("*.xml"))


@FUZZ
@given(
    seed=st.sampled_from(SEEDS),
    cuts=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 40), st.binary(max_size=12)), max_size=4),
)
def test_mutated_requests_never_fail_the_bridge(
    url: str, seed: Path, cuts: list[tuple[int, int, bytes]]
) -> None:
    data = bytearray(seed.read_bytes())
    for at, length, insert in cuts:  # replace a slice by random bytes
        at = at % (len(data) + 1)
        data[at : at + length] = insert
    is_soap11 = b"schemas.xmlsoap.org/soap/envelope" in data
    headers = (
        {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        if is_soap11
        else {"Content-Type": "application/soap+xml; charset=utf-8"}
    )
    response = httpx.post(f"{url}/csd", content=bytes(data), headers=headers, timeout=TIMEOUT_S)
    _check(response, url)


@FUZZ
@given(region=st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_region_paths_never_fail_the_bridge(url: str, region: str) -> None:
    response = httpx.get(f"{url}/csd/{quote(region, safe='')}?wsdl", timeout=TIMEOUT_S)
    assert response.status_code in (200, 404, 405), response.status_code
    assert "Traceback" not in response.text
