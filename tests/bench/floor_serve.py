"""`ror-bridge` for `bench_extract --floor` (issue 13 item 4): the extraction with a mapping that costs
nothing — each batch's rows and context still read from the spool, sent to the mapping workers, parsed and
freed there, but no entity mapped or written — so that its CPU is the data path's floor (fetch, spool, SQL,
pipes, JSON), the part no faster engine or writer can take away.

The patch is made at import, outside the `__main__` guard: a mapping worker (spawned) imports this module
as its main module before its first batch, so it runs the same `map_batch_views` as the bridge.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime

from bridge.cli import main
from bridge.model import Directory
from bridge.pipeline import workers
from bridge.pipeline.spool import Row
from bridge.translate import Mappings


def parse_only(
    mappings: Mappings,
    directory: Directory,
    resource_type: str,
    rows: Sequence[Row],
    context: Sequence[bytes],
    now: datetime,
    profiles: Sequence[int | None],
) -> list[list[tuple[str, bytes]]]:
    """What `workers.map_batch_views` spends before the engine: the batch's rows and context parsed as it
    parses them (`workers.parse_batch`; its callers pause the collector around it), then freed; no element
    for any view."""
    workers.parse_batch(rows, context)  # parsed, then freed on return
    return [[] for _ in profiles]


workers.map_batch_views = parse_only
# FLOOR_PARALLEL_FROM: `workers.PARALLEL_FROM` of this bridge (a tiny extraction through the mapping workers,
# tests/test_bench_extract.py); the bridge decides it, so only its own process reads it.
if "FLOOR_PARALLEL_FROM" in os.environ:
    workers.PARALLEL_FROM = int(os.environ["FLOOR_PARALLEL_FROM"])

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
