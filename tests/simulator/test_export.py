"""Bulk `$export` of the simulator: kick-off, polling, manifest, downloads, filters, formats, cancel, failure.

Expected contents are computed from the dataset's own references, independently of the search engine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from bridge.simulator.access_control import TOKEN_PATH
from bridge.simulator.dataset import Dataset
from bridge.simulator.export import ExportSettings, ExportStore
from bridge.simulator.fault_injection import FAULTS_HEADER
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app, create_simulator_server

ROOT = "http://sim"
REGION_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
Key = tuple[str, str]


def client_for(app: Any, base: str = ROOT) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


def sim(dataset: Dataset, **config: Any) -> FastAPI:
    return create_simulator_app(SimulatorConfig(**config), dataset)


async def kickoff(http: httpx.AsyncClient, params: dict[str, str], **headers: str) -> str:
    response = await http.get("/$export", params=params, headers=headers)
    assert response.status_code == 202, response.text
    return response.headers["Content-Location"]


async def wait_done(http: httpx.AsyncClient, poll: str, **headers: str) -> httpx.Response:
    for _ in range(2000):
        response = await http.get(poll, headers=headers)
        if response.status_code != 202:
            return response
        await asyncio.sleep(0.005)
    raise AssertionError("the export job never finished")


async def download(http: httpx.AsyncClient, manifest: dict[str, Any], **headers: str) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for item in manifest["output"]:
        response = await http.get(item["url"], headers=headers)
        assert response.status_code == 200
        if response.headers["content-type"].startswith("application/fhir+ndjson"):
            lines = [orjson.loads(line) for line in response.content.splitlines()]
        else:
            bundle = response.json()
            assert bundle["resourceType"] == "Bundle"
            assert bundle["type"] == "collection"
            lines = [entry["resource"] for entry in bundle["entry"]]
        assert {r["resourceType"] for r in lines} == {item["type"]}
        assert len(lines) == item["count"]
        resources += lines
    return resources


def ref_ids(value: Any, rtype: str) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [i["reference"].split("/", 1)[1] for i in items if i["reference"].startswith(rtype + "/")]


def complete_extract(dataset: Dataset, service_ids: list[str]) -> set[Key]:
    """The offers and, by hand over references, their organisation chain, locations, roles, practitioners."""
    wanted = set(service_ids)
    keys: set[Key] = {("HealthcareService", sid) for sid in wanted}
    for sid in wanted:
        service = dataset.get("HealthcareService", sid)
        assert service is not None
        org = ref_ids(service.get("providedBy"), "Organization")
        while org:
            keys.add(("Organization", org[0]))
            parent = dataset.get("Organization", org[0])
            org = ref_ids(parent.get("partOf"), "Organization") if parent else []
        keys |= {("Location", lid) for lid in ref_ids(service.get("location"), "Location")}
    for role in dataset.resources["PractitionerRole"].values():
        if wanted & set(ref_ids(role.get("healthcareService"), "HealthcareService")):
            keys.add(("PractitionerRole", role["id"]))
            keys |= {("Practitioner", p) for p in ref_ids(role.get("practitioner"), "Practitioner")}
    return keys


@pytest.fixture
async def http(dataset: Dataset) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sim(dataset, export_file_size=100)) as client:
        yield client


async def test_export_of_the_offers_with_the_complete_extract(
    http: httpx.AsyncClient, dataset: Dataset
) -> None:
    params = {"_outputFormat": "application/fhir+json", "_type": "HealthcareService"}
    poll = await kickoff(http, params)
    assert poll.startswith(f"{ROOT}/$export-poll-status?_jobId=")
    done = await wait_done(http, poll)
    assert done.status_code == 200
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert manifest["request"].startswith(f"{ROOT}/$export?")
    assert manifest["transactionTime"].endswith("+00:00")
    resources = await download(http, manifest)
    keys = [(r["resourceType"], r["id"]) for r in resources]
    assert len(keys) == len(set(keys)), "each resource once"
    assert set(keys) == complete_extract(dataset, list(dataset.resources["HealthcareService"]))
    assert {k[0] for k in keys} == {
        "HealthcareService",
        "Organization",
        "Location",
        "PractitionerRole",
        "Practitioner",
    }
    services = [i for i in manifest["output"] if i["type"] == "HealthcareService"]
    assert [i["count"] for i in services] == [100, 100, 100]  # one file per slice of results


async def test_type_filter_on_the_source_region(http: httpx.AsyncClient, dataset: Dataset) -> None:
    services = dataset.resources["HealthcareService"].values()
    region = next(iter(services))["meta"]["tag"][0]["code"]
    in_region = [s["id"] for s in services if any(t["code"] == region for t in s["meta"]["tag"])]
    assert 0 < len(in_region) < len(services)
    params = {
        "_type": "HealthcareService",
        "_typeFilter": f"HealthcareService?_tag={REGION_SYSTEM}|{region}",
        "_outputFormat": "application/json",
    }
    manifest = (await wait_done(http, await kickoff(http, params))).json()
    resources = await download(http, manifest)
    assert {(r["resourceType"], r["id"]) for r in resources} == complete_extract(dataset, in_region)


async def test_since_keeps_the_offers_updated_after_it(http: httpx.AsyncClient, dataset: Dataset) -> None:
    updated = sorted(s["meta"]["lastUpdated"] for s in dataset.resources["HealthcareService"].values())
    since = updated[len(updated) // 2]
    newer = [
        s["id"] for s in dataset.resources["HealthcareService"].values() if s["meta"]["lastUpdated"] > since
    ]
    assert 0 < len(newer) < len(updated)
    params = {"_type": "HealthcareService", "_since": since}
    manifest = (await wait_done(http, await kickoff(http, params))).json()
    exported = {r["id"] for r in await download(http, manifest) if r["resourceType"] == "HealthcareService"}
    assert exported == set(newer)


@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
async def test_ndjson_on_request_holds_the_same_resources(
    http: httpx.AsyncClient, dataset: Dataset, fmt: str
) -> None:
    params = {"_type": "Organization", "_outputFormat": fmt}
    manifest = (await wait_done(http, await kickoff(http, params))).json()
    first = await http.get(manifest["output"][0]["url"])
    assert first.headers["content-type"].startswith("application/fhir+ndjson")
    resources = await download(http, manifest)
    assert sorted(r["id"] for r in resources) == sorted(dataset.resources["Organization"])


async def test_files_are_built_when_first_downloaded_and_stay_the_same(dataset: Dataset) -> None:
    """A finished job lists its files before any exists (built on download, issue 13): each file then holds
    the resources of its slice in result order, fullUrls from the job's base, the same bytes every time."""
    app = sim(dataset, export_file_size=100, export_build_ahead=0)
    store: ExportStore = app.state.exports
    async with client_for(app) as http:
        poll = await kickoff(http, {"_type": "HealthcareService"})
        manifest = (await wait_done(http, poll)).json()
        assert manifest["output"]
        assert not [p for p in store.directory.iterdir() if p.is_file()], "nothing built before a download"
        first = manifest["output"][0]
        binary_id = first["url"].rsplit("/", 1)[1]
        once = await http.get(first["url"])
        again = await http.get(first["url"])
        assert once.status_code == again.status_code == 200
        assert once.content == again.content
        bundle = once.json()
        assert bundle["id"] == binary_id
        ids = sorted(dataset.resources["HealthcareService"], key=int)[: first["count"]]
        assert [e["resource"]["id"] for e in bundle["entry"]] == ids
        assert [e["resource"] for e in bundle["entry"]] == [dataset.get("HealthcareService", i) for i in ids]
        assert all(e["fullUrl"].startswith(f"{ROOT}/HealthcareService/") for e in bundle["entry"])
        assert len([p for p in store.directory.iterdir() if p.is_file()]) == 1


async def test_a_running_job_answers_202_with_retry_after_and_progress_and_can_be_deleted(
    dataset: Dataset,
) -> None:
    # The job pauses an hour before each file: it is certainly still running when polled.
    async with client_for(sim(dataset, export_step_delay_s=3600, export_retry_after_s=3)) as http:
        poll = await kickoff(http, {"_type": "HealthcareService"})
        running = await http.get(poll)
        assert running.status_code == 202
        assert running.headers["Retry-After"] == "3"
        assert running.headers["X-Progress"] == "0%"
        assert (await http.delete(poll)).status_code == 202
        assert (await http.get(poll)).status_code == 404
        assert (await http.delete(poll)).status_code == 404


async def test_a_download_builds_the_next_files_ahead(dataset: Dataset) -> None:
    """`export_build_ahead`: downloading a job's file i builds files i+1 … i+N in worker threads (README, The
    ROR simulator); those are then served as built, the same resources as a file built by its own download."""
    app = sim(dataset, export_file_size=20, export_build_ahead=2)
    store: ExportStore = app.state.exports
    async with client_for(app) as http:
        manifest = (await wait_done(http, await kickoff(http, {"_type": "HealthcareService"}))).json()
        urls = [item["url"] for item in manifest["output"]]
        assert len(urls) >= 5
        ids = [url.rsplit("/", 1)[1] for url in urls]
        first = await http.get(urls[1])
        assert first.status_code == 200
        for _ in range(200):  # the builds ahead run in worker threads
            if all(store.binaries[i].path.is_file() for i in ids[1:4]):
                break
            await asyncio.sleep(0.01)
        on_disk = [store.binaries[i].path.is_file() for i in ids]
        assert on_disk[:5] == [False, True, True, True, False]
        ahead = await http.get(urls[2])
        assert ahead.status_code == 200
        assert ahead.content == (await http.get(urls[2])).content
    fresh = sim(dataset, export_file_size=20, export_build_ahead=0)
    async with client_for(fresh) as http:
        manifest = (await wait_done(http, await kickoff(http, {"_type": "HealthcareService"}))).json()
        built_by_download = (await http.get(manifest["output"][2]["url"])).json()
    assert [e["resource"] for e in ahead.json()["entry"]] == [
        e["resource"] for e in built_by_download["entry"]
    ]


async def test_a_poll_waits_for_a_job_about_to_finish(dataset: Dataset) -> None:
    """`export_poll_wait_s`: a job finishing within it answers the poll with its manifest, not with a 202
    and a Retry-After of whole seconds (README, Performance: "`$export` collection: where the wall time
    went"); with 0 the poll answers at once."""
    params = {"_type": "Organization"}
    quick = {"export_step_delay_s": 0.05, "export_file_size": 100_000}  # one file, written after 50 ms
    async with client_for(sim(dataset, **quick, export_poll_wait_s=0)) as http:
        assert (await http.get(await kickoff(http, params))).status_code == 202
    async with client_for(sim(dataset, **quick, export_poll_wait_s=5)) as http:
        poll = await kickoff(http, params)
        started = asyncio.get_running_loop().time()
        first = await http.get(poll)
        assert first.status_code == 200, first.text
        waited = asyncio.get_running_loop().time() - started
        assert waited < 4, "answered once the job ended, not at the end of the wait"
        assert [item["type"] for item in first.json()["output"]] == ["Organization"]


async def test_a_job_deleted_while_a_poll_waits_answers_404(dataset: Dataset) -> None:
    async with client_for(sim(dataset, export_step_delay_s=3600, export_poll_wait_s=5)) as http:
        poll = await kickoff(http, {"_type": "HealthcareService"})
        waiting = asyncio.create_task(http.get(poll))
        await asyncio.sleep(0.1)
        assert (await http.delete(poll)).status_code == 202
        gone = await waiting
        assert gone.status_code == 404
        assert gone.json()["resourceType"] == "OperationOutcome"


async def test_delete_removes_the_output_files(http: httpx.AsyncClient) -> None:
    poll = await kickoff(http, {"_type": "Organization"})
    manifest = (await wait_done(http, poll)).json()
    url = manifest["output"][0]["url"]
    assert (await http.get(url)).status_code == 200
    assert (await http.delete(poll)).status_code == 202
    gone = await http.get(url)
    assert gone.status_code == 404
    assert gone.json()["resourceType"] == "OperationOutcome"


async def test_export_fail_fault_on_the_kickoff_fails_the_job(http: httpx.AsyncClient) -> None:
    poll = await kickoff(http, {"_type": "HealthcareService"}, **{FAULTS_HEADER: "export(fail)"})
    failed = await wait_done(http, poll)
    assert failed.status_code == 500
    outcome = failed.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"


async def test_export_fail_fault_from_the_config_hits_a_running_job(dataset: Dataset) -> None:
    app = sim(dataset, export_step_delay_s=3600, faults="export(fail)@path=poll-status&n=3")
    async with client_for(app) as http:
        poll = await kickoff(http, {"_type": "HealthcareService"})  # request 1
        assert (await http.get(poll)).status_code == 202  # request 2
        failed = await http.get(poll)  # request 3: the fault
        assert failed.status_code == 500
        assert "failed" in failed.json()["issue"][0]["diagnostics"]
        assert (await http.get(poll)).status_code == 500  # the job stays failed


@pytest.mark.parametrize(
    "params",
    [
        {"_outputFormat": "text/csv"},
        {"_type": "Patient"},
        {"_type": "HealthcareService", "_typeFilter": "Organization?_tag=x"},
        {"_type": "HealthcareService", "_typeFilter": "HealthcareService?colour=blue"},
        {"_type": "HealthcareService", "_typeFilter": "no-question-mark"},
        {"includeAssociatedData": "LatestProvenanceResources"},
        {"_since": "yesterday"},
        {"_elements": "id"},
    ],
)
async def test_bad_kickoffs_are_400(http: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await http.get("/$export", params=params)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_unknown_jobs_and_files_are_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/$export-poll-status?_jobId=nope")).status_code == 404
    assert (await http.get("/Binary/nope")).status_code == 404


async def test_with_access_checks_the_files_need_the_same_token(dataset: Dataset) -> None:
    server = create_simulator_server(SimulatorConfig(open_access=False), dataset)
    ror = {
        "Ror-Profil-Utilisateur-Code": "CU23",
        "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
        "Ror-Role-Metier-Code": "AUTOMATE",
        "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6",
    }
    async with client_for(server) as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": "bridge-demo",
            "client_secret": "bridge-demo",
        }
        access = (await http.post(TOKEN_PATH, data=form)).json()["access_token"]
        headers = {"Authorization": f"Bearer {access}", **ror}
        fhir = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server), base_url=ROOT + "/ws-diffusion-fhir"
        )
        async with fhir:
            assert (await fhir.get("/$export", params={"_type": "Organization"})).status_code == 401
            response = await fhir.get("/$export", params={"_type": "Organization"}, headers=headers)
            poll = response.headers["Content-Location"]
            assert poll.startswith(f"{ROOT}/ws-diffusion-fhir/$export-poll-status")
            manifest = (await wait_done(fhir, poll, **headers)).json()
            url = manifest["output"][0]["url"]
            assert (await fhir.get(url)).status_code == 401
            assert (await fhir.get(url, headers=headers)).status_code == 200


def test_export_directories_of_ended_processes_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: Dataset
) -> None:
    """A simulator ended by a signal skips its exit handlers and leaves its export files: the next store
    removes the directories of processes that no longer run, and only those."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    gone = tmp_path / f"ror-simulator-export-{int(ended.stdout)}-abc"
    (gone / "sub").mkdir(parents=True)
    (gone / "sub" / "file.ndjson").write_bytes(b"{}\n")
    alive = tmp_path / f"ror-simulator-export-{os.getppid()}-def"  # the process that runs this test's runner
    alive.mkdir()
    unrelated = tmp_path / "ror-simulator-export-notapid"
    unrelated.mkdir()
    store = ExportStore(dataset, ExportSettings())
    own = store.directory
    assert own.parent == tmp_path
    assert own.name.startswith(f"ror-simulator-export-{os.getpid()}-")
    assert not gone.exists()
    assert alive.exists()
    assert unrelated.exists()
