"""The pipeline: each job that turns a CSD request into an answer, one module each.

`transaction` (one CSD transaction: plan → fetch → map), `extraction` (the streamed REST extraction),
`changes` (changes since a date, written from a spool), `spool` (what was received, once, on disk),
`workers` (the spool read back and mapped, in worker processes when large), `cache` (completed extractions),
`progress` (their counters), `request_plan` (what one CSD request asks, resolved once). Imports model,
translate/, fhir/ and csd/; nothing imports it but app and http/.
"""

from bridge.pipeline.transaction import Pipeline

__all__ = ["Pipeline"]
