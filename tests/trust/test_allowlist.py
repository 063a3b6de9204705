"""The allow-list file format: what a region writes by hand, and the clear errors for what it gets wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.errors import ConfigurationError
from bridge.trust.allowlist import load_allowlist, normalise_fingerprint, parse_allowlist
from bridge.trust.audit import AuditLog, Transaction
from bridge.trust.ratelimit import RateLimiter

FP = "ab" * 32
REGIONS = ["ara", "bre"]
FUNCTIONS = ["facility-search", "offer-search"]


def entry(**fields: str) -> str:
    base = {
        "id": "app",
        "fingerprints": f'["{FP}"]',
        "regions": "[ara]",
        "functions": '["*"]',
        "profile": "1",
    }
    base.update(fields)
    lines = [f"  - {k}: {v}" if i == 0 else f"    {k}: {v}" for i, (k, v) in enumerate(base.items())]
    return "clients:\n" + "\n".join(lines) + "\n"


def test_a_hand_written_file_is_read() -> None:
    allow = parse_allowlist(entry(rate_per_minute="600"), regions=REGIONS, functions=FUNCTIONS)
    client = allow.find(FP)
    assert client is not None
    assert client.rate_per_minute == 600
    assert client.profile == 1
    assert client.may_use_region("ARA")
    assert not client.may_use_region(None)
    assert client.may_call("modifications")


def test_fingerprints_are_normalised_and_only_sha256() -> None:
    assert normalise_fingerprint(":".join(["AB"] * 32)) == FP
    assert normalise_fingerprint(f"sha256:{FP.upper()}") == FP
    with pytest.raises(ValueError, match="SHA-256"):
        normalise_fingerprint("ab" * 20)  # a SHA-1
    with pytest.raises(ValueError, match="SHA-256"):
        normalise_fingerprint("CN=sih-chu-example")  # a subject is never a key


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("clients: 3", "`clients:` list"),
        ("nope: []\nclients: []", "unknown top-level"),
        (entry(profile="4"), "profile must be"),
        (entry(profile="true"), "profile must be"),
        (entry(regions="[mars]"), "unknown mars"),
        (entry(functions="[adhoc]"), "unknown adhoc"),
        (entry(fingerprints='["CN=x"]'), "fingerprints"),
        (entry(fingerprints="[]"), "non-empty list"),
        (entry(rate_per_minute="0"), "rate_per_minute"),
        (entry(colour="red"), "unknown key"),
        (entry() + entry().removeprefix("clients:\n"), "listed twice"),
        (entry() + entry(id="other").removeprefix("clients:\n"), "listed for both"),
        ("profiles: {7: {ror_profile_code: X}}\n" + entry(), "not an access profile"),
        ("profiles: {1: {colour: X}}\n" + entry(), "keys among"),
        ("clients: [", "not YAML"),
    ],
)
def test_mistakes_are_configuration_errors_that_say_what(text: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        parse_allowlist(text, regions=REGIONS, functions=FUNCTIONS)


def test_the_file_name_is_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"clients\.yaml"):
        load_allowlist(tmp_path / "clients.yaml")


def test_audit_file_is_reopened_after_sighup_style_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    log.write(Transaction(route="csd", method="POST", remote="127.0.0.1"))
    os.rename(path, tmp_path / "audit.jsonl.1")  # logrotate moves the file away
    log.reopen()  # what the SIGHUP handler does
    log.write(Transaction(route="csd", method="POST", remote="127.0.0.1"))
    log.close()
    assert len((tmp_path / "audit.jsonl.1").read_bytes().splitlines()) == 1
    assert len(path.read_bytes().splitlines()) == 1


def test_rate_limiter_refills_and_splits_the_budget_between_workers() -> None:
    now = [0.0]
    limiter = RateLimiter(workers=2, clock=lambda: now[0])
    assert [limiter.take("a", 4) for _ in range(3)] == [0, 0, 30]  # 2 per worker, one every 30 s
    now[0] = 30.0
    assert limiter.take("a", 4) == 0
    assert limiter.take("b", 4) == 0  # clients do not share a bucket


def test_extraction_cache_is_kept_apart_per_access_profile() -> None:
    from bridge.app import extraction_cache, mappings_from
    from bridge.config import load_settings
    from bridge.pipeline.extraction import extraction_request

    settings = load_settings(extraction_cache_s=60)
    wanted = extraction_request(mappings_from(settings), None, [])
    names = {extraction_cache(settings, profile)._name(wanted) for profile in (None, 0, 1, 2, 3)}
    assert len(names) == 5  # a document fetched with one profile's headers is never served to another
