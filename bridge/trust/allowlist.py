"""The allow-list ("liste blanche", BRIDGE_CLIENTS_FILE): client applications by certificate fingerprint.

Part of trust/. A YAML file a region writes by hand (format in the README, "Trust circle"); every mistake is
a ConfigurationError naming the client and the field, raised at start-up, never at the first request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.client_profile import PROFILES
from bridge.errors import ConfigurationError

ANY = "*"
NATIONAL = "national"  # the /csd and /extraction routes without a region
MODIFICATIONS = "modifications"  # ITI-74 getModificationsRequest
EXTRACTION = "extraction"  # GET /extraction[/{region}]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CLIENT_KEYS = frozenset({"id", "fingerprints", "regions", "functions", "profile", "rate_per_minute"})
_PROFILE_KEYS = frozenset({"ror_profile_code", "ror_profile_system", "ror_role_code", "ror_role_system"})
_TOP_KEYS = frozenset({"clients", "profiles"})


def normalise_fingerprint(text: str) -> str:
    """SHA-256 fingerprint as 64 lower-case hex digits; colons, spaces and a `sha256:` prefix are dropped.

    ValueError when it is not a SHA-256 (a SHA-1 or a subject is refused: matching is by fingerprint only).
    """
    value = text.strip().lower()
    if value.startswith(("sha256:", "sha-256:")):
        value = value.partition(":")[2]
    value = value.replace(":", "").replace(" ", "")
    if not _HEX64.match(value):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits, colons optional): {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Client:
    """One admitted application."""

    id: str
    fingerprints: frozenset[str]
    regions: frozenset[str]  # lower-case region codes, NATIONAL, or ANY
    functions: frozenset[str]  # stored-function names, MODIFICATIONS, EXTRACTION, or ANY
    profile: int
    rate_per_minute: int | None = None

    def may_use_region(self, region: str | None) -> bool:
        wanted = NATIONAL if region is None else region.strip().lower()
        return ANY in self.regions or wanted in self.regions

    def may_call(self, function: str) -> bool:
        return ANY in self.functions or function in self.functions


@dataclass(frozen=True, slots=True)
class AllowList:
    """Clients by fingerprint, and the upstream `Ror-*` header values of each access profile."""

    clients: tuple[Client, ...]
    by_fingerprint: Mapping[str, Client]
    profile_headers: Mapping[int, Mapping[str, str]] = field(default_factory=dict)

    def find(self, fingerprint: str) -> Client | None:
        return self.by_fingerprint.get(fingerprint)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigurationError(f"{where}: a non-empty list of strings is required")
    return [v.strip() for v in value]


def _client(raw: Any, number: int, regions: Iterable[str] | None, functions: Iterable[str] | None) -> Client:
    where = f"clients[{number}]"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: a mapping with id, fingerprints, regions, functions, profile")
    unknown = set(raw) - _CLIENT_KEYS
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    client_id = raw.get("id")
    if not isinstance(client_id, str) or not client_id.strip():
        raise ConfigurationError(f"{where}: `id` (free text) is required")
    where = f"client {client_id!r}"
    try:
        prints = frozenset(normalise_fingerprint(f) for f in _strings(raw.get("fingerprints"), where))
    except ValueError as error:
        raise ConfigurationError(f"{where}: fingerprints: {error}") from None
    wanted_regions = frozenset(r.lower() for r in _strings(raw.get("regions"), f"{where}: regions"))
    if regions is not None:
        known = {r.lower() for r in regions} | {ANY, NATIONAL}
        bad = sorted(wanted_regions - known)
        if bad:
            raise ConfigurationError(f"{where}: regions: unknown {', '.join(bad)} (see mappings/regions.csv)")
    wanted_functions = frozenset(_strings(raw.get("functions"), f"{where}: functions"))
    if functions is not None:
        known = set(functions) | {ANY, MODIFICATIONS, EXTRACTION}
        bad = sorted(wanted_functions - known)
        if bad:
            raise ConfigurationError(
                f"{where}: functions: unknown {', '.join(bad)} (see mappings/functions.yaml)"
            )
    profile = raw.get("profile")
    if isinstance(profile, bool) or not isinstance(profile, int) or profile not in PROFILES:
        raise ConfigurationError(f"{where}: profile must be an ROR access profile 0, 1, 2 or 3")
    rate = raw.get("rate_per_minute")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
        raise ConfigurationError(f"{where}: rate_per_minute must be a positive integer")
    return Client(client_id.strip(), prints, wanted_regions, wanted_functions, profile, rate)


def _profile_headers(raw: Any) -> dict[int, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigurationError("profiles: a mapping from profile number to its Ror-* header values")
    headers: dict[int, dict[str, str]] = {}
    for key, values in raw.items():
        if isinstance(key, bool) or not isinstance(key, int) or key not in PROFILES:
            raise ConfigurationError(f"profiles: {key!r} is not an access profile 0, 1, 2 or 3")
        if not isinstance(values, dict) or not values or set(values) - _PROFILE_KEYS:
            raise ConfigurationError(f"profiles: {key}: keys among {', '.join(sorted(_PROFILE_KEYS))}")
        if not all(isinstance(v, str) and v.strip() for v in values.values()):
            raise ConfigurationError(f"profiles: {key}: values must be non-empty strings")
        headers[key] = {k: v.strip() for k, v in values.items()}
    return headers


def parse_allowlist(
    text: str, *, regions: Iterable[str] | None = None, functions: Iterable[str] | None = None
) -> AllowList:
    """The allow-list in `text`; region and function names are checked against the known ones when given."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigurationError(f"not YAML: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
        raise ConfigurationError("the allow-list needs a top-level `clients:` list")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigurationError(f"unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}")
    known_regions = list(regions) if regions is not None else None
    known_functions = list(functions) if functions is not None else None
    clients = tuple(
        _client(raw, number, known_regions, known_functions) for number, raw in enumerate(data["clients"])
    )
    by_fingerprint: dict[str, Client] = {}
    ids: set[str] = set()
    for client in clients:
        if client.id in ids:
            raise ConfigurationError(f"client {client.id!r} is listed twice")
        ids.add(client.id)
        for fingerprint in client.fingerprints:
            other = by_fingerprint.get(fingerprint)
            if other is not None:
                raise ConfigurationError(
                    f"fingerprint {fingerprint} is listed for both {other.id!r} and {client.id!r}"
                )
            by_fingerprint[fingerprint] = client
    return AllowList(clients, by_fingerprint, _profile_headers(data.get("profiles")))


def load_allowlist(
    path: Path, *, regions: Iterable[str] | None = None, functions: Iterable[str] | None = None
) -> AllowList:
    """The allow-list file at `path` (ConfigurationError naming the file when it is unreadable or wrong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"clients file {path}: {error}") from None
    try:
        return parse_allowlist(text, regions=regions, functions=functions)
    except ConfigurationError as error:
        raise ConfigurationError(f"clients file {path}: {error.reason}") from None
