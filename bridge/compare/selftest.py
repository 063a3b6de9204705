"""`ror-bridge selftest`: named conformance scenarios run against any deployment of the bridge over HTTP.

compare/ (side-by-side and conformance tools). The catalogue is data (scenarios.yaml next to this module, or
a deployment's own file): each scenario is one CSD request in one envelope, the checks its answer must pass,
and values it captures for later scenarios, so the catalogue discovers its identifiers from the data served.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import yaml
from lxml import etree

from bridge.errors import CatalogueError
from bridge.ns import CSD, ROR, ROR_NOTIF_REQUEST

SCENARIOS = Path(__file__).resolve().parent / "scenarios.yaml"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
FAULT = "urn:ror:csd:fault"
ACTION = "urn:ihe:iti:csd:2013:GetCareServicesRequest"
ACTION_ITI74 = "urn:ihe:iti:csd:2013:GetDirectoryModificationsRequest"
NS = {"csd": CSD, "s12": SOAP12, "s11": SOAP11, "wsa": WSA, "f": FAULT, "ror": ROR}
DIRECTORIES = (
    "organizationDirectory",
    "serviceDirectory",
    "facilityDirectory",
    "providerDirectory",
    "deviceDirectory",
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Outcome(StrEnum):
    PASSED = "PASS"
    FAILED = "FAIL"
    SKIPPED = "SKIP"  # a value it needs was not captured (e.g. the deployment holds no provider)


@dataclass(frozen=True)
class Scenario:
    name: str
    function: str
    shape: str
    envelope: str  # soap12 | soap11 | bare
    request: str  # the careServicesRequest (or ITI-74 request), with {placeholders} of captured values
    expect: Mapping[str, Any]
    capture: Mapping[str, str] = field(default_factory=dict)  # name → XPath 1.0 (string result)
    action: str = ACTION  # the SOAP action sent (the ROR v2.4 profile's: ror-search, ror-update)


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    outcome: Outcome
    detail: str


_EXPECT_KEYS = {
    "status",
    "fault",
    "root",
    "directories",
    "min",
    "max",
    "empty",
    "entity",
    "relates_to",
    "erreur",
}


def load_scenarios(path: Path = SCENARIOS) -> list[Scenario]:
    raw = yaml.safe_load(path.read_text("utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("scenarios"), list):
        raise CatalogueError(f"{path}: expected a mapping with a `scenarios` list")
    scenarios: list[Scenario] = []
    for item in raw["scenarios"]:
        name = str(item.get("name", ""))
        if not name or any(s.name == name for s in scenarios):
            raise CatalogueError(f"{path}: scenario name {name!r} is empty or repeated")
        envelope = item.get("envelope", "soap12")
        if envelope not in ("soap12", "soap11", "bare"):
            raise CatalogueError(f"{path}: {name}: envelope {envelope!r} is not soap12, soap11 or bare")
        expect = item.get("expect") or {}
        unknown = set(expect) - _EXPECT_KEYS
        if unknown:
            raise CatalogueError(f"{path}: {name}: unknown checks {sorted(unknown)}")
        request = item.get("request")
        if not isinstance(request, str) or not any(
            root in request for root in ("careServicesRequest", "getModificationsRequest", ROR_NOTIF_REQUEST)
        ):
            raise CatalogueError(
                f"{path}: {name}: request must be a careServicesRequest, a getModificationsRequest or a "
                f"{ROR_NOTIF_REQUEST}"
            )
        scenarios.append(
            Scenario(
                name=name,
                function=str(item.get("function", "")),
                shape=str(item.get("shape", "")),
                envelope=envelope,
                request=request.strip(),
                expect=expect,
                capture=item.get("capture") or {},
                action=str(item.get("action") or ACTION),
            )
        )
    return scenarios


def _wrap(envelope: str, body: str, message_id: str, action: str = ACTION) -> tuple[bytes, dict[str, str]]:
    # ITI-74 travels with its own action (csd-wire-format §3.1); the bridge dispatches on the Body either way.
    if action == ACTION and "getModificationsRequest" in body:
        action = ACTION_ITI74
    if envelope == "soap12":
        xml = (
            f'<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA}"><s:Header>'
            f'<wsa:Action s:mustUnderstand="1">{action}</wsa:Action>'
            f"<wsa:MessageID>{message_id}</wsa:MessageID></s:Header><s:Body>{body}</s:Body></s:Envelope>"
        )
        return xml.encode(), {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}
    if envelope == "soap11":
        xml = f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>{body}</s:Body></s:Envelope>'
        return xml.encode(), {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    return body.encode(), {"Content-Type": "application/xml; charset=utf-8"}


def _check(scenario: Scenario, response: httpx.Response, message_id: str) -> list[str]:
    """Every failed check of the scenario, as a sentence (empty: it passed)."""
    expect = scenario.expect
    problems: list[str] = []
    status = expect.get("status", 200)
    if response.status_code != status:
        problems.append(f"HTTP {response.status_code}, expected {status}")
    try:
        root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as error:
        return [*problems, f"the answer is not XML ({error})"]
    reason = root.xpath("string(//s12:Reason/s12:Text | //faultstring)", namespaces=NS)
    if reason and response.status_code != status:
        problems.append(f"fault reason: {str(reason)[:200]}")
    if "fault" in expect:
        subcode = root.xpath("string(//f:error/@subcode)", namespaces=NS)
        if subcode != expect["fault"]:
            problems.append(f"fault subcode {subcode or '(none)'!r}, expected {expect['fault']!r}")
    if "root" in expect:
        first = root
        if etree.QName(root).localname == "Envelope":
            body = next((c for c in root if etree.QName(c).localname == "Body"), None)
            first = next(iter(body), root) if body is not None else root
        if etree.QName(first).localname != expect["root"]:
            problems.append(f"answer element {etree.QName(first).localname}, expected {expect['root']}")
    if expect.get("directories"):
        missing = [
            d
            for d in DIRECTORIES
            if not root.xpath(f"count(//*[self::csd:CSD or self::csd:queryResult]/csd:{d})", namespaces=NS)
        ]
        if missing:
            problems.append(f"directories missing: {', '.join(missing)}")
    for directory, bound in (expect.get("min") or {}).items():
        count = _count(root, directory)
        if count < bound:
            problems.append(f"{count} record(s) in {directory}, expected at least {bound}")
    for directory, bound in (expect.get("max") or {}).items():
        count = _count(root, directory)
        if count > bound:
            problems.append(f"{count} record(s) in {directory}, expected at most {bound}")
    for directory in expect.get("empty") or ():
        if _count(root, directory):
            problems.append(f"{directory} is not empty")
    if "entity" in expect:
        wanted = expect["entity"]
        if not root.xpath(
            "//*[self::csd:CSD or self::csd:queryResult]/*/*[@entityID=$wanted]", namespaces=NS, wanted=wanted
        ):
            problems.append(f"entity {wanted} is not in the answer")
    if "erreur" in expect:
        code = root.xpath("string(//ror:erreur/@code)", namespaces=NS)
        if code != str(expect["erreur"]):
            problems.append(f"the profile's erreur @code {code or '(none)'!r}, expected {expect['erreur']!r}")
    if expect.get("relates_to"):
        relates = root.xpath("string(//wsa:RelatesTo)", namespaces=NS)
        if relates != message_id:
            problems.append(f"wsa:RelatesTo {relates!r} does not echo the MessageID {message_id!r}")
    return problems


def _count(root: etree._Element, directory: str) -> int:
    """Records in one directory of the answer's csd:CSD (0 when it is absent)."""
    value = root.xpath(f"count(//*[self::csd:CSD or self::csd:queryResult]/csd:{directory}/*)", namespaces=NS)
    return int(value) if isinstance(value, float) else 0


def _fill(value: Any, captured: Mapping[str, str]) -> tuple[Any, list[str]]:
    """`{name}` placeholders filled from captured values; the names that were not captured."""
    if isinstance(value, str):
        missing = [n for n in _PLACEHOLDER.findall(value) if not captured.get(n)]
        return _PLACEHOLDER.sub(lambda m: _xml_attr(captured.get(m[1], "")), value), missing
    if isinstance(value, Mapping):
        filled: dict[str, Any] = {}
        missing_all: list[str] = []
        for key, item in value.items():
            filled[key], missing = _fill(item, captured)
            missing_all.extend(missing)
        return filled, missing_all
    return value, []


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def run_scenarios(
    target: str,
    scenarios: Sequence[Scenario],
    *,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 60.0,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run every scenario, in order, against the CSD endpoint `target` (e.g. http://host:8080/csd)."""
    captured: dict[str, str] = {}
    results: list[Result] = []
    with httpx.Client(transport=transport, timeout=timeout_s) as client:
        for scenario in scenarios:
            request, missing = _fill(scenario.request, captured)
            expect, missing_expect = _fill(dict(scenario.expect), captured)
            if missing or missing_expect:
                needed = ", ".join(sorted(set(missing + missing_expect)))
                result = Result(scenario, Outcome.SKIPPED, f"nothing captured for {needed}")
            else:
                message_id = f"urn:uuid:{uuid.uuid4()}"
                body, headers = _wrap(scenario.envelope, request, message_id, scenario.action)
                try:
                    response = client.post(target, content=body, headers=headers)
                except httpx.HTTPError as error:
                    result = Result(scenario, Outcome.FAILED, f"no answer: {type(error).__name__}: {error}")
                else:
                    problems = _check(replace(scenario, expect=expect), response, message_id)
                    result = Result(
                        scenario, Outcome.FAILED if problems else Outcome.PASSED, "; ".join(problems) or "ok"
                    )
                    if not problems:
                        _capture(scenario, response, captured)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def _capture(scenario: Scenario, response: httpx.Response, captured: dict[str, str]) -> None:
    root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    for name, xpath in scenario.capture.items():
        value = root.xpath(f"string({xpath})", namespaces=NS)
        if isinstance(value, str) and value:
            captured[name] = value


def render_table(results: Sequence[Result]) -> str:
    """The pass/fail table an integrator reads, with a summary line."""
    rows = [("scenario", "function", "result", "detail")]
    rows.extend((r.scenario.name, r.scenario.function, r.outcome.value, r.detail) for r in results)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
    counts = {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}
    lines.append("")
    lines.append(
        f"{len(results)} scenarios: {counts[Outcome.PASSED]} passed, {counts[Outcome.FAILED]} failed, "
        f"{counts[Outcome.SKIPPED]} skipped"
    )
    return "\n".join(lines)


def csd_endpoint(target: str, region: str | None = None) -> str:
    """The CSD endpoint of a deployment: `target` as given when it ends in /csd[/region], else base + /csd."""
    base = target.rstrip("/")
    if re.search(r"/csd(/[^/]+)?$", base):
        return base
    return f"{base}/csd/{region}" if region else f"{base}/csd"
