"""Findings (translate/findings.py): counted once per detail, logged on first sight, bounded, mergeable."""

from __future__ import annotations

import logging

import pytest

from bridge.translate.findings import MAX_DETAILS, OTHER_DETAILS, Finding, Findings


def test_a_detail_is_logged_once_and_counted_every_time(caplog: pytest.LogCaptureFixture) -> None:
    findings = Findings()
    with caplog.at_level(logging.INFO, "bridge.translate.findings"):
        for _ in range(3):
            findings.add(Finding.UNRESOLVED_REFERENCE, "Location/1")
    assert findings.count(Finding.UNRESOLVED_REFERENCE, "Location/1") == 3
    assert caplog.text.count("Location/1") == 1


def test_details_are_bounded_per_finding() -> None:
    """A long-running bridge meeting a new unresolved reference on every answer keeps a bounded table:
    beyond MAX_DETAILS distinct details a finding counts the others together."""
    findings = Findings()
    for number in range(MAX_DETAILS + 50):
        findings.add(Finding.UNRESOLVED_REFERENCE, f"Location/{number}")
    findings.add(Finding.MISSING_NAME, "urn:x")  # another finding keeps its own details
    counts = findings.counts()
    assert len(counts) == MAX_DETAILS + 2
    assert counts[(Finding.UNRESOLVED_REFERENCE, OTHER_DETAILS)] == 50
    assert findings.count(Finding.UNRESOLVED_REFERENCE) == MAX_DETAILS + 50
    assert counts[(Finding.MISSING_NAME, "urn:x")] == 1


def test_merge_adds_what_another_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A mapping worker's counts reach the bridge's own (extraction.py); new details are logged there."""
    ours, theirs = Findings(), Findings()
    ours.add(Finding.MISSING_NAME, "urn:a")
    theirs.add(Finding.MISSING_NAME, "urn:a")
    theirs.add(Finding.MISSING_NAME, "urn:a")
    theirs.add(Finding.FHIR_ID_ENTITY, "PractitionerRole")
    caplog.clear()  # what the merge logs, whatever the adds above logged at the level the process had
    with caplog.at_level(logging.INFO, "bridge.translate.findings"):
        ours.merge(theirs.counts())
    assert ours.counts() == {
        (Finding.MISSING_NAME, "urn:a"): 3,
        (Finding.FHIR_ID_ENTITY, "PractitionerRole"): 1,
    }
    assert "PractitionerRole" in caplog.text
    assert "urn:a" not in caplog.text  # seen here before: not logged again
