"""Bulk `$export`: kick-off, polling, manifest, streamed JSON/ndjson downloads, token renewal, clean-up."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from bridge.errors import UpstreamProtocolError, UpstreamStatusError
from bridge.fhir import bulk_export
from bridge.fhir.bulk_export import ExportRequest, ExportStats
from bridge.fhir.client import Credentials, FhirClient
from bridge.fhir.resilience import RetryPolicy
from tests.fhir.scripted import Scripted, fhir, outcome, resources

FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.001)


class ExportServer:
    """An export job: `polls_before_ready` 202 answers, then a manifest of one Bundle and one ndjson file."""

    def __init__(self, scripted: Scripted, *, polls_before_ready: int = 2, fail: bool = False) -> None:
        self.scripted = scripted
        self.polls_left = polls_before_ready
        self.fail = fail
        self.bundle_file = resources(3, "HealthcareService")
        self.ndjson_file = resources(4, "Organization")
        self.deleted = False
        self.file_delay_s = 0.0
        self.cut_ndjson_after = 0  # > 0: the first download of the ndjson file breaks after that many lines
        self.ndjson_downloads = 0

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.removeprefix("/fhir")
        base = self.scripted.base
        if path == "/$export":
            return Response(
                status_code=202, headers={"Content-Location": f"{base}/$export-poll-status?_jobId=j1"}
            )
        if path == "/$export-poll-status":
            if request.method == "DELETE":
                self.deleted = True
                return Response(status_code=202)
            if self.fail:
                return outcome("export job failed: disk full", 500)
            if self.polls_left > 0:
                self.polls_left -= 1
                return Response(status_code=202, headers={"Retry-After": "0", "X-Progress": "50%"})
            manifest = {
                "transactionTime": "2026-01-01T00:00:00Z",
                "request": f"{base}/$export",
                "requiresAccessToken": True,
                "output": [
                    {"type": "HealthcareService", "url": f"{base}/Binary/f1"},
                    {"type": "Organization", "url": f"{base}/Binary/f2"},
                ],
                "error": [],
            }
            return Response(orjson.dumps(manifest), media_type="application/json")
        await asyncio.sleep(self.file_delay_s)
        if path == "/Binary/f1":
            entries = [{"resource": r} for r in self.bundle_file]
            return fhir({"resourceType": "Bundle", "type": "collection", "entry": entries})
        if path == "/Binary/f2":
            self.ndjson_downloads += 1
            cut = self.cut_ndjson_after if self.ndjson_downloads == 1 else 0

            async def lines() -> Any:
                for number, resource in enumerate(self.ndjson_file, start=1):
                    yield orjson.dumps(resource) + b"\n"
                    if number == cut:
                        raise ConnectionResetError("the connection drops mid-file")

            return StreamingResponse(lines(), media_type="application/fhir+ndjson")
        return outcome("no such file", 404)


async def collect(client: FhirClient, stats: ExportStats, request: ExportRequest | None = None) -> list[str]:
    found: list[str] = []
    async with aclosing(client.export(request, poll_interval_s=0.01, stats=stats)) as resources_:
        async for resource in resources_:
            found.append(f"{resource['resourceType']}/{resource['id']}")
    return found


async def test_an_export_is_polled_downloaded_in_both_formats_and_deleted(scripted: Scripted) -> None:
    server = ExportServer(scripted)
    scripted.fhir_handler = server
    stats = ExportStats()
    request = ExportRequest(type_filters=("HealthcareService?_tag=https://example.org/r30|11",))
    async with FhirClient(scripted.base, headers={"Ror-Role-Metier-Code": "AUTOMATE"}, retry=FAST) as client:
        found = await collect(client, stats, request)
    expected = [f"HealthcareService/{r['id']}" for r in server.bundle_file]
    expected += [f"Organization/{r['id']}" for r in server.ndjson_file]
    assert found == expected
    assert (stats.polls, stats.files, stats.resources, stats.cleaned_up) == (3, 2, 7, True)
    assert server.deleted
    kick_off = dict(scripted.requests[0].params)
    assert kick_off["_type"] == "HealthcareService"
    assert kick_off["_typeFilter"] == "HealthcareService?_tag=https://example.org/r30|11"
    assert kick_off["includeAssociatedData"] == "_myCompleteExtract"
    assert scripted.requests[0].headers["prefer"] == "respond-async"
    assert all(r.headers["ror-role-metier-code"] == "AUTOMATE" for r in scripted.requests)


async def test_a_download_cut_mid_file_is_retried_without_repeating_resources(scripted: Scripted) -> None:
    server = ExportServer(scripted, polls_before_ready=0)
    server.cut_ndjson_after = 2
    scripted.fhir_handler = server
    stats = ExportStats()
    async with FhirClient(scripted.base, headers={}, retry=FAST) as client:
        found = await collect(client, stats)
    assert server.ndjson_downloads == 2
    assert found[3:] == [f"Organization/{r['id']}" for r in server.ndjson_file]
    assert len(found) == len(set(found)) == 7


async def test_a_failed_export_is_a_typed_error_and_the_job_is_still_deleted(scripted: Scripted) -> None:
    server = ExportServer(scripted, fail=True)
    scripted.fhir_handler = server
    stats = ExportStats()
    async with FhirClient(scripted.base, headers={}, retry=FAST) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await collect(client, stats)
    assert caught.value.status == 500
    assert caught.value.outcome == "export job failed: disk full"
    assert server.deleted
    assert stats.cleaned_up


async def test_a_long_export_renews_its_token(scripted: Scripted) -> None:
    server = ExportServer(scripted, polls_before_ready=3)
    server.file_delay_s = 0.12
    scripted.fhir_handler = server
    scripted.require_token = True
    scripted.token_ttl_s = 0.2  # shorter than the export: each token is used for 0.1 s at most
    credentials = Credentials(f"{scripted.root}/auth/token", "bridge", "s3cr3t-value")
    stats = ExportStats()
    async with FhirClient(scripted.base, headers={}, credentials=credentials, retry=FAST) as client:
        found = await collect(client, stats)
    assert len(found) == 7
    assert len(scripted.token_requests) >= 2
    assert len({r.headers["authorization"] for r in scripted.requests}) >= 2


async def test_files_are_downloaded_several_at_once_and_handed_out_in_manifest_order(
    scripted: Scripted,
) -> None:
    """`export_downloads` files in flight (issue 13 item 3): the slow first file does not hold back the
    second's download, yet its resources still come first."""
    server = ExportServer(scripted, polls_before_ready=0)
    server.file_delay_s = 0.2
    scripted.fhir_handler = server
    stats = ExportStats()
    async with FhirClient(scripted.base, headers={}, retry=FAST, export_downloads=2) as client:
        found = await collect(client, stats)
    expected = [f"HealthcareService/{r['id']}" for r in server.bundle_file]
    expected += [f"Organization/{r['id']}" for r in server.ndjson_file]
    assert found == expected
    assert scripted.max_in_flight == 2
    with pytest.raises(ValueError, match="export_downloads"):
        FhirClient(scripted.base, headers={}, export_downloads=0)


async def test_one_download_at_a_time_when_asked(scripted: Scripted) -> None:
    server = ExportServer(scripted, polls_before_ready=0)
    server.file_delay_s = 0.05
    scripted.fhir_handler = server
    async with FhirClient(scripted.base, headers={}, retry=FAST, export_downloads=1) as client:
        found = await collect(client, ExportStats())
    assert len(found) == 7
    assert scripted.max_in_flight == 1


class ManyBundles:
    """An export of `files` Bundle files of 3 resources each; `garbled` files answer invalid JSON the first
    time (or every time with `always_garbled`)."""

    def __init__(self, scripted: Scripted, files: int) -> None:
        self.scripted = scripted
        self.files = {f"f{n}": resources(3 * files, "Organization")[3 * n : 3 * n + 3] for n in range(files)}
        self.downloads: list[str] = []
        self.garbled: set[str] = set()
        self.always_garbled = False
        self.delays: dict[str, float] = {}  # file → seconds before it is answered
        self.requested_while: dict[str, list[str]] = {}  # delayed file → files requested before its answer

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.removeprefix("/fhir")
        base = self.scripted.base
        if path == "/$export":
            return Response(
                status_code=202, headers={"Content-Location": f"{base}/$export-poll-status?_jobId=j1"}
            )
        if path == "/$export-poll-status":
            if request.method == "DELETE":
                return Response(status_code=202)
            output = [{"type": "Organization", "url": f"{base}/Binary/{name}"} for name in self.files]
            return Response(orjson.dumps({"output": output, "error": []}), media_type="application/json")
        name = path.removeprefix("/Binary/")
        self.downloads.append(name)
        if name in self.delays:
            await asyncio.sleep(self.delays[name])
            self.requested_while[name] = list(self.downloads)
        if name in self.garbled and (self.always_garbled or self.downloads.count(name) == 1):
            return Response(b'{"resourceType": "Bundle", "entry": [', media_type="application/fhir+json")
        entries = [{"resource": r} for r in self.files[name]]
        return fhir({"resourceType": "Bundle", "type": "collection", "entry": entries})


async def test_files_wait_as_bytes_and_are_decoded_in_turn(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 item 3: the files in flight are downloaded at once, but only the one being handed out is
    decoded (decoded files waiting made the collector walk them again and again)."""
    server = ManyBundles(scripted, 4)
    scripted.fhir_handler = server
    decoded: list[int] = []

    def counted(body: bytes) -> Any:
        bundle = orjson.loads(body)
        decoded.append(len(bundle["entry"]))
        return bundle

    monkeypatch.setattr(bulk_export, "decode", counted)
    async with FhirClient(scripted.base, headers={}, retry=FAST, export_downloads=4) as client:
        resources_ = client.export(poll_interval_s=0.01)
        async with aclosing(resources_):
            first = await anext(resources_)
            await asyncio.sleep(0.3)  # ample time for every download
            downloaded, decoded_while_waiting = len(server.downloads), len(decoded)
            found = [first, *[r async for r in resources_]]
    assert downloaded == 4, "every file was downloaded meanwhile"
    assert decoded_while_waiting == 1, "only the file being handed out is decoded"
    assert [r["id"] for r in found] == [r["id"] for f in server.files.values() for r in f]
    assert len(decoded) == 4


async def test_a_slow_file_holds_back_the_hand_out_not_the_downloads_behind_it(scripted: Scripted) -> None:
    """A download that ends frees its slot at once (README, Performance: "`$export` collection: where the
    wall time went"): while the first file is slow, the files behind it are downloaded — at most
    `export_downloads` in flight, and at most as many more waiting for their turn — and still handed out
    after it."""
    server = ManyBundles(scripted, 8)
    server.delays = {"f0": 0.5}
    scripted.fhir_handler = server
    async with FhirClient(scripted.base, headers={}, retry=FAST, export_downloads=2) as client:
        found = await collect(client, ExportStats())
    assert server.requested_while["f0"] == ["f0", "f1", "f2", "f3"]
    assert scripted.max_in_flight == 2
    assert found == [f"Organization/{r['id']}" for f in server.files.values() for r in f]
    assert server.downloads == [f"f{n}" for n in range(8)]


async def test_a_file_that_does_not_parse_is_downloaded_again(scripted: Scripted) -> None:
    server = ManyBundles(scripted, 2)
    server.garbled = {"f1"}
    scripted.fhir_handler = server
    async with FhirClient(scripted.base, headers={}, retry=FAST) as client:
        found = await collect(client, ExportStats())
    assert server.downloads == ["f0", "f1", "f1"]
    assert found == [f"Organization/{r['id']}" for f in server.files.values() for r in f]
    server.always_garbled = True
    async with FhirClient(scripted.base, headers={}, retry=FAST) as client:
        with pytest.raises(UpstreamProtocolError, match="not valid JSON"):
            await collect(client, ExportStats())
