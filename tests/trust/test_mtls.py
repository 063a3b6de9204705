"""The trust circle over real HTTPS: handshake, allow-list by fingerprint, scopes, rate, CRL, audit, proxy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from lxml import etree

from bridge import ns
from tests.trust.conftest import Factory, Pki, serving, write_clients

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trust"
FACILITY12 = (FIXTURES / "facility-search-soap12.xml").read_bytes()
PROVIDER11 = (FIXTURES / "provider-search-soap11.xml").read_bytes()
SOAP12 = {"Content-Type": "application/soap+xml; charset=utf-8"}
SOAP11 = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def fault12(response: httpx.Response) -> tuple[str, str, str]:
    root = etree.fromstring(response.content)
    e = {"e": ns.SOAP12}
    return (
        str(root.xpath("string(//e:Fault/e:Code/e:Value)", namespaces=e)),
        str(root.xpath("string(//e:Fault/e:Code/e:Subcode/e:Value)", namespaces=e)),
        str(root.xpath("string(//e:Fault/e:Reason/e:Text)", namespaces=e)),
    )


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def clients(pki: Pki, tmp_path: Path) -> dict[str, Any]:
    """Four certificates of the test CA: three listed with different scopes, one not listed."""
    leaves = {name: pki.client(name) for name in ("sih-ara", "sih-national", "sih-slow", "stranger")}
    fp = {name: pki.fingerprint(leaf) for name, leaf in leaves.items()}
    colons = ":".join(fp["sih-ara"][i : i + 2] for i in range(0, 64, 2)).upper()
    path = write_clients(
        tmp_path / "clients.yaml",
        f"""
profiles:
  2: {{ror_profile_code: CU99}}
clients:
  - id: sih-ara
    fingerprints: ["{colons}"]
    regions: [ara]
    functions: [facility-search]
    profile: 2
  - id: sih-national
    fingerprints: ["{fp["sih-national"]}"]
    regions: ["*"]
    functions: ["*"]
    profile: 1
  - id: sih-slow
    fingerprints: ["{fp["sih-slow"]}"]
    regions: [national]
    functions: ["*"]
    profile: 0
    rate_per_minute: 2
""",
    )
    return {"leaves": leaves, "fingerprints": fp, "file": path}


def test_admitted_client_is_answered_and_audited(
    pki: Pki, make_settings: Factory, clients: dict[str, Any], tmp_path: Path
) -> None:
    settings = make_settings(clients_file=clients["file"])
    with (
        serving(settings) as (url, _),
        httpx.Client(verify=pki.context(clients["leaves"]["sih-national"])) as http,
    ):
        answer = http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12)
        answer11 = http.post(f"{url}/csd/ara", content=PROVIDER11, headers=SOAP11)
    assert answer.status_code == 200, answer.text
    assert b"facilityDirectory" in answer.content
    assert answer11.status_code == 200, answer11.text
    first, second = audit_lines(tmp_path / "audit.jsonl")
    assert first["client"] == "sih-national"
    assert first["fingerprint"] == clients["fingerprints"]["sih-national"]
    assert "CN=sih-national" in first["subject"]
    assert first["certificate"] == "tls"
    assert (first["route"], first["function"], first["region"]) == ("csd", "facility-search", None)
    assert first["outcome"] == "answered"
    assert first["status"] == 200
    assert first["params"] == {"start": 1, "max": 5}
    assert first["entities"]["facilities"] == 5
    assert first["upstream_calls"] >= 1
    assert all(call[2] == 200 and call[1].startswith("/ws-diffusion-fhir/") for call in first["upstream"])
    assert first["remote"] == "127.0.0.1"
    assert first["profile"] == 1
    assert first["duration_ms"] > 0
    # Free text is hashed, never written as sent.
    assert second["params"]["common_name"].startswith("sha256:")
    assert b"Dupont" not in (tmp_path / "audit.jsonl").read_bytes()
    assert second["region"] == "ara"


def test_certificate_of_another_ca_fails_the_handshake(
    pki: Pki, make_settings: Factory, clients: dict[str, Any]
) -> None:
    foreign = pki.client("sih-national", ca=pki.other_ca)
    with serving(make_settings(clients_file=clients["file"])) as (url, _):
        with httpx.Client(verify=pki.context(foreign)) as http, pytest.raises(httpx.TransportError):
            http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12)
        # The server is fine afterwards.
        with httpx.Client(verify=pki.context()) as http:
            assert http.get(f"{url}/healthz").status_code == 200


def test_refusals_are_403_faults_naming_the_rule(
    pki: Pki, make_settings: Factory, clients: dict[str, Any], tmp_path: Path
) -> None:
    leaves = clients["leaves"]
    same_subject = pki.client("sih-national")  # same CA, same CN, another key: not the listed certificate
    with serving(make_settings(clients_file=clients["file"])) as (url, _):
        with httpx.Client(verify=pki.context(leaves["stranger"])) as http:
            unknown = http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12)
            unknown11 = http.post(f"{url}/csd", content=PROVIDER11, headers=SOAP11)
            wsdl = http.get(f"{url}/csd?wsdl")
        with httpx.Client(verify=pki.context(same_subject)) as http:
            impostor = http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12)
        with httpx.Client(verify=pki.context()) as http:
            anonymous = http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12)
            health = http.get(f"{url}/healthz")
            ready = http.get(f"{url}/readyz")
        with httpx.Client(verify=pki.context(leaves["sih-ara"])) as http:
            region = http.post(f"{url}/csd/bre", content=FACILITY12, headers=SOAP12)
            national = http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12)
            function = http.post(f"{url}/csd/ara", content=PROVIDER11, headers=SOAP11)
            extraction = http.get(f"{url}/extraction/ara")
            allowed = http.post(f"{url}/csd/ara", content=FACILITY12, headers=SOAP12)
    assert (unknown.status_code, fault12(unknown)[:2]) == (403, ("env:Sender", "f:UnknownClient"))
    assert clients["fingerprints"]["stranger"] in fault12(unknown)[2]
    assert unknown11.status_code == 403
    s11 = etree.fromstring(unknown11.content)
    assert s11.findtext(f"{{{ns.SOAP11}}}Body/{{{ns.SOAP11}}}Fault/faultcode") == "soap:Client"
    assert "not listed" in (s11.findtext(f"{{{ns.SOAP11}}}Body/{{{ns.SOAP11}}}Fault/faultstring") or "")
    assert wsdl.status_code == 403
    assert wsdl.headers["content-type"].startswith("text/plain")
    assert "UnknownClient" in wsdl.text
    assert fault12(impostor)[1] == "f:UnknownClient"
    assert fault12(anonymous)[1] == "f:NoClientCertificate"
    assert health.status_code == 200
    assert ready.status_code == 200
    assert fault12(region)[1] == "f:RegionNotAllowed"
    assert "'bre'" in fault12(region)[2]
    assert fault12(national)[1] == "f:RegionNotAllowed"
    assert function.status_code == 403
    assert b"FunctionNotAllowed" in function.content
    assert b"provider-search" in function.content
    assert extraction.status_code == 403
    assert "FunctionNotAllowed" in extraction.text
    assert allowed.status_code == 200, allowed.text
    outcomes = [line["outcome"] for line in audit_lines(tmp_path / "audit.jsonl")]
    assert outcomes.count("refused:UnknownClient") == 4
    assert "refused:NoClientCertificate" in outcomes
    assert "fault:FunctionNotAllowed" in outcomes
    assert outcomes[-1] == "answered"
    assert len(outcomes) == 10  # probes are not audited


def test_refusals_are_counted_per_client_in_the_metrics(
    pki: Pki, make_settings: Factory, clients: dict[str, Any]
) -> None:
    leaves = clients["leaves"]
    with serving(make_settings(clients_file=clients["file"])) as (url, _):
        with httpx.Client(verify=pki.context(leaves["stranger"])) as http:
            assert http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12).status_code == 403
            assert http.get(f"{url}/metrics").status_code == 403  # /metrics needs an admitted certificate
        with httpx.Client(verify=pki.context(leaves["sih-ara"])) as http:
            assert http.post(f"{url}/csd/ara", content=PROVIDER11, headers=SOAP11).status_code == 403
        with httpx.Client(verify=pki.context(leaves["sih-national"])) as http:
            scraped = http.get(f"{url}/metrics").text
    assert 'ror_bridge_refusals_total{client="unknown",reason="UnknownClient"} 2.0' in scraped
    assert 'ror_bridge_refusals_total{client="sih-ara",reason="FunctionNotAllowed"} 1.0' in scraped
    assert 'client="sih-national"' not in scraped


def test_rate_per_minute_gives_429_with_retry_after(
    pki: Pki, make_settings: Factory, clients: dict[str, Any]
) -> None:
    with (
        serving(make_settings(clients_file=clients["file"])) as (url, _),
        httpx.Client(verify=pki.context(clients["leaves"]["sih-slow"])) as http,
    ):
        statuses = [http.get(f"{url}/csd?wsdl").status_code for _ in range(2)]
        limited = http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12)
    assert statuses == [200, 200]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert fault12(limited)[1] == "f:RateLimited"


def test_upstream_headers_follow_the_client_profile(
    pki: Pki, make_settings: Factory, clients: dict[str, Any]
) -> None:
    seen: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.headers.get("Ror-Profil-Utilisateur-Code"))

    async def ignore(_: httpx.Response) -> None:
        return None

    with serving(make_settings(clients_file=clients["file"])) as (url, app):
        app.state.upstream.client.add_event_hooks(record, ignore)
        with httpx.Client(verify=pki.context(clients["leaves"]["sih-ara"])) as http:
            assert http.post(f"{url}/csd/ara", content=FACILITY12, headers=SOAP12).status_code == 200
        calls = len(seen)
        with httpx.Client(verify=pki.context(clients["leaves"]["sih-national"])) as http:
            assert http.post(f"{url}/csd", content=FACILITY12, headers=SOAP12).status_code == 200
    assert calls
    assert set(seen[:calls]) == {"CU99"}
    assert set(seen[calls:]) == {"CU22"}  # profile 1 has none: BRIDGE_ROR_PROFILE_CODE


def test_revoked_certificate_fails_the_handshake_when_a_crl_is_given(
    pki: Pki, make_settings: Factory, tmp_path: Path
) -> None:
    revoked, valid = pki.client("revoked-app"), pki.client("valid-app")
    crl = pki.crl([revoked], tmp_path / "crl.pem")
    with serving(make_settings(tls_crl=crl)) as (url, _):
        with httpx.Client(verify=pki.context(revoked)) as http, pytest.raises(httpx.TransportError):
            http.get(f"{url}/csd?wsdl")
        with httpx.Client(verify=pki.context(valid)) as http:
            assert http.get(f"{url}/csd?wsdl").status_code == 200
    # No CRL: the same certificate gets through.
    with serving(make_settings()) as (url, _), httpx.Client(verify=pki.context(revoked)) as http:
        assert http.get(f"{url}/csd?wsdl").status_code == 200


def test_trusted_proxy_header_is_believed_only_from_the_proxy(
    pki: Pki, make_settings: Factory, clients: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    pem = clients["leaves"]["sih-national"].cert_chain_pems[0].bytes().decode()
    from urllib.parse import quote

    header = {"X-SSL-Client-Cert": quote(pem, safe="")}
    plain = {"tls_cert": None, "tls_key": None, "tls_client_ca": None, "clients_file": clients["file"]}
    with serving(make_settings(trusted_proxies="127.0.0.0/8", **plain)) as (url, _):
        admitted = httpx.post(f"{url}/csd", content=FACILITY12, headers={**SOAP12, **header})
        spaces = pem.strip().replace("\n", " ")  # a PEM with its newlines turned into spaces (Apache style)
        also = httpx.post(f"{url}/csd", content=FACILITY12, headers={**SOAP12, "X-SSL-Client-Cert": spaces})
        garbage = httpx.post(f"{url}/csd", content=FACILITY12, headers={**SOAP12, "X-SSL-Client-Cert": "x"})
    with (
        caplog.at_level(logging.WARNING, logger="bridge.trust.gate"),
        serving(make_settings(trusted_proxies="10.9.9.9", **plain)) as (url, _),
    ):
        ignored = httpx.post(f"{url}/csd", content=FACILITY12, headers={**SOAP12, **header})
    assert admitted.status_code == 200, admitted.text
    assert also.status_code == 200, also.text
    assert fault12(garbage)[1] == "f:NoClientCertificate"
    assert fault12(ignored)[1] == "f:NoClientCertificate"
    assert "proxy-cert-header-ignored" in caplog.text
