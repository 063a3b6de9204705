"""Sampled FHIR R4B validation of upstream resources, off the hot path (outbound edge).

Resources travel as plain JSON (orjson); a configurable share of them is validated with `fhir.resources.R4B`
in a worker thread and failures are only counted and logged (issue 4 §7): real-world data is never rejected
for a cosmetic defect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

# Beyond this many validations waiting for the worker, samples are skipped rather than queued: validation
# must never hold memory or time the answer needs.
MAX_PENDING = 64


class LogEvent(StrEnum):
    INVALID_RESOURCE = "upstream-resource-invalid"


class SampledValidator:
    """Validates about `rate` of the resources submitted (0 = none, 1 = all); counts what fails."""

    def __init__(self, rate: float, *, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("the validation rate is between 0 and 1")
        self.rate = rate
        self._rng = random.Random(seed)  # noqa: S311  # sampling, not security
        self._lock = threading.Lock()
        self._pending: set[asyncio.Future[None]] = set()
        self.validated = 0
        self.failures = 0
        self.skipped = 0

    def submit(self, resource: Mapping[str, Any]) -> None:
        """Maybe schedule `resource` for validation in a worker thread; never blocks, never raises."""
        if self.rate <= 0.0 or self._rng.random() >= self.rate:
            return
        if len(self._pending) >= MAX_PENDING:
            self.skipped += 1
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._validate, dict(resource))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for the validations already scheduled (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    def _validate(self, resource: dict[str, Any]) -> None:
        from fhir.resources.R4B import get_fhir_model_class  # heavy import, paid only when sampling is on

        resource_type = str(resource.get("resourceType"))
        try:
            get_fhir_model_class(resource_type).model_validate(resource)
            failed = None
        except Exception as exc:  # any defect is counted, none is raised: the data is still used
            failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        with self._lock:
            self.validated += 1
            if failed is not None:
                self.failures += 1
        if failed is not None:
            # Type and id only: the payload may hold personal data (house style: no payloads above DEBUG).
            log.warning("%s %s/%s: %s", LogEvent.INVALID_RESOURCE, resource_type, resource.get("id"), failed)
