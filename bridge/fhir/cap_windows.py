"""The 10 000-result cap: a search the national API would truncate is split into `meta.lastUpdated` windows.

Outbound edge (`bridge/fhir/`): "Les résultats de cette requête seront tronqués à 10 000 résultats"
(ror-fhir-api.md §2.4). A walk that hits the cap (fhir/client.py, ResultCapError) asks here for the
sub-windows of its window, each walked on its own; together they cover the time axis exactly (issue 4 §3).
The number of sub-windows is sized from the truncated window's `Bundle.total`, their bounds from the dates
of the truncated page's matches when they sample the window (issue 13 item 3).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

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
# A truncated page's matches sample its window's meta.lastUpdated unless the server ordered them by date: the
# window is then cut at the sample's quantiles (parts of about equal results) instead of equal spans of time,
# which leave most parts empty and a few over the cap when the dates crowd into a few years or burst days.
# A sample is used with at least SAMPLE_PER_PART dates per part, and only when the page's order looks
# unrelated to the dates: of the neighbours whose dates differ, at least SAMPLE_ASCENTS ascend and as many
# descend (a page sorted by date, either way, has no ascent or no descent: it tells nothing of the rest of
# its window).
SAMPLE_PER_PART = 2
SAMPLE_ASCENTS = 0.25

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


def sample(resources: Iterable[Mapping[str, Any]]) -> tuple[datetime, ...]:
    """The meta.lastUpdated of a truncated page's matches, in page order, as a sample of its window's dates;
    () when the page looks ordered by date (see SAMPLE_ASCENTS) or a date is missing or not an instant."""
    dates: list[datetime] = []
    for resource in resources:
        meta = resource.get("meta")
        text = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
        try:
            moment = datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            return ()
        dates.append(moment.astimezone(UTC))
    ascents = sum(a < b for a, b in itertools.pairwise(dates))
    descents = sum(a > b for a, b in itertools.pairwise(dates))
    changes = ascents + descents
    representative = changes > 0 and min(ascents, descents) >= SAMPLE_ASCENTS * changes
    return tuple(dates) if representative else ()


def split(
    window: Window,
    total: int | None = None,
    max_results: int = MAX_RESULTS,
    per_part: int | None = None,
    dates: tuple[datetime, ...] = (),
) -> list[Window]:
    """Sub-windows covering `window` exactly; [] when it cannot be split (open-ended or too narrow).

    With the window's `total`, a bounded window is cut into parts expected to hold about `per_part` results
    each (default FILL × `max_results`; at least 2 parts, at most MAX_PARTS): at the quantiles of `dates` (a
    `sample` of the window) when it has enough of them inside, else into equal spans of time; without a
    total, into halves. The whole axis is cut at EPOCH and tomorrow first.
    """
    return _cut(window, total, max_results, per_part, dates)[0]


def _cut(
    window: Window, total: int | None, max_results: int, per_part: int | None, dates: tuple[datetime, ...]
) -> tuple[list[Window], bool]:
    """`split`'s parts, and whether they hold about `per_part` results each by the sample: cut at its
    quantiles, not fewer than the total asks for (MAX_PARTS), and `per_part` at most half the cap."""
    start, end = window
    if start is None and end is None:
        horizon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        bounded = (EPOCH, horizon)
        if total is None:
            return [(None, EPOCH), bounded, (horizon, None)], False
        middle, sized = _cut(bounded, total, max_results, per_part, dates)
        return [(None, EPOCH), *middle, (horizon, None)], sized
    if start is None or end is None:
        return [], False  # before 1970 or after tomorrow: nothing sensible to bisect
    width = end - start
    if width < 2 * MIN_WINDOW:
        return [], False
    size = per_part if per_part is not None else max_results * FILL
    wanted = 2 if total is None else max(2, math.ceil(total / max(1, size)))
    parts = min(wanted, MAX_PARTS, width // MIN_WINDOW)
    inside = sorted(d for d in dates if start + MIN_WINDOW <= d <= end - MIN_WINDOW)
    if total is None or len(inside) < SAMPLE_PER_PART * parts:
        bounds = [start + width * i // parts for i in range(parts)] + [end]
        return list(itertools.pairwise(bounds)), False
    # Each cut at a sample date: the results of that date open the next part ([start, end) windows). A part
    # twice its share by a sampling error must still be under the cap for it to skip its probe.
    cuts = dict.fromkeys(inside[len(inside) * i // parts] for i in range(1, parts))
    return list(itertools.pairwise([start, *cuts, end])), parts == wanted and 2 * size <= max_results


def describe(window: Window) -> str:
    start, end = window
    return f"_lastUpdated in [{instant(start) if start else '-∞'}, {instant(end) if end else '+∞'})"


def sub_windows(
    window: Window,
    max_results: int,
    request: str,
    total: int | None = None,
    per_part: int | None = None,
    dates: tuple[datetime, ...] = (),
) -> tuple[list[Window], bool]:
    """The sub-windows of a window the server truncated (sized from its `total` when known, cut at the
    quantiles of `dates` when they sample it), and whether each holds about `per_part` results by that
    sample, so that they may be walked without asking their totals first; IncompleteResultError (naming
    `request`, the window's first page) when it cannot be split further."""
    parts, sized = _cut(window, total, max_results, per_part, dates)
    if not parts:
        raise IncompleteResultError(
            f"more than {max_results} results share {describe(window)}: the query cannot be "
            "split further by _lastUpdated",
            request=request,
        ) from None
    return parts, sized
