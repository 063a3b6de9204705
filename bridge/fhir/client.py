"""The national ROR FHIR API client: one base URL, the four `Ror-*` headers, complete paging, typed errors.

Outbound edge (`bridge/fhir/`). Resources stay plain JSON (orjson) on the hot path. Every failure is an
`UpstreamError` subclass from `bridge.errors`, never an httpx or web-framework exception.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from bridge.errors import (
    IncompleteResultError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamUnavailableError,
)
from bridge.model import FhirQuery, Resource, SearchResult

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
# Safety net against a server that pages forever: 10 000 results (the national API's cap) at the
# smallest sensible page size. A walk that needs more pages is a protocol error, never a silent stop.
MAX_PAGES = 10_000


class FhirClient:
    """Async client for one FHIR base URL (`…/ws-diffusion-fhir` on the national API)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        page_size: int = 200,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self._http = httpx.AsyncClient(
            headers={"Accept": FHIR_JSON, **headers},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def url_for(self, query: FhirQuery) -> str:
        """The first-page URL of a query (`_count` added unless the query sets it)."""
        params = list(query.params)
        if not any(name == "_count" for name, _ in params):
            params.append(("_count", str(self.page_size)))
        return f"{self.base_url}/{query.resource_type}?{urlencode(params, safe=':|,/')}"

    async def read(self, resource_type: str, resource_id: str) -> Resource:
        """`GET [base]/{type}/{id}`."""
        url = f"{self.base_url}/{resource_type}/{resource_id}"
        body = await self._get_json(url)
        if body.get("resourceType") != resource_type:
            raise UpstreamProtocolError(f"expected a {resource_type}", request=url)
        return body

    async def capabilities(self) -> Resource:
        """`GET [base]/metadata`: used by readiness checks."""
        return await self._get_json(f"{self.base_url}/metadata")

    async def search(self, query: FhirQuery) -> SearchResult:
        """Run a search and follow every `next` link; the result is complete or an error says why not."""
        result = SearchResult(query=query)
        seen_urls: set[str] = set()
        match_keys: set[str] = set()
        include_keys: set[str] = set()
        url: str | None = self.url_for(query)
        while url is not None:
            if url in seen_urls:
                raise UpstreamProtocolError("paging loops: next link to a page already read", request=url)
            if result.pages >= MAX_PAGES:
                raise UpstreamProtocolError(f"more than {MAX_PAGES} pages", request=url)
            seen_urls.add(url)
            bundle = await self._get_json(url)
            if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
                raise UpstreamProtocolError("expected a searchset Bundle", request=url)
            result.pages += 1
            if result.total is None and isinstance(bundle.get("total"), int):
                result.total = bundle["total"]
            for entry in bundle.get("entry") or ():
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict) or "resourceType" not in resource or "id" not in resource:
                    raise UpstreamProtocolError("a Bundle entry lacks resource type or id", request=url)
                key = f"{resource['resourceType']}/{resource['id']}"
                mode = (entry.get("search") or {}).get("mode", "match")
                if mode == "include":
                    # Includes repeat from page to page (each page includes for its own matches).
                    if key not in include_keys and key not in match_keys:
                        include_keys.add(key)
                        result.includes.append(resource)
                elif key in match_keys:
                    # A server that repeats a match across pages would make counts lie: keep one copy.
                    log.warning("duplicate match %s dropped (request %s)", key, url)
                else:
                    match_keys.add(key)
                    result.matches.append(resource)
            url = _next_link(bundle)
        if result.total is not None and result.total != len(result.matches):
            raise IncompleteResultError(
                f"the server announced {result.total} results but {len(result.matches)} were received",
                request=self.url_for(query),
            )
        # An include that later turned out to be a match is kept once, as a match.
        result.includes = [r for r in result.includes if f"{r['resourceType']}/{r['id']}" not in match_keys]
        return result

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailableError(f"timeout ({type(exc).__name__})", request=url) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(f"connection failed ({type(exc).__name__})", request=url) from exc
        if response.status_code >= 400:
            raise UpstreamStatusError(
                "the national API refused the request",
                request=url,
                status=response.status_code,
                outcome=_outcome_text(response.content),
            )
        if response.status_code != 200:
            raise UpstreamProtocolError(f"unexpected HTTP {response.status_code}", request=url)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("the answer is not valid JSON", request=url) from exc
        if not isinstance(body, dict):
            raise UpstreamProtocolError("the answer is not a JSON object", request=url)
        return body


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def _outcome_text(content: bytes) -> str | None:
    """The diagnostics of an OperationOutcome body, if that is what the server sent."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in body.get("issue") or ():
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                texts.append(str(text))
    return "; ".join(texts) or None
