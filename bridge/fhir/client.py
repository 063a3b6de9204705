"""The national ROR FHIR API client: searches walked to completion (next links, `_offset`, resumes, windows
under the result cap), partitions, reads and `$export`.

Outbound edge (`bridge/fhir/`). Resources stay plain JSON (orjson) on the hot path. Every request goes through
the one exchange (exchange.py: auth, the four `Ror-*` headers, retries, deadline, breaker); every failure is
an `UpstreamError` subclass from `bridge.errors`, never an httpx or web-framework exception.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import orjson

from bridge import gc_control
from bridge.errors import IncompleteResultError, ResultCapError, UpstreamProtocolError, UpstreamStatusError
from bridge.fhir.auth import TokenProvider
from bridge.fhir.bulk_export import DOWNLOADS, ExportRequest, ExportStats, run_export
from bridge.fhir.cap_windows import FILL, MAX_RESULTS, WHOLE, Window, sample, sub_windows, windowed
from bridge.fhir.exchange import Credentials, Exchange
from bridge.fhir.observe import UpstreamObserver
from bridge.fhir.resilience import CircuitBreaker, Deadline, RetryPolicy
from bridge.fhir.searchset import Repeats, Searchset
from bridge.fhir.validation import SampledValidator
from bridge.model import FhirQuery, Resource, SearchResult

__all__ = ["MAX_RESULTS", "Credentials", "FhirClient", "Page"]

log = logging.getLogger(__name__)

# Safety net against a server that pages forever: 10 000 results (the national API's cap) at the
# smallest sensible page size. A walk that needs more pages is a protocol error, never a silent stop.
MAX_PAGES = 10_000
# How many times one walk may start again after an expired cursor or a paging loop.
MAX_RESUMES = 3
# Pages buffered per partition when partitions are streamed: memory is bounded by concurrency × this.
PAGES_PER_PARTITION = 1
# Decoded pages of an unordered walk alive at once, the one the consumer holds included: the walks keep their
# answers as bytes (which the garbage collector never walks) until it is their turn (`iter_pages_unordered`).
DECODED_PAGES = 1
# Pages handed out per span of the paused collector in an unordered walk (gc_control.Spans): a page decoded,
# handed out and freed within a span is never walked by the collector, which still runs between spans.
PAUSED_PAGES = 16


class LogEvent(StrEnum):
    """What the client logs (house style: events are enum members, never free text)."""

    DUPLICATE_DROPPED = "upstream-duplicate-dropped"
    CURSOR_RESUMED = "upstream-cursor-resumed"
    OFFSET_PAGING = "upstream-offset-paging"
    TRUNCATION_SPLIT = "upstream-truncation-split"


@dataclass(slots=True)
class Page:
    """One searchset page: its new matches and includes (already-received entries removed)."""

    url: str
    matches: list[Resource]
    includes: list[Resource]
    total: int | None


@dataclass(frozen=True, slots=True)
class _Unordered:
    """What the walks of one `iter_pages_unordered` share: the turns to decode a page, and the includes
    handed out so far."""

    turns: asyncio.Semaphore
    repeats: Repeats


class FhirClient:
    """Async client for one FHIR base URL (`…/ws-diffusion-fhir` on the national API)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        page_size: int = 200,
        timeout_s: float = 30.0,
        connect_timeout_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        deadline_s: float = 120.0,
        concurrency: int = 4,
        max_results: int = MAX_RESULTS,
        validator: SampledValidator | None = None,
        export_deadline_s: float = 3600.0,
        export_downloads: int = DOWNLOADS,
        seed: int | None = None,
        observer: UpstreamObserver | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.deadline_s = deadline_s
        self.export_deadline_s = export_deadline_s
        if export_downloads < 1:
            raise ValueError("export_downloads must be >= 1")
        self.export_downloads = export_downloads
        self.concurrency = concurrency
        self.max_results = max_results
        self.validator = validator
        self._counts_refused = False  # set when the server answers `_count=0` probes without a bare total
        # Every request goes through this one exchange: auth, retries, deadline, breaker (fhir/exchange.py).
        self.exchange = Exchange(
            base_url,
            headers=headers,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            transport=transport,
            verify=verify,
            credentials=credentials,
            retry=retry,
            breaker=breaker,
            concurrency=concurrency,
            seed=seed,
            observer=observer,
        )

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    @property
    def retry(self) -> RetryPolicy:
        return self.exchange.retry

    @property
    def breaker(self) -> CircuitBreaker:
        return self.exchange.breaker

    @property
    def tokens(self) -> TokenProvider | None:
        return self.exchange.tokens

    @property
    def observer(self) -> UpstreamObserver:
        return self.exchange.observer

    def add_event_hooks(
        self,
        request: Callable[[httpx.Request], Awaitable[None]],
        response: Callable[[httpx.Response], Awaitable[None]],
    ) -> None:
        """httpx hooks on every upstream exchange, token endpoint included (the trust circle's audit and
        per-client `Ror-*` headers)."""
        self.exchange.add_event_hooks(request, response)

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
        await self.exchange.aclose()

    def with_headers(self, overrides: Mapping[str, str]) -> FhirClient:
        """The same client (pool, token, breaker) sending other `Ror-*` values, e.g. one legacy client's
        own access profile (ror-fhir-api.md §1.3–1.4)."""
        clone = copy.copy(self)
        clone.exchange = self.exchange.with_headers(overrides)
        return clone

    def url_for(self, query: FhirQuery) -> str:
        """The first-page URL of a query (`_count` added unless the query sets it)."""
        params = list(query.params)
        if not any(name == "_count" for name, _ in params):
            params.append(("_count", str(self.page_size)))
        return f"{self.base_url}/{query.resource_type}?{urlencode(params, safe=':|,/')}"

    def new_deadline(self) -> Deadline:
        return Deadline(self.deadline_s)

    async def read(self, resource_type: str, resource_id: str) -> Resource:
        """`GET [base]/{type}/{id}`."""
        url = f"{self.base_url}/{resource_type}/{resource_id}"
        _, body = await self.exchange.get_json(url, self.new_deadline())
        if body.get("resourceType") != resource_type:
            raise UpstreamProtocolError(f"expected a {resource_type}", request=url)
        return body

    async def capabilities(self) -> Resource:
        """`GET [base]/metadata`: used by readiness checks."""
        _, body = await self.exchange.get_json(f"{self.base_url}/metadata", self.new_deadline())
        return body

    async def probe(self) -> None:
        """Readiness (`/readyz`): `metadata` answers, a token is obtainable (with credentials), and one
        authenticated one-result search is accepted. One attempt each, outside the retry policy and the
        circuit breaker: a failing probe never opens the breaker. Raises the typed UpstreamError."""
        for url in (f"{self.base_url}/metadata", f"{self.base_url}/Organization?_count=1"):
            await self.exchange.probe(url)

    # ------------------------------------------------------------------------------------------------
    # Searches

    async def search(self, query: FhirQuery) -> SearchResult:
        """Run a search to completion; the result is complete or a typed error says what is missing."""
        result = SearchResult(query=query)
        match_keys: set[str] = set()
        async for page in self.iter_pages(query):
            result.pages += 1
            result.matches.extend(page.matches)
            result.includes.extend(page.includes)
            match_keys.update(_key(r) for r in page.matches)
        # Every walk checked its own `Bundle.total` against what it received (a split search has one total
        # per window), so the verified total is the number of matches.
        result.total = len(result.matches)
        # An include that later turned out to be a match is kept once, as a match.
        result.includes = [r for r in result.includes if _key(r) not in match_keys]
        return result

    async def iter_pages(self, query: FhirQuery, *, deadline: Deadline | None = None) -> AsyncIterator[Page]:
        """Every page of a search, each match and include once, in a deterministic order.

        A search over the result cap is split into `_lastUpdated` windows (issue 4 §3); the keys already
        handed out are remembered so a re-walk never repeats an entry.
        """
        deadline = deadline or self.new_deadline()
        seen_matches: set[str] = set()
        seen_includes: set[str] = set()
        async for page in self._pages(query, WHOLE, deadline):
            matches = [r for r in page.matches if _key(r) not in seen_matches]
            seen_matches.update(_key(r) for r in matches)
            includes = [r for r in page.includes if _key(r) not in seen_includes]
            seen_includes.update(_key(r) for r in includes)
            if self.validator is not None:
                for resource in (*matches, *includes):
                    self.validator.submit(resource)
            yield Page(page.url, matches, includes, page.total)

    async def iter_partitioned(
        self, queries: Sequence[FhirQuery], *, deadline: Deadline | None = None
    ) -> AsyncIterator[tuple[int, Page]]:
        """Pages of several searches (partitions), fetched concurrently, yielded in query order.

        At most `concurrency` partitions are walked at once and each buffers at most one page, so memory
        is bounded by the pages in flight, not by the size of the answer.
        """
        deadline = deadline or self.new_deadline()
        producers = [(lambda q=q: self.iter_pages(q, deadline=deadline)) for q in queries]
        async for index, page in self._ordered(producers):
            yield index, page

    async def search_partitioned(self, queries: Sequence[FhirQuery]) -> list[SearchResult]:
        """The complete result of each query, fetched with bounded concurrency (e.g. one per region tag)."""
        results = [SearchResult(query=q) for q in queries]
        async for index, page in self.iter_partitioned(queries):
            result = results[index]
            result.pages += 1
            result.matches.extend(page.matches)
            result.includes.extend(page.includes)
        for result in results:
            result.total = len(result.matches)
            match_keys = {_key(r) for r in result.matches}
            result.includes = [r for r in result.includes if _key(r) not in match_keys]
        return results

    async def iter_pages_unordered(
        self, queries: Sequence[FhirQuery], *, deadline: Deadline | None = None
    ) -> AsyncIterator[Page]:
        """Every page of several searches, in the order they arrive, for callers that de-duplicate by key
        themselves (the streamed extraction's disk spool) — at flat memory, whatever the size of the answer.

        Searches over the result cap are split into `_lastUpdated` windows as `iter_pages` does, but little
        is remembered across pages: matches are de-duplicated within one walk only (at most the cap), and an
        include is left out of a page only when the walk has handed out the very same bytes before (the
        digests of the last `searchset.REMEMBERED`, ~11 MiB: `searchset.Repeats`); a changed one comes again.
        A window re-walked after a truncation that came late (no `Bundle.total`), or a resource updated during
        the walk, can therefore appear twice. Memory: `concurrency` walks, each holding at most one page, plus
        one queued, and those digests.
        """
        deadline = deadline or self.new_deadline()
        work: asyncio.Queue[tuple[FhirQuery, Window]] = asyncio.Queue()
        for query in queries:
            work.put_nowait((query, WHOLE))
        done = object()
        out: asyncio.Queue[Any] = asyncio.Queue(PAGES_PER_PARTITION)
        # A walk decodes its page only when it holds a turn, and every page handed out holds one until the
        # consumer asks for the next: eight 2 MB pages decoded and waiting made the collector walk them again
        # and again (docs/performance-journal.md, "Collection: where the client's CPU went").
        turns = asyncio.Semaphore(DECODED_PAGES)
        # With the turns, the includes handed out so far: a window's page leaves out those it repeats byte for
        # byte (half of a split search's bytes at 12 000 offers: docs/performance-journal.md,
        # "Collection: includes received once").
        unordered = _Unordered(turns, Repeats())

        async def walk(query: FhirQuery, window: Window) -> None:
            try:
                pages = self._walk(windowed(query, window), deadline, unordered)
                async for page in pages:
                    if self.validator is not None:
                        for resource in (*page.matches, *page.includes):
                            self.validator.submit(resource)
                    await out.put(page)
                    del page  # not kept alive while this walk waits for its next answer
            except ResultCapError as truncated:
                # Each window is walked as soon as its own probe settles it, not once every probe is back.
                await self._split_truncated(
                    query, window, truncated, deadline, ready=lambda part: work.put_nowait((query, part))
                )

        async def worker() -> None:
            while True:
                query, window = await work.get()
                try:
                    await walk(query, window)
                except Exception as error:  # handed to the consumer, which raises it
                    await out.put(error)
                finally:
                    work.task_done()

        async def finish() -> None:
            await work.join()
            await out.put(done)

        tasks = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        tasks.append(asyncio.create_task(finish()))
        spans = gc_control.Spans(PAUSED_PAGES)
        try:
            while True:
                item = await out.get()
                if item is done:
                    return
                if isinstance(item, Exception):
                    raise item
                spans.step()
                yield item
                del item
                turns.release()  # the consumer is done with that page: the next walk may decode its own
        finally:
            spans.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pages(self, query: FhirQuery, window: Window, deadline: Deadline) -> AsyncIterator[Page]:
        """The pages of `query` restricted to `window`; split into sub-windows when truncated."""
        try:
            async for page in self._walk(windowed(query, window), deadline):
                yield page
            return
        except ResultCapError as truncated:
            parts = await self._split_truncated(query, window, truncated, deadline)
        producers = [(lambda part=part: self._pages(query, part, deadline)) for part in parts]
        async for _, page in self._ordered(producers):
            yield page

    async def _split_truncated(
        self,
        query: FhirQuery,
        window: Window,
        truncated: ResultCapError,
        deadline: Deadline,
        ready: Callable[[Window], None] | None = None,
    ) -> list[Window]:
        """The sub-windows of a window the server truncated (fhir/cap_windows.py), sized from its total;
        IncompleteResultError when it cannot be split (issue 13 item 3).

        The windows aim at `window_size(total)` results each, enough of them for `concurrency` walks to run
        side by side. The first split of a search is cut at the quantiles of its first page's dates
        (`cap_windows.sample`): the windows hold about that many each and are walked at once. Otherwise (a
        page ordered by date, no total, more parts than MAX_PARTS, a window of a split) their totals are asked
        at once (`_count=0`): empty windows are dropped, windows still too large are split again from their
        own total, so no page is fetched only to learn it is truncated. A window cut from a sample that meets
        the cap all the same is thus split as without one: a server whose order follows its dates only in
        part gives biased samples, and trusting each window's own page again could peel a few results a round.
        `ready` is told of each window to walk as soon as it is settled (the list comes at the end).
        """
        per_part = self.window_size(truncated.total)
        dates = truncated.dates if window == WHOLE else ()
        return await self._refine(query, window, truncated.total, per_part, deadline, ready, dates)

    def window_size(self, total: int | None) -> int:
        """The results aimed at per window when a search of `total` results is split: at most half the cap,
        at least two pages, else the total shared by twice `concurrency` windows."""
        if total is None:
            return int(self.max_results * FILL)
        share = -(-total // (2 * self.concurrency))
        return max(2 * self.page_size, min(int(self.max_results * FILL), share))

    async def _refine(
        self,
        query: FhirQuery,
        window: Window,
        total: int | None,
        per_part: int,
        deadline: Deadline,
        ready: Callable[[Window], None] | None,
        dates: tuple[datetime, ...] = (),
    ) -> list[Window]:
        first_page = self.url_for(windowed(query, window))
        parts, sized = sub_windows(window, self.max_results, first_page, total, per_part, dates)
        self.observer.truncation_split(query.resource_type)
        log.info(
            "%s %s total=%s into %d%s",
            LogEvent.TRUNCATION_SPLIT,
            query.resource_type,
            total,
            len(parts),
            " at the first page's dates, without probes" if sized else "",
        )
        if sized:  # a part that meets the cap all the same is split again from its own first page, probed
            if ready is not None:
                for part in parts:
                    ready(part)
            return parts

        async def settle(part: Window) -> list[Window]:
            found = await self._count(windowed(query, part), deadline)
            if found == 0:
                return []
            if found is None or (found < self.max_results and found <= 2 * per_part):
                if ready is not None:
                    ready(part)
                return [part]  # walked; a walk that still meets the cap splits as before
            return await self._refine(query, part, found, per_part, deadline, ready)

        groups = await asyncio.gather(*(settle(part) for part in parts))
        return [part for group in groups for part in group]

    async def _count(self, query: FhirQuery, deadline: Deadline) -> int | None:
        """The search's `Bundle.total` asked with `_count=0` (no resources sent); None when the server does
        not give one or refuses `_count=0` (then the window's first page tells, as without probes)."""
        if self._counts_refused:
            return None
        params = tuple(p for p in query.params if p[0] != "_count")
        url = self.url_for(FhirQuery(query.resource_type, (*params, ("_count", "0")), query.purpose))
        try:
            _, bundle = await self.exchange.get_json(url, deadline)
        except UpstreamStatusError as error:
            if error.status in (400, 404, 422):
                self._counts_refused = True
                return None
            raise
        total = bundle.get("total")
        if bundle.get("resourceType") != "Bundle" or not isinstance(total, int) or bundle.get("entry"):
            self._counts_refused = True  # entries for `_count=0`: the server ignores it, probes cost pages
            return None
        return total

    async def _bundle(self, url: str, deadline: Deadline, unordered: _Unordered | None) -> Searchset:
        """One page's searchset. In an unordered walk, the answer is kept as bytes until a turn is free, then
        decoded without the includes the walk has handed out; the caller then holds that turn (and releases
        it, or hands it over with the page). A body that does not parse is fetched again through the exchange
        (a transfer cut short: its retry policy), and then decoded whole."""
        if unordered is None:
            return Searchset.from_bundle((await self.exchange.get_json(url, deadline))[1], url)
        response, _ = await self.exchange.send("GET", url, deadline)
        body = response.content
        del response
        # Outside the `try`: a walk cancelled while waiting holds no turn to give back.
        await unordered.turns.acquire()
        try:
            try:
                return unordered.repeats.decode(body, url)
            except (orjson.JSONDecodeError, msgspec.DecodeError):
                return Searchset.from_bundle((await self.exchange.get_json(url, deadline))[1], url)
        except BaseException:
            unordered.turns.release()
            raise

    async def _walk(
        self,
        query: FhirQuery,
        deadline: Deadline,
        unordered: _Unordered | None = None,
    ) -> AsyncIterator[Page]:
        """One search, every page: next links, `_offset` fallback, resumes; raises ResultCapError. In an
        unordered walk (`iter_pages_unordered`), each page is decoded on a turn (`_bundle`) handed over with
        the page (the consumer's side releases it); a page with nothing to hand out, or a failure, gives it
        back. A page leaves out the includes already handed out, and its own are remembered as it is."""
        turns = unordered.turns if unordered is not None else None
        first_url = self.url_for(query)
        url = first_url
        seen_urls: set[str] = set()
        seen: set[str] = set()  # matches received by this walk
        total: int | None = None
        resumes = 0
        pages = 0
        offset_mode = False
        offset_refused = False
        held = False  # a turn taken for the page in hand and not handed over with it yet

        def resume(reason: str, at: str) -> str:
            nonlocal resumes
            resumes += 1
            if resumes > MAX_RESUMES:
                raise UpstreamProtocolError(f"{reason}, {MAX_RESUMES} resumes did not help", request=at)
            # The search is run again from its first page: entries are keyed by type/id, so what was
            # already received is skipped and nothing is lost or repeated (issue 4 §3).
            log.info(
                "%s %s after %d matches (%s)", LogEvent.CURSOR_RESUMED, query.resource_type, len(seen), reason
            )
            seen_urls.clear()
            return first_url

        try:
            while True:
                if url in seen_urls:
                    url = resume("paging loops: next link to a page already read", url)
                    continue
                if pages >= MAX_PAGES:
                    raise UpstreamProtocolError(f"more than {MAX_PAGES} pages", request=url)
                seen_urls.add(url)
                try:
                    bundle = await self._bundle(url, deadline, unordered)
                    held = turns is not None
                except UpstreamStatusError as error:
                    # An expired HAPI search snapshot answers 410 Gone (engineering-notes §1.2).
                    if error.status == 410 and url != first_url:
                        url = resume("the paging cursor expired", url)
                        continue
                    if offset_mode and error.status in (400, 404, 422) and not offset_refused:
                        # A server without `_offset` (the ROR documents none): run the search again instead.
                        offset_refused = True
                        url = resume("the server refused _offset paging", url)
                        continue
                    raise
                if bundle.resource_type != "Bundle" or bundle.type != "searchset":
                    raise UpstreamProtocolError("expected a searchset Bundle", request=url)
                pages += 1
                self.observer.page(query.resource_type)
                if isinstance(bundle.total, int):
                    total = bundle.total
                    if total >= self.max_results:
                        # Not handed out: its includes stay unremembered for the windows that follow.
                        raise ResultCapError(total, sample(bundle.matches))
                matches, includes, next_url = bundle.matches, bundle.includes, bundle.next_link
                if unordered is not None and includes:
                    unordered.repeats.remember(bundle)  # handed out below (a page with includes always is)
                del bundle  # not kept alive while the next answer is awaited
                fresh = [r for r in matches if _key(r) not in seen]
                if len(fresh) < len(matches):
                    log.info("%s %d on %s", LogEvent.DUPLICATE_DROPPED, len(matches) - len(fresh), url)
                seen.update(_key(r) for r in fresh)
                del matches
                if held and not (fresh or includes) and turns is not None:
                    turns.release()
                held = False  # given back above, or handed over with the page (released by the consumer)
                got = bool(fresh)
                if fresh or includes:
                    yield Page(url, fresh, includes, total)
                del fresh, includes
                if next_url is not None:
                    url = next_url
                    continue
                if total is not None and len(seen) < min(total, self.max_results):
                    if offset_mode and not got:
                        break  # the server ignores _offset or has no more: the check below says so
                    if offset_refused:
                        url = resume("a page lacks its next link and _offset is refused", url)
                        continue
                    # A total but no next link: page with _count/_offset from what was received (issue 4 §3).
                    offset_mode = True
                    log.info("%s %s from %d", LogEvent.OFFSET_PAGING, query.resource_type, len(seen))
                    url = self.url_for(
                        FhirQuery(query.resource_type, (*query.params, ("_offset", str(len(seen)))))
                    )
                    continue
                break
            if len(seen) >= self.max_results:
                raise ResultCapError(total)  # exactly the cap received: possibly truncated (A1 contract)
            if total is not None and total != len(seen):
                raise IncompleteResultError(
                    f"the server announced {total} results but {len(seen)} were received "
                    f"({abs(total - len(seen))} {'missing' if total > len(seen) else 'unexpected'})",
                    request=first_url,
                )
        finally:
            if held and turns is not None:
                turns.release()

    async def _ordered(
        self, producers: Sequence[Callable[[], AsyncIterator[Page]]]
    ) -> AsyncIterator[tuple[int, Page]]:
        """Runs producers `concurrency` at a time, each into a small queue; yields in producer order."""
        done = object()
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue(PAGES_PER_PARTITION) for _ in producers]
        tasks: dict[int, asyncio.Task[None]] = {}

        async def produce(index: int) -> None:
            queue = queues[index]
            try:
                async for page in producers[index]():
                    await queue.put(page)
            except Exception as error:  # handed to the consumer, which raises it in order
                await queue.put(error)
                return
            await queue.put(done)

        def start_up_to(limit: int) -> None:
            for index in range(min(limit, len(producers))):
                if index not in tasks:
                    tasks[index] = asyncio.create_task(produce(index))

        try:
            for index in range(len(producers)):
                start_up_to(index + self.concurrency)
                while True:
                    item = await queues[index].get()
                    if item is done:
                        break
                    if isinstance(item, Exception):
                        raise item
                    yield index, item
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    def export(
        self,
        request: ExportRequest | None = None,
        *,
        poll_interval_s: float = 1.0,
        stats: ExportStats | None = None,
    ) -> AsyncIterator[Resource]:
        """Bulk `$export` (ror-fhir-api.md §2.5): every resource of every output file, `export_downloads`
        files fetched at once; the job is deleted at the end. Iterate under `contextlib.aclosing` so an
        abandoned export is cleaned up too."""
        return run_export(
            self.exchange,
            request or ExportRequest(),
            validator=self.validator,
            deadline=Deadline(self.export_deadline_s),
            poll_interval_s=poll_interval_s,
            stats=stats,
            downloads=self.export_downloads,
        )


def _key(resource: Resource) -> str:
    return f"{resource['resourceType']}/{resource['id']}"
