"""Bulk `$export` against the national API: kick-off, polling, manifest, streamed downloads, clean-up.

Outbound edge (`bridge/fhir/`): every request (kick-off, polls, downloads, clean-up) goes through the one
exchange (exchange.py: auth, retries, deadline, breaker). Follows the ROR's variant of FHIR Bulk Data
(ror-fhir-api.md §2.5): output files are one `collection` Bundle per slice (`application/fhir+json`) or
one resource per line (ndjson).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from bridge import gc_control
from bridge.errors import IncompleteResultError, UpstreamError, UpstreamProtocolError
from bridge.fhir.exchange import Exchange, decode
from bridge.fhir.outcome import retry_after_s
from bridge.fhir.resilience import Deadline
from bridge.fhir.validation import SampledValidator
from bridge.model import Resource

log = logging.getLogger(__name__)

# "includeAssociatedData=_myCompleteExtract" is always applied by the ROR (ror-fhir-api.md §2.5); sending it
# keeps the request explicit.
COMPLETE_EXTRACT = "_myCompleteExtract"
CLEANUP_TIMEOUT_S = 10.0
# Output files downloaded at once by default (`upstream_export_downloads`); each is held whole until its turn.
DOWNLOADS = 4
DOWNLOAD_ACCEPT = "application/fhir+ndjson, application/fhir+json"
# Files handed out per span of the paused collector (gc_control.Spans): a file decoded, handed out and freed
# within a span is never walked by the collector, which still runs between spans.
PAUSED_FILES = 16


class LogEvent(StrEnum):
    EXPORT_STARTED = "upstream-export-started"
    EXPORT_PROGRESS = "upstream-export-progress"
    EXPORT_READY = "upstream-export-ready"
    EXPORT_CLEANUP_FAILED = "upstream-export-cleanup-failed"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export: `_type`, `_typeFilter` (each a `Type?params` query), `_since`, `_outputFormat`."""

    types: tuple[str, ...] = ("HealthcareService",)
    type_filters: tuple[str, ...] = ()
    since: str | None = None
    output_format: str = "application/fhir+json"

    def params(self) -> list[tuple[str, str]]:
        params = [("_outputFormat", self.output_format), ("_type", ",".join(self.types))]
        params += [("_typeFilter", f) for f in self.type_filters]
        if self.since is not None:
            params.append(("_since", self.since))
        params.append(("includeAssociatedData", COMPLETE_EXTRACT))
        return params


@dataclass(slots=True)
class ExportStats:
    """What an export delivered, filled in as it runs (observability and tests)."""

    polls: int = 0
    files: int = 0
    resources: int = 0
    cleaned_up: bool = False


async def run_export(
    client: Exchange,
    request: ExportRequest,
    *,
    validator: SampledValidator | None = None,
    deadline: Deadline,
    poll_interval_s: float = 1.0,
    stats: ExportStats | None = None,
    downloads: int = DOWNLOADS,
) -> AsyncIterator[Resource]:
    """Every resource of the export, in the manifest's file order; the job is deleted at the end.

    Up to `downloads` files are fetched at once, each read whole before its resources are handed out (memory:
    up to twice `downloads` files as bytes, `downloads` of them downloading, and one file decoded). Use it
    under `contextlib.aclosing` so that an abandoned export is still cleaned up.
    """
    if downloads < 1:
        raise ValueError("downloads must be >= 1")
    stats = stats if stats is not None else ExportStats()
    kick_off = f"{client.base_url}/$export?{urlencode(request.params(), safe=':|,/')}"
    response, _ = await client.send(
        "GET",
        kick_off,
        deadline,
        extra_headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    poll_url = response.headers.get("content-location")
    if response.status_code not in (200, 202) or not poll_url:
        raise UpstreamProtocolError(
            f"$export kick-off answered HTTP {response.status_code} without Content-Location",
            request=kick_off,
        )
    log.info("%s", LogEvent.EXPORT_STARTED)
    client.observer.export_job("started")
    outcome = "failed"
    try:
        manifest = await _poll(client, poll_url, deadline, poll_interval_s, stats)
        outputs = manifest.get("output")
        if not isinstance(outputs, list):
            raise UpstreamProtocolError("the $export manifest has no output list", request=poll_url)
        log.info("%s %d files", LogEvent.EXPORT_READY, len(outputs))
        urls: list[str] = []
        for output in outputs:
            url = output.get("url") if isinstance(output, dict) else None
            if not isinstance(url, str):
                raise UpstreamProtocolError("a $export output has no url", request=poll_url)
            urls.append(url)
        files = _files(client, urls, deadline, downloads)
        spans = gc_control.Spans(PAUSED_FILES)
        try:
            async with contextlib.aclosing(files):
                async for resources in files:
                    spans.step()
                    stats.files += 1
                    for resource in resources:
                        stats.resources += 1
                        if validator is not None:
                            validator.submit(resource)
                        yield resource
        finally:
            spans.close()
        if manifest.get("error"):
            # Bulk Data: `error` lists OperationOutcome files for what could not be exported.
            raise IncompleteResultError(
                f"the $export manifest reports {len(manifest['error'])} error file(s)", request=poll_url
            )
        outcome = "completed"
    finally:
        client.observer.export_job(outcome)
        stats.cleaned_up = await _cleanup(client, poll_url)


async def _poll(
    client: Exchange, poll_url: str, deadline: Deadline, interval_s: float, stats: ExportStats
) -> Mapping[str, Any]:
    """Poll until the manifest (200); 202 means running: wait `Retry-After` (else `interval_s`)."""
    while True:
        response, _ = await client.send(
            "GET", poll_url, deadline, extra_headers={"Accept": "application/json"}
        )
        stats.polls += 1
        if response.status_code == 200:
            try:
                manifest = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise UpstreamProtocolError("the $export manifest is not JSON", request=poll_url) from None
            if not isinstance(manifest, dict):
                raise UpstreamProtocolError("the $export manifest is not a JSON object", request=poll_url)
            return manifest
        if response.status_code != 202:
            raise UpstreamProtocolError(
                f"$export poll answered HTTP {response.status_code}", request=poll_url
            )
        log.info("%s %s", LogEvent.EXPORT_PROGRESS, response.headers.get("x-progress", "?"))
        wait = retry_after_s(response.headers.get("retry-after"))
        wait = interval_s if wait is None else wait
        left = deadline.check(poll_url)
        await asyncio.sleep(max(0.0, min(wait, left)))


async def _files(
    client: Exchange, urls: list[str], deadline: Deadline, downloads: int
) -> AsyncGenerator[list[Resource], None]:
    """Each file's resources, in `urls` order, with up to `downloads` files in flight and up to `downloads`
    more downloaded, waiting for their turn; the first failure is raised in order and the downloads still
    running are cancelled.

    The files wait as bytes and each is decoded only when its turn comes: the collector never walks the
    trees of files not handed out yet (eight decoded files alive made it walk them again and again). A
    download that ends frees its slot at once, whatever the order: a slow file holds back the hand-out,
    not the downloads behind it (docs/performance-journal.md: "`$export` collection: where the wall time
    went")."""
    pending: deque[asyncio.Task[tuple[bytes, bool]]] = deque()
    started = in_flight = 0
    closed = False

    def fill() -> None:
        nonlocal started, in_flight
        while not closed and started < len(urls) and in_flight < downloads and len(pending) < 2 * downloads:
            task = asyncio.create_task(_download(client, urls[started], deadline))
            task.add_done_callback(ended)
            pending.append(task)
            started += 1
            in_flight += 1

    def ended(_: asyncio.Task[tuple[bytes, bool]]) -> None:
        nonlocal in_flight
        in_flight -= 1
        fill()

    try:
        fill()
        while pending:
            url = urls[started - len(pending)]
            body, ndjson = await pending[0]  # left in `pending` while awaited: it counts in the bound
            pending.popleft()
            fill()
            # One turn of the loop before the decode: the downloads just started send their requests and
            # those in flight read what has arrived (awaiting a download already finished does not yield:
            # without it, eight files went out together, came back together and waited for eight decodes
            # with nothing in flight).
            await asyncio.sleep(0)
            try:
                resources = _file_resources(body, ndjson, url)
            except orjson.JSONDecodeError:
                # A file that does not parse is a transfer cut short: downloaded again, once.
                body, ndjson = await _download(client, url, deadline)
                try:
                    resources = _file_resources(body, ndjson, url)
                except orjson.JSONDecodeError:
                    raise UpstreamProtocolError("an export file is not valid JSON", request=url) from None
            del body
            yield resources
            del resources
    finally:
        closed = True
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _download(client: Exchange, url: str, deadline: Deadline) -> tuple[bytes, bool]:
    """One output file, read whole through the exchange (a download cut midway is retried from its start),
    and whether it is ndjson. A fresh token per file and per attempt: long exports outlive tokens
    (ror-fhir-api.md §2.5)."""

    async def read(response: httpx.Response) -> AsyncIterator[tuple[bytes, bool]]:
        yield await response.aread(), "ndjson" in response.headers.get("content-type", "")

    bodies = client.stream(
        url,
        deadline,
        read,
        extra_headers={"Accept": DOWNLOAD_ACCEPT},
        refusal="the national API refused an export file",
    )
    async with contextlib.aclosing(bodies):
        async for body in bodies:
            return body
    raise UpstreamProtocolError("no answer", request=url)  # unreachable: `read` yields once


def _file_resources(body: bytes, ndjson: bool, url: str) -> list[Resource]:
    """The resources of one file: one per line (ndjson) or the entries of one Bundle ("un par tranche de
    résultats"), decoded with the collector paused; raises orjson.JSONDecodeError."""
    if ndjson:
        with gc_control.batch():
            return [_resource(orjson.loads(line), url) for line in body.splitlines() if line.strip()]
    return list(_bundle_resources(decode(body), url))


async def _cleanup(client: Exchange, poll_url: str) -> bool:
    """DELETE the job and its files (Bulk Data "delete a bulk data request"); a failure is only logged."""
    try:
        await client.send("DELETE", poll_url, Deadline(CLEANUP_TIMEOUT_S))
    except UpstreamError as error:
        log.warning("%s: %s", LogEvent.EXPORT_CLEANUP_FAILED, error.reason)
        return False
    return True


def _bundle_resources(body: Any, url: str) -> Iterator[Resource]:
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        for entry in body.get("entry") or ():
            resource = entry.get("resource") if isinstance(entry, dict) else None
            yield _resource(resource, url)
    else:
        yield _resource(body, url)


def _resource(value: Any, url: str) -> Resource:
    if not isinstance(value, dict) or "resourceType" not in value or "id" not in value:
        raise UpstreamProtocolError("an export file holds something that is not a resource", request=url)
    return value
