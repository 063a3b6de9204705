"""The 10 000-result cap: a search the national API would truncate is split into `meta.lastUpdated` windows.

Outbound edge (`bridge/fhir/`): "Les résultats de cette requête seront tronqués à 10 000 résultats"
(ror-fhir-api.md §2.4). A walk that hits the cap (fhir/client.py, ResultCapError) asks here for the
sub-windows of its window, each walked on its own; together they cover the time axis exactly (issue 4 §3).
The number of sub-windows is sized from the truncated window's `Bundle.total` (issue 13 item 3).
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

from bridge.errors import IncompleteResultError
from bridge.model import FhirQuery

# The national API's cap on the results of one search.
MAX_RESULTS = 10_000
# `_lastUpdated` windows: below EPOCH and beyond "tomorrow" are open-ended windows of their own, so a split
# covers the whole time axis; a window narrower than MIN_WINDOW is not split further.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_WINDOW = timedelta(milliseconds=1)
# Sub-windows are sized to hold about this share of the cap each if the results were spread evenly over time,
# at most MAX_PARTS of them (a part still over the cap is split again from its own total).
FILL = 0.5
MAX_PARTS = 64

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


def split(
    window: Window, total: int | None = None, max_results: int = MAX_RESULTS, per_part: int | None = None
) -> list[Window]:
    """Sub-windows covering `window` exactly; [] when it cannot be split (open-ended or too narrow).

    With the window's `total`, a bounded window is cut into equal spans of time expected to hold about
    `per_part` results each (default FILL × `max_results`; at least 2 parts); without it, into halves. The
    whole axis is cut at EPOCH and tomorrow first.
    """
    start, end = window
    horizon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    if start is None and end is None:
        bounded = (EPOCH, horizon)
        middle = [bounded] if total is None else split(bounded, total, max_results, per_part)
        return [(None, EPOCH), *middle, (horizon, None)]
    if start is None or end is None:
        return []  # before 1970 or after tomorrow: nothing sensible to bisect
    width = end - start
    if width < 2 * MIN_WINDOW:
        return []
    size = per_part if per_part is not None else max_results * FILL
    parts = 2 if total is None else max(2, math.ceil(total / max(1, size)))
    parts = min(parts, MAX_PARTS, width // MIN_WINDOW)
    bounds = [start + width * i // parts for i in range(parts)] + [end]
    return list(itertools.pairwise(bounds))


def describe(window: Window) -> str:
    start, end = window
    return f"_lastUpdated in [{instant(start) if start else '-∞'}, {instant(end) if end else '+∞'})"


def sub_windows(
    window: Window, max_results: int, request: str, total: int | None = None, per_part: int | None = None
) -> list[Window]:
    """The sub-windows of a window the server truncated (sized from its `total` when known);
    IncompleteResultError (naming `request`, the window's first page) when it cannot be split further."""
    parts = split(window, total, max_results, per_part)
    if not parts:
        raise IncompleteResultError(
            f"more than {max_results} results share {describe(window)}: the query cannot be "
            "split further by _lastUpdated",
            request=request,
        ) from None
    return parts
