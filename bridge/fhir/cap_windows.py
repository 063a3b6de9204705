"""The 10 000-result cap: a search the national API would truncate is split into `meta.lastUpdated` windows.

Outbound edge (`bridge/fhir/`): "Les résultats de cette requête seront tronqués à 10 000 résultats"
(ror-fhir-api.md §2.4). A walk that hits the cap (fhir/client.py, ResultCapError) asks here for the
sub-windows of its window, each walked on its own; together they cover the time axis exactly (issue 4 §3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.errors import IncompleteResultError
from bridge.model import FhirQuery

# The national API's cap on the results of one search.
MAX_RESULTS = 10_000
# `_lastUpdated` windows: below EPOCH and beyond "tomorrow" are open-ended windows of their own, so a split
# covers the whole time axis; a window narrower than MIN_WINDOW is not split further.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_WINDOW = timedelta(milliseconds=1)

Window = tuple[datetime | None, datetime | None]  # [start, end) of meta.lastUpdated; None = open
WHOLE: Window = (None, None)


def windowed(query: FhirQuery, window: Window) -> FhirQuery:
    """The query restricted to the window (`_lastUpdated=ge…` and `lt…`; nothing for an open end)."""
    start, end = window
    params = list(query.params)
    if start is not None:
        params.append(("_lastUpdated", f"ge{instant(start)}"))
    if end is not None:
        params.append(("_lastUpdated", f"lt{instant(end)}"))
    return FhirQuery(query.resource_type, tuple(params), query.purpose)


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with microseconds, as the windows send it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def split(window: Window) -> list[Window]:
    """Sub-windows covering `window` exactly; [] when it cannot be split (open-ended or too narrow)."""
    start, end = window
    horizon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    if start is None and end is None:
        return [(None, EPOCH), (EPOCH, horizon), (horizon, None)]
    if start is None or end is None:
        return []  # before 1970 or after tomorrow: nothing sensible to bisect
    if end - start < 2 * MIN_WINDOW:
        return []
    middle = start + (end - start) / 2
    return [(start, middle), (middle, end)]


def describe(window: Window) -> str:
    start, end = window
    return f"_lastUpdated in [{instant(start) if start else '-∞'}, {instant(end) if end else '+∞'})"


def sub_windows(window: Window, max_results: int, request: str) -> list[Window]:
    """The sub-windows of a window the server truncated; IncompleteResultError (naming `request`, the
    window's first page) when it cannot be split further."""
    parts = split(window)
    if not parts:
        raise IncompleteResultError(
            f"more than {max_results} results share {describe(window)}: the query cannot be "
            "split further by _lastUpdated",
            request=request,
        ) from None
    return parts
