"""Records the golden cases' upstream answers and expected CSD responses (a tool, run by hand, not a test).

    .venv/bin/python -m tests.golden.record [CASE ...]                  # new cases: record the upstream too
    .venv/bin/python -m tests.golden.record --expected-only [CASE ...]  # tables changed: replay the answers

For each case of manifest.yaml it runs the bridge against a recording stand-in of the national API: the
built-in simulator (lenient) over the manifest's dataset, plus a small emulation of the search parameters the
simulator does not implement yet (listed in EMULATED). Every call the bridge makes and the Bundle it got back
are written next to the request (calls.json, answer-N.json), then the bridge's response (expected.xml, C14N
2.0) or its fault (expected-fault.json). `--expected-only` keeps the recorded calls and answers (the simulator
dataset may have changed since) and rewrites only the expected response, after checking the bridge still makes
exactly the recorded calls. Review the diff of what it writes before committing it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bridge.app import create_app
from bridge.config import load_settings
from bridge.simulator.dataset import Dataset, generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app
from tests.golden.manifest import GOLDEN, Case, Upstream, canonical, fault_summary, load_manifest
from tests.server import running_server

Params = list[tuple[str, str]]


def _starts(text: object, prefix: str) -> bool:
    return isinstance(text, str) and text.casefold().startswith(prefix.casefold())


def _codings(concepts: object) -> list[str]:
    found = []
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
            found.append(f"{coding.get('system')}|{coding.get('code')}")
    return found


def _locations(resource: dict[str, Any], dataset: Dataset) -> list[dict[str, Any]]:
    found = []
    for ref in resource.get("location", []):
        target = dataset.get("Location", str(ref.get("reference", "")).rpartition("/")[2])
        if target is not None:
            found.append(target)
    return found


def _chain(resource: dict[str, Any], dataset: Dataset) -> list[dict[str, Any]]:
    org_id = str(resource.get("providedBy", {}).get("reference", "")).rpartition("/")[2]
    return [o for o in (dataset.get("Organization", i) for i in [org_id, *dataset.ancestors(org_id)]) if o]


def _updated_filter(value: str, resource: dict[str, Any], dataset: Dataset) -> bool:
    since = value.split(" ge ")[1].split(" ")[0]
    stamps = [resource["meta"]["lastUpdated"], *(o["meta"]["lastUpdated"] for o in _chain(resource, dataset))]
    return any(_after(stamp, since) for stamp in stamps)


def _after(stamp: str, since: str) -> bool:
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return parse(stamp) >= parse(since)


def _references(value: object) -> set[str]:
    """Every literal `Type/id` reference in a resource."""
    if isinstance(value, dict):
        found = {str(value["reference"])} if isinstance(value.get("reference"), str) else set()
        return found.union(*(_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value))
    return set()


def _dropped_but_included(every: list[dict[str, Any]], kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matches an emulated filter dropped that a kept entry references (its parent…): the simulator did
    not include them because they were matches, the national API would, so they come back as includes."""
    kept_keys = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in kept}
    wanted = set().union(*(_references(e["resource"]) for e in kept)) - kept_keys if kept else set()
    return [
        {**e, "search": {"mode": "include"}}
        for e in every
        if f"{e['resource']['resourceType']}/{e['resource']['id']}" in wanted
    ]


# Search parameters the simulator does not implement yet: (resource type, name) → predicate on a match.
Predicate = Callable[[str, dict[str, Any], Dataset], bool]
EMULATED: dict[tuple[str, str], Predicate] = {
    ("Location", "address-city:contains"): lambda v, r, d: (
        v.casefold() in str(r.get("address", {}).get("city", "")).casefold()
    ),
    ("HealthcareService", "specialty"): lambda v, r, d: bool(
        set(v.split(",")) & set(_codings(r.get("specialty", [])))
    ),
    ("HealthcareService", "location.address-postalcode"): lambda v, r, d: any(
        _starts(loc.get("address", {}).get("postalCode"), p) for loc in _locations(r, d) for p in v.split(",")
    ),
    ("HealthcareService", "_filter"): _updated_filter,
}


def _recorder(simulator: FastAPI, dataset: Dataset, log: list[tuple[str, Params, dict[str, Any]]]) -> FastAPI:
    app = FastAPI()
    transport = httpx.ASGITransport(app=simulator, root_path="/ws-diffusion-fhir")

    @app.get("/ws-diffusion-fhir/{resource_type}")
    async def search(resource_type: str, request: Request) -> JSONResponse:
        params = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "_count"]
        emulated = [(k, v) for k, v in params if (resource_type, k) in EMULATED]
        forwarded = [(k, v) for k, v in params if (resource_type, k) not in EMULATED]
        async with httpx.AsyncClient(transport=transport, base_url="http://sim/ws-diffusion-fhir") as client:
            answer = (await client.get(f"/{resource_type}", params=[*forwarded, ("_count", "200")])).json()
        if answer.get("resourceType") == "Bundle":
            if any(link.get("relation") == "next" for link in answer.get("link", [])):
                raise RuntimeError("a golden answer must fit in one page: use a smaller dataset")
            entries = [
                e
                for e in answer.get("entry", [])
                if e.get("search", {}).get("mode") != "match"
                or all(EMULATED[(resource_type, k)](v, e["resource"], dataset) for k, v in emulated)
            ]
            if any(k.startswith("_include") for k, _ in params):
                entries += _dropped_but_included(answer.get("entry", []), entries)
            answer = {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": sum(1 for e in entries if e.get("search", {}).get("mode") == "match"),
                "entry": entries,
            }
        log.append((resource_type, params, answer))
        return JSONResponse(answer)

    return app


async def _run(bridge: FastAPI, body: bytes) -> httpx.Response:
    async with bridge.router.lifespan_context(bridge):
        transport = httpx.ASGITransport(app=bridge)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            return await client.post("/csd", content=body, headers={"Content-Type": "application/xml"})


def record(case: Case, dataset: Dataset, simulator: FastAPI) -> None:
    log: list[tuple[str, Params, dict[str, Any]]] = []
    with running_server(_recorder(simulator, dataset, log)) as url:
        bridge = create_app(load_settings(upstream_url=f"{url}/ws-diffusion-fhir"))
        response = asyncio.run(_run(bridge, case.request.read_bytes()))
    for old in case.directory.glob("answer-*.json"):
        old.unlink()
    calls = []
    for number, (resource_type, params, answer) in enumerate(sorted(log, key=lambda c: (c[0], c[1])), 1):
        name = f"answer-{number}.json"
        (case.directory / name).write_text(json.dumps(answer, indent=1, ensure_ascii=False) + "\n", "utf-8")
        calls.append({"resource": resource_type, "params": [list(p) for p in params], "answer": name})
    (case.directory / "calls.json").write_text(
        json.dumps(calls, indent=1, ensure_ascii=False) + "\n", "utf-8"
    )
    _write_expected(case, response)
    print(f"{case.name}: HTTP {response.status_code}, {len(calls)} call(s)")


def _write_expected(case: Case, response: httpx.Response) -> None:
    for stale in ("expected.xml", "expected-fault.json"):
        (case.directory / stale).unlink(missing_ok=True)
    if response.status_code == 200:
        (case.directory / "expected.xml").write_bytes(canonical(response.content) + b"\n")
    else:
        summary = fault_summary(response)
        (case.directory / "expected-fault.json").write_text(json.dumps(summary, indent=1) + "\n", "utf-8")


def replay(case: Case, stand_in: Upstream, url: str) -> None:
    stand_in.case, stand_in.received = case, []
    bridge = create_app(load_settings(upstream_url=url))
    response = asyncio.run(_run(bridge, case.request.read_bytes()))
    recorded = sorted((c["resource"], tuple((k, v) for k, v in c["params"])) for c in case.calls())
    if sorted(stand_in.received) != recorded:
        raise SystemExit(f"{case.name}: the bridge no longer makes the recorded calls: record it again")
    _write_expected(case, response)
    print(f"{case.name}: HTTP {response.status_code} (replayed)")


def main(names: Sequence[str]) -> None:
    manifest = load_manifest()
    if names and names[0] == "--expected-only":
        stand_in = Upstream()
        with running_server(stand_in.app) as url:
            for case in manifest.cases:
                if len(names) == 1 or case.name in names[1:]:
                    replay(case, stand_in, f"{url}/ws-diffusion-fhir")
        return
    dataset = generate_dataset(manifest.scale, manifest.seed)
    simulator = create_simulator_app(
        SimulatorConfig(scale=manifest.scale, seed=manifest.seed, strict=False), dataset
    )
    for case in manifest.cases:
        if not names or case.name in names:
            record(case, dataset, simulator)


if __name__ == "__main__":
    print(f"recording into {GOLDEN}")
    main(sys.argv[1:])
