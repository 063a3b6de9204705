"""The pipeline: each job that turns a CSD request into an answer, one module each.

`transaction` (one CSD transaction: plan → fetch → map), `extraction` (the streamed REST extraction),
`changes` (changes since a date, written from a spool), `spool` (what was received, once, on disk),
`workers` (the spool read back and mapped, in worker processes when large), `cache` (completed extractions),
`progress` (their counters), `request_plan` (what one CSD request asks, resolved once). Imports model,
translate/, fhir/ and csd/; nothing imports it but app and http/.

`Pipeline` is imported on first use, not with the package: a mapping worker process imports
`bridge.pipeline.workers` only, and the transaction's imports (fhir/, httpx and what httpx imports) would
cost each worker about 25 MiB it never uses (issue 13 item 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.pipeline.transaction import Pipeline

__all__ = ["Pipeline"]


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        from bridge.pipeline.transaction import Pipeline  # on first use: see above

        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
