"""Bulk `$export` of the ROR simulator (simulator/): kick-off, background jobs, polling, manifest, Binary.

The ROR's variant of FHIR Bulk Data (ror-fhir-api.md §2.5): fhir+json Bundles per file, ndjson on request.
A job only decides which resources go in which file; each file is built when first downloaded (issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from bridge.simulator.bundle import FhirResponse, error_response, fhir_base, operation_outcome
from bridge.simulator.dataset import RESOURCE_TYPES, Dataset
from bridge.simulator.fault_injection import SCOPE_KEY, FaultRule
from bridge.simulator.render_cache import RenderCache
from bridge.simulator.search import (
    Key,
    SearchError,
    evaluate,
    parse_search,
    resolve_includes,
)

# `_outputFormat` → (file media type, ndjson?). The ROR serves application/fhir+json and application/json
# (ror-fhir-api.md §2.5); the ndjson forms are the simulator's extra, on request (issue 3 item 6).
OUTPUT_FORMATS: dict[str, tuple[str, bool]] = {
    "application/fhir+json": ("application/fhir+json", False),
    "application/json": ("application/fhir+json", False),
    "application/fhir+ndjson": ("application/fhir+ndjson", True),
    "application/ndjson": ("application/fhir+ndjson", True),
    "ndjson": ("application/fhir+ndjson", True),
}
KICKOFF_PARAMS = frozenset({"_type", "_typeFilter", "_since", "_outputFormat", "includeAssociatedData"})
COMPLETE_EXTRACT = "_myCompleteExtract"  # RorIncludeAssociatedDataCodeSystem (ror-fhir-api.md §2.5)

# The "offre complète" around each exported HealthcareService: its organisation and the partOf chain, its
# locations, the practitioner roles pointing at it and their practitioners. [INFER] from the code-system text
# "inclure toutes les ressources liées à la ressource identifiée dans _type" (ror-fhir-api.md §2.5).
_COMPLETE_PARAMS: tuple[tuple[str, str], ...] = (
    ("_include", "HealthcareService:organization"),
    ("_include:iterate", "Organization:partof"),
    ("_include", "HealthcareService:location"),
    ("_revinclude", "PractitionerRole:service"),
    ("_include", "PractitionerRole:practitioner"),
)


@dataclass(frozen=True)
class ExportSettings:
    file_size: int = 1000  # resources per output file ("un par tranche de résultats")
    step_delay_s: float = 0.0  # pause before each file is written, to watch a job run
    retry_after_s: int = 1  # Retry-After of a poll while the job runs
    # A poll of a running job waits up to this long for it to finish before answering 202: a job finishing
    # within it answers this poll with its manifest instead of sending the client away for a Retry-After of
    # whole seconds (a 12 000-offer job takes ~0.2 s; docs/performance-journal.md). 0: every poll answers at
    # once.
    poll_wait_s: float = 0.5
    # Files built ahead of the downloads: a request for a job's file i starts building files i+1 … i+N in
    # worker threads, so that they are on disk when their own requests come (a server whose job wrote its
    # files answers a download with a read). 0: each file is built by its first download only.
    build_ahead: int = 8


@dataclass
class ExportJob:
    id: str
    request_url: str
    base: str
    transaction_time: str
    types: tuple[str, ...]
    filters: dict[str, list[list[tuple[str, str]]]]  # type → each _typeFilter's search params
    since: str | None
    ndjson: bool
    media_type: str
    fail_on_demand: bool
    status: str = "running"  # running | complete | failed
    progress: str = "0%"
    error: str | None = None
    output: list[tuple[str, str, int]] = field(default_factory=list)  # (type, binary id, resource count)
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class _Binary:
    """One output file: the resources it holds, built into `path` when first downloaded."""

    job_id: str
    path: Path
    media_type: str
    keys: tuple[Key, ...]
    base: str  # the FHIR base of the job's fullUrls
    ndjson: bool
    index: int  # its place in the job's output


_DIRECTORY_PREFIX = "ror-simulator-export-"  # then the owning process id, a dash, a random part


def _remove_stale_directories(root: Path) -> None:
    """Remove the export directories whose owning process has ended (named `…-<pid>-<random>`)."""
    for path in root.glob(f"{_DIRECTORY_PREFIX}*-*"):
        pid = path.name[len(_DIRECTORY_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class ExportStore:
    """Export jobs and their output files (in a temporary directory, removed with the store)."""

    def __init__(
        self, dataset: Dataset, settings: ExportSettings, rendered: RenderCache | None = None
    ) -> None:
        if settings.file_size < 1:
            raise ValueError("export file size must be >= 1")
        self.dataset = dataset
        self.rendered = rendered if rendered is not None else RenderCache(dataset)
        self.settings = settings
        self.jobs: dict[str, ExportJob] = {}
        self.binaries: dict[str, _Binary] = {}
        self._builds: dict[str, asyncio.Task[bytes | None]] = {}  # files being built, until built
        self._directory: Path | None = None

    @property
    def directory(self) -> Path:
        """Created on first use; removed when the store is collected or the process exits normally. A
        process ended by a signal (uvicorn re-raises SIGTERM after its graceful shutdown, skipping atexit) or
        killed leaves its directory: the next store removes those of processes that no longer run."""
        if self._directory is None:
            root = Path(tempfile.gettempdir())
            _remove_stale_directories(root)
            self._directory = Path(tempfile.mkdtemp(prefix=f"{_DIRECTORY_PREFIX}{os.getpid()}-", dir=root))
            weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)
        return self._directory

    def start(self, job: ExportJob) -> None:
        self.jobs[job.id] = job
        job.task = asyncio.create_task(self._run(job), name=f"export-{job.id}")

    def delete(self, job_id: str) -> bool:
        job = self.jobs.pop(job_id, None)
        if job is None:
            return False
        if job.task is not None and not job.task.done():
            job.task.cancel()
        self._remove_files(job)
        return True

    def _remove_files(self, job: ExportJob) -> None:
        for binary_id in [b for b, binary in self.binaries.items() if binary.job_id == job.id]:
            with contextlib.suppress(FileNotFoundError):
                self.binaries.pop(binary_id).path.unlink()
        job.output.clear()

    async def _run(self, job: ExportJob) -> None:
        try:
            await self._export(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure becomes the job's error, reported by the poll
            self.fail(job, f"export failed: {exc}")

    def fail(self, job: ExportJob, message: str) -> None:
        """End a job as failed: its files go, its poll answers an OperationOutcome error."""
        self._remove_files(job)
        job.status = "failed"
        job.error = message

    async def _export(self, job: ExportJob) -> None:
        data = self.dataset
        size = self.settings.file_size
        complete = parse_search("HealthcareService", _COMPLETE_PARAMS, strict=True).includes
        primaries = {rtype: self._matches(job, rtype) for rtype in job.types}
        total = sum(len(ids) for ids in primaries.values()) or 1
        seen: set[Key] = {(rtype, rid) for rtype, ids in primaries.items() for rid in ids}
        associated: dict[str, list[str]] = {rtype: [] for rtype in RESOURCE_TYPES}
        done = 0
        for rtype, ids in primaries.items():
            for start in range(0, len(ids), size):
                keys = [(rtype, rid) for rid in ids[start : start + size]]
                if rtype == "HealthcareService":
                    for key in resolve_includes(data, keys, complete):
                        if key not in seen:
                            seen.add(key)
                            associated[key[0]].append(key[1])
                await self._write(job, rtype, keys)
                done += len(keys)
                job.progress = f"{done * 100 // total}%"
                if job.fail_on_demand:
                    # export(fail): the job dies after its first file, as a real job failing mid-way would.
                    self.fail(job, "simulated fault: the export job failed")
                    return
        for rtype, ids in associated.items():
            for start in range(0, len(ids), size):
                await self._write(job, rtype, [(rtype, rid) for rid in ids[start : start + size]])
        job.progress = "100%"
        job.status = "complete"

    def _matches(self, job: ExportJob, rtype: str) -> list[str]:
        """Every id of `rtype` matching any of its `_typeFilter`s (or all) and `_since`, in result order."""
        since = [("_lastUpdated", f"gt{job.since}")] if job.since else []
        filters = job.filters.get(rtype) or [[]]
        found: dict[str, None] = {}
        for params in filters:
            request = parse_search(rtype, [*params, *since], strict=True)
            found.update(dict.fromkeys(evaluate(self.dataset, request)))
        return list(found)

    async def _write(self, job: ExportJob, rtype: str, keys: Sequence[Key]) -> None:
        """Add one file of `keys` to the job: listed in the manifest now, built when downloaded."""
        if self.settings.step_delay_s > 0:
            await asyncio.sleep(self.settings.step_delay_s)
        else:
            await asyncio.sleep(0)  # let the server answer polls between files
        binary_id = uuid.uuid4().hex
        path = self.directory / f"{binary_id}.{'ndjson' if job.ndjson else 'json'}"
        self.binaries[binary_id] = _Binary(
            job.id, path, job.media_type, tuple(keys), job.base, job.ndjson, len(job.output)
        )
        job.output.append((rtype, binary_id, len(keys)))

    def build(self, binary_id: str) -> asyncio.Task[bytes | None]:
        """The file's bytes (`materialise` in a worker thread), one build at a time per file: a download
        that comes while its file is built ahead waits for that build."""
        task = self._builds.get(binary_id)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(self.materialise, binary_id))
            self._builds[binary_id] = task
            task.add_done_callback(lambda done: self._built(binary_id, done))
        return task

    def _built(self, binary_id: str, task: asyncio.Task[bytes | None]) -> None:
        self._builds.pop(binary_id, None)  # its bytes go with it: a later download reads the file
        if not task.cancelled():
            task.exception()  # a failed build ahead is retried by the file's own download

    def build_ahead(self, binary_id: str) -> None:
        """Start building the `build_ahead` files after this one in its job's output (those not built yet)."""
        binary = self.binaries.get(binary_id)
        job = self.jobs.get(binary.job_id) if binary is not None else None
        if binary is None or job is None or self.settings.build_ahead < 1:
            return
        for _, next_id, _ in job.output[binary.index + 1 : binary.index + 1 + self.settings.build_ahead]:
            following = self.binaries.get(next_id)
            if following is not None and next_id not in self._builds and not following.path.is_file():
                self.build(next_id)

    def materialise(self, binary_id: str) -> bytes | None:
        """The file's bytes, built on first use and kept on disk (called in a worker thread: the server keeps
        answering); None when the file is unknown or its job was deleted meanwhile. Served whole from memory:
        a 2 MB file streamed from disk took ~30 reads, each a hop to a worker thread."""
        binary = self.binaries.get(binary_id)
        if binary is None:
            return None
        with contextlib.suppress(FileNotFoundError):
            return binary.path.read_bytes()
        resources = self.rendered.rendered(binary.keys)
        if binary.ndjson:
            content = b"".join(orjson.dumps(r) + b"\n" for _, r in resources)
        else:
            bundle = {
                "resourceType": "Bundle",
                "id": binary_id,
                "type": "collection",
                "entry": [
                    {"fullUrl": f"{binary.base}/{rtype}/{rid}", "resource": r}
                    for (rtype, rid), r in resources
                ],
            }
            content = orjson.dumps(bundle)
        # Written whole then renamed: a concurrent download of the same file never reads half of it.
        partial = binary.path.with_suffix(f".{uuid.uuid4().hex}.part")
        partial.write_bytes(content)
        partial.replace(binary.path)
        if binary_id not in self.binaries:  # the job was deleted while the file was built
            with contextlib.suppress(FileNotFoundError):
                binary.path.unlink()
            return None
        return content


_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]*\?)")


def _plus(text: str) -> str:
    """Undo form decoding's `+` → space in values sent unencoded (`fhir+json`, `+02:00`)."""
    return text.replace(" ", "+")


def _kickoff_job(request: Request) -> ExportJob:
    """The job a kick-off request asks for; raises SearchError (→ 400 OperationOutcome) when it is wrong."""
    params = request.query_params
    for name in params:
        if name not in KICKOFF_PARAMS:
            raise SearchError(f"unsupported $export parameter {name!r}", code="not-supported")
    fmt = _plus(params.get("_outputFormat", "application/fhir+json").strip())
    if fmt not in OUTPUT_FORMATS:
        raise SearchError(f"unsupported _outputFormat {fmt!r}; supported: {', '.join(OUTPUT_FORMATS)}")
    associated = params.get("includeAssociatedData", COMPLETE_EXTRACT)
    if associated != COMPLETE_EXTRACT:
        raise SearchError(f"unsupported includeAssociatedData {associated!r}; supported: {COMPLETE_EXTRACT}")
    types = tuple(t for value in params.getlist("_type") for t in value.split(",") if t) or RESOURCE_TYPES
    for rtype in types:
        if rtype not in RESOURCE_TYPES:
            raise SearchError(f"unsupported _type {rtype!r}; supported: {', '.join(RESOURCE_TYPES)}")
    filters: dict[str, list[list[tuple[str, str]]]] = {}
    for value in params.getlist("_typeFilter"):
        for text in _FILTER_SPLIT.split(value):
            rtype, sep, query = text.partition("?")
            if not sep or rtype not in types:
                raise SearchError(f"_typeFilter {text!r} must be Type?query with a Type from _type")
            search = parse_qsl(query, keep_blank_values=True)
            parse_search(rtype, search, strict=True)  # refuse a bad filter at kick-off, not in the job
            filters.setdefault(rtype, []).append(search)
    since = params.get("_since")
    if since is not None:
        since = _plus(since.strip())
        parse_search(types[0], [("_lastUpdated", f"gt{since}")], strict=True)
    rules: tuple[FaultRule, ...] = request.scope.get(SCOPE_KEY, ())
    media_type, ndjson = OUTPUT_FORMATS[fmt]
    return ExportJob(
        id=str(uuid.uuid4()),
        request_url=str(request.url),
        base=fhir_base(request),
        transaction_time=datetime.now(UTC).isoformat(timespec="milliseconds"),
        types=types,
        filters=filters,
        since=since,
        ndjson=ndjson,
        media_type=media_type,
        fail_on_demand=any(r.kind == "export" for r in rules),
    )


def add_export_routes(
    app: FastAPI, dataset: Dataset, settings: ExportSettings, rendered: RenderCache | None = None
) -> ExportStore:
    """Register `$export`, `$export-poll-status` and `Binary/{id}` on the simulator app.

    Call it before the generic `/{resource_type}` routes, which would otherwise catch these paths.
    """
    store = ExportStore(dataset, settings, rendered)

    @app.get("/$export")
    async def export_kickoff(request: Request) -> Response:
        try:
            job = _kickoff_job(request)
        except SearchError as exc:
            return error_response(400, str(exc), code=exc.code)
        store.start(job)
        poll = f"{job.base}/$export-poll-status?_jobId={job.id}"
        response = FhirResponse(
            operation_outcome(f"export job {job.id} accepted", code="informational", severity="information"),
            status_code=202,
        )
        response.headers["Content-Location"] = poll
        return response

    @app.get("/$export-poll-status")
    async def export_poll(request: Request) -> Response:
        job_id = request.query_params.get("_jobId", "")
        job = store.jobs.get(job_id)
        if job is None:
            return error_response(404, "unknown or deleted export job", code="not-found")
        rules: tuple[FaultRule, ...] = request.scope.get(SCOPE_KEY, ())
        if job.status == "running" and any(r.kind == "export" for r in rules):
            job.fail_on_demand = True
            if job.task is not None:
                job.task.cancel()
            store.fail(job, "simulated fault: the export job failed")
        if job.status == "running" and job.task is not None and settings.poll_wait_s > 0:
            await asyncio.wait({job.task}, timeout=settings.poll_wait_s)  # the job is not cancelled
            if store.jobs.get(job_id) is not job:
                return error_response(404, "unknown or deleted export job", code="not-found")
        if job.status == "running":
            response = Response(status_code=202)
            response.headers["Retry-After"] = str(settings.retry_after_s)
            response.headers["X-Progress"] = job.progress
            return response
        if job.status == "failed":
            return error_response(500, job.error or "export failed", code="exception")
        return FhirResponse(_manifest(job))

    @app.delete("/$export-poll-status")
    async def export_delete(request: Request) -> Response:
        if not store.delete(request.query_params.get("_jobId", "")):
            return error_response(404, "unknown or deleted export job", code="not-found")
        return Response(status_code=202)

    @app.get("/Binary/{binary_id}")
    async def binary(binary_id: str) -> Response:
        found = store.binaries.get(binary_id)
        content = None
        if found is not None:
            build = store.build(binary_id)
            store.build_ahead(binary_id)
            content = await asyncio.shield(build)  # a download given up leaves the build to end
        if found is None or content is None:
            return error_response(404, f"Resource Binary/{binary_id} is not known", code="not-found")
        return Response(content, media_type=found.media_type)

    return store


def _manifest(job: ExportJob) -> dict[str, Any]:
    return {
        "transactionTime": job.transaction_time,
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": rtype, "url": f"{job.base}/Binary/{binary_id}", "count": count}
            for rtype, binary_id, count in job.output
        ],
        "error": [],
    }
