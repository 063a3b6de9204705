"""Counters of what the engine had to report rather than drop (codes without OID, unresolved references…).

translate/: pure mapping engine. Kept on `Mappings` so `coverage_report` can show them; thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from enum import StrEnum

log = logging.getLogger(__name__)

# Distinct details kept per finding (a detail is often a resource key): beyond, counted under OTHER_DETAILS.
MAX_DETAILS = 1000
OTHER_DETAILS = "(other details, not kept one by one)"


class Finding(StrEnum):
    """What a finding is about; also the log event name."""

    SYSTEM_WITHOUT_OID = "code system without OID (system URL written as codingScheme)"
    IDENTIFIER_WITHOUT_OID = "identifier system without OID (system URL written as assigningAuthorityName)"
    IDENTIFIER_WITHOUT_SYSTEM = "identifier without system (not written as otherID)"
    UNRESOLVED_REFERENCE = "reference to a resource not received (FHIR-id entityID used)"
    FHIR_ID_ENTITY = "entity without national identifier (FHIR-id entityID used)"
    MISSING_NAME = "organization or facility without name (empty primaryName written)"
    CODE_WITHOUT_CROSSWALK = "v3 code without v2.4 crosswalk row (written as received)"
    MISSING_DEMOGRAPHIC = "provider whose Practitioner was not received (provider not written)"
    HOURS_WITHOUT_START = "opening hours without effective start date (not written as operatingHours)"
    INCOMPLETE_TYPED_ELEMENT = "typed element of the v2.4 profile missing a required part (not written)"
    PART_WITHOUT_KEY = "part of a resource without the key its entityID needs (no record written)"
    SECOND_CRISIS_TYPE = "crisis capacity of a second crisis type (the profile holds one: not written)"


class Findings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[Finding, str]] = Counter()
        self._details: Counter[Finding] = Counter()  # distinct details per finding
        self._added = 0  # every add, whatever its finding: what a memo checks a computation reported nothing

    @property
    def added(self) -> int:
        """How many times `add` was called (any finding, any thread) since this object was made."""
        return self._added

    def add(self, finding: Finding, detail: str, times: int = 1) -> None:
        with self._lock:
            if (finding, detail) not in self._counts and self._details[finding] >= MAX_DETAILS:
                detail = OTHER_DETAILS  # a long-running bridge keeps a bounded table
            first = (finding, detail) not in self._counts
            if first:
                self._details[finding] += 1
            self._counts[(finding, detail)] += times
            self._added += 1
        if first:
            log.info("%s: %s", finding.value, detail, extra={"event": finding.name})

    def merge(self, counts: Mapping[tuple[Finding, str], int]) -> None:
        """Add what another Findings counted (a mapping worker process's share of an answer)."""
        for (finding, detail), times in counts.items():
            self.add(finding, detail, times)

    def counts(self) -> dict[tuple[Finding, str], int]:
        with self._lock:
            return dict(self._counts)

    def count(self, finding: Finding, detail: str | None = None) -> int:
        with self._lock:
            return sum(n for (f, d), n in self._counts.items() if f is finding and detail in (None, d))
