"""FHIR JSON responses of the simulator: searchset Bundles, OperationOutcomes, the fhir+json media type.

Part of simulator/. Every absolute URL is built from the incoming request (scheme, host, ASGI root_path),
never from configuration, so the same app answers correctly wherever it is mounted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

FHIR_JSON = "application/fhir+json;charset=utf-8"


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def fhir_base(request: Request) -> str:
    """The FHIR base URL as the client sees it: `{scheme}://{host}{root_path}`, no trailing slash.

    Built from the ASGI `root_path` of this app's own scope (a Starlette Mount extends it), not from
    `request.base_url`, which points at the outermost application.
    """
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=root or "/", query="")).rstrip("/")


def paging_root(request: Request) -> str:
    """Where `_getpages` links point: the bare base, as HAPI writes them (`{base}?_getpages=…`).

    Under a Starlette Mount (the bridge's `/demo/fhir`), the parent only routes paths below the prefix, so
    the links there use `{base}/?_getpages=…`; HAPI accepts both forms.
    """
    base = fhir_base(request)
    scope = request.scope
    mounted = "app_root_path" in scope and scope["app_root_path"] != scope.get("root_path", "")
    return base + "/" if mounted else base


def operation_outcome(
    diagnostics: str, *, code: str = "processing", severity: str = "error"
) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def error_response(status: int, diagnostics: str, *, code: str = "processing") -> FhirResponse:
    return FhirResponse(operation_outcome(diagnostics, code=code), status_code=status)


def getpages_url(root: str, snapshot_id: str, offset: int, count: int) -> str:
    """HAPI paging link: `{base}?_getpages=<id>&_getpagesoffset=<n>&_count=<n>&_bundletype=searchset`."""
    query = urlencode(
        {"_getpages": snapshot_id, "_getpagesoffset": offset, "_count": count, "_bundletype": "searchset"}
    )
    return f"{root}?{query}"


def searchset(
    *,
    base: str,
    bundle_id: str,
    total: int,
    links: Sequence[tuple[str, str]],
    matches: Sequence[tuple[tuple[str, str], Any]],
    includes: Sequence[tuple[tuple[str, str], Any]],
) -> dict[str, Any]:
    """A searchset Bundle: matches, then includes, each with fullUrl and search.mode (FHIR R4 §3.1.1).

    Each match or include is its (type, id) and the resource, as a dict or already serialised (a Fragment).
    """

    def entry(item: tuple[tuple[str, str], Any], mode: str) -> dict[str, Any]:
        (rtype, rid), resource = item
        return {"fullUrl": f"{base}/{rtype}/{rid}", "resource": resource, "search": {"mode": mode}}

    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id,
        # The search time, as HAPI stamps it; the dataset itself never reads the clock.
        "meta": {"lastUpdated": datetime.now(UTC).isoformat(timespec="milliseconds")},
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
    }
    entries = [entry(r, "match") for r in matches] + [entry(r, "include") for r in includes]
    if entries:
        bundle["entry"] = entries
    return bundle
