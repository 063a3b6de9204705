"""The golden cases of tests/golden/ (manifest.yaml): loading, C14N 2.0 canonical form, fault summaries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lxml import etree

GOLDEN = Path(__file__).resolve().parent
FAULT_NS = "urn:ror:csd:fault"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
Call = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Case:
    name: str
    function: str  # the stored function's registry name (functions.yaml)
    shape: str  # the request shape it pins down
    directory: Path

    @property
    def request(self) -> Path:
        return self.directory / "request.xml"

    def calls(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads((self.directory / "calls.json").read_text("utf-8"))
        return data

    def answer(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    @property
    def expected_xml(self) -> Path:
        return self.directory / "expected.xml"

    @property
    def expected_fault(self) -> Path:
        return self.directory / "expected-fault.json"


@dataclass(frozen=True)
class Manifest:
    scale: int
    seed: int
    cases: tuple[Case, ...]


def load_manifest() -> Manifest:
    raw = yaml.safe_load((GOLDEN / "manifest.yaml").read_text("utf-8"))
    cases = tuple(
        Case(item["name"], item["function"], item["shape"], GOLDEN / "cases" / item["name"])
        for item in raw["cases"]
    )
    return Manifest(raw["dataset"]["scale"], raw["dataset"]["seed"], cases)


def canonical(xml: bytes) -> bytes:
    """C14N 2.0 of a document, whitespace-only text between elements dropped (pretty-printing ignored)."""
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(xml, parser)
    return etree.canonicalize(root, strip_text=True).encode("utf-8")


def fault_summary(response: httpx.Response) -> dict[str, Any]:
    """What a fault must keep: HTTP status, SOAP code, the bridge's subcode and a word of its reason."""
    root = etree.fromstring(response.content)
    code = root.findtext(f".//{{{SOAP12_NS}}}Code/{{{SOAP12_NS}}}Value") or ""
    error = root.find(f".//{{{FAULT_NS}}}error")
    summary = {
        "status": response.status_code,
        "code": code.rpartition(":")[2],
        "subcode": error.get("subcode") if error is not None else None,
    }
    erreur = root.find(".//{urn:asip:ror:2015}erreur")  # a ROR v2.4 profile request's fault
    if erreur is not None:
        summary["erreur"] = erreur.get("code")
    return summary


class Upstream:
    """A national API stand-in: answers the current case's recorded calls, logs every call it receives."""

    def __init__(self) -> None:
        self.case: Case | None = None
        self.received: list[Call] = []
        self.app = FastAPI()

        @self.app.get("/ws-diffusion-fhir/{resource_type}")
        async def search(resource_type: str, request: Request) -> Response:
            params = tuple(
                (k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "_count"
            )
            self.received.append((resource_type, params))
            assert self.case is not None
            for call in self.case.calls():
                if call["resource"] == resource_type and [list(p) for p in params] == call["params"]:
                    return Response(self.case.answer(call["answer"]), media_type="application/fhir+json")
            outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "not a recorded call"}]}
            return JSONResponse(outcome, status_code=404)
