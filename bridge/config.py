"""Settings of the bridge: command-line flags, then `BRIDGE_*` environment variables, then a TOML file.

Leaf module; no instance is created at import time. `load_settings()` is called by the CLI and tests,
and `bridge.app.create_app(settings)` is the only place that builds objects from it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.errors import ConfigurationError

DEMO = "demo"


class Settings(BaseSettings):
    """Every setting, with its default. The README's configuration table is generated from here."""

    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="forbid", frozen=True)

    # --- serving
    host: str = Field("127.0.0.1", description="address `serve` listens on")
    port: int = Field(8080, description="port `serve` listens on")
    max_request_bytes: int = Field(
        1024 * 1024, gt=0, description="largest SOAP/CSD request body accepted, in bytes (Sender fault above)"
    )
    log_level: str = Field("info", description="log level: debug, info, warning, error")
    # --- operations (issue 16)
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="log lines: `json` (one object per line), `text`, or `auto` (text on a terminal, "
        "else json)",
    )
    workers: int = Field(
        1,
        ge=1,
        description="`serve` worker processes sharing the port (at most the CPU cores available); see "
        'README "Several workers"',
    )
    hot_path: Literal["auto", "interpreted"] = Field(
        "auto",
        description="the mapping engine and CSD writer: `auto` runs them compiled when `make compiled` built "
        "them from the current sources, else interpreted; `interpreted` never loads a build. Environment "
        "only: read when the bridge is imported, before any settings file (bridge/hot_path.py)",
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="on SIGTERM, seconds answers and extractions in flight may take to finish before they "
        "are cut",
    )
    request_body_timeout_s: float = Field(
        30.0, gt=0, description="time allowed to receive a whole request body, s (Sender fault after)"
    )

    # --- mapping tables
    mappings_dir: Path | None = Field(
        None,
        description="directory holding a deployment's own copy of `mappings/` (default: the shipped tables)",
    )

    # --- upstream: the national ROR FHIR API, or the embedded simulator
    upstream_url: str = Field(
        DEMO,
        description="national FHIR base URL (…/ws-diffusion-fhir), or `demo` for the embedded simulator",
    )
    upstream_timeout_s: float = Field(
        30.0, gt=0, description="timeout of one upstream HTTP exchange, seconds"
    )
    upstream_page_size: int = Field(200, ge=1, le=200, description="`_count` asked of the national API")
    ror_profile_code: str = Field("CU22", description="`Ror-Profil-Utilisateur-Code` header (given by ANS)")
    ror_profile_system: str = Field(
        "1.2.250.1.213.1.6.1.66", description="`Ror-Profil-Utilisateur-System` header"
    )
    ror_role_code: str = Field("AUTOMATE", description="`Ror-Role-Metier-Code` header (given by ANS)")
    ror_role_system: str = Field("1.2.250.1.213.1.1.4.6", description="`Ror-Role-Metier-System` header")
    # --- upstream access and resilience (issue 4; ror-fhir-api.md §1.2)
    upstream_token_url: str | None = Field(
        None,
        description="OAuth2 token endpoint (…/protocol/openid-connect/token); unset = no token",
    )
    upstream_client_id: str | None = Field(None, description="OAuth2 client_id given by the ROR team")
    upstream_client_secret: SecretStr | None = Field(
        None, description="OAuth2 client secret (profile 0); unset with a client certificate (profiles 1–4)"
    )
    upstream_client_cert: Path | None = Field(
        None, description="PEM client certificate (IGC-Santé ORG/AUTH_CLI) for mutual TLS"
    )
    upstream_client_key: Path | None = Field(None, description="PEM private key of the client certificate")
    upstream_ca_bundle: Path | None = Field(
        None, description="PEM CA bundle trusted for the upstream (default: the system store)"
    )
    upstream_connect_timeout_s: float = Field(
        5.0, gt=0, description="timeout to open an upstream connection, s"
    )
    upstream_max_attempts: int = Field(4, ge=1, description="tries of one idempotent upstream GET")
    upstream_backoff_base_s: float = Field(
        0.2, ge=0, description="first retry wait ceiling, seconds (doubled per attempt, full jitter)"
    )
    upstream_backoff_max_s: float = Field(10.0, ge=0, description="largest retry wait ceiling, seconds")
    upstream_deadline_s: float = Field(
        120.0, gt=0, description="overall time allowed for one upstream search, all pages and retries, s"
    )
    upstream_export_deadline_s: float = Field(
        3600.0, gt=0, description="overall time allowed for one $export, s"
    )
    upstream_breaker_failures: int = Field(
        5, ge=1, description="consecutive upstream failures that open the circuit breaker"
    )
    upstream_breaker_reset_s: float = Field(
        30.0, gt=0, description="seconds the breaker stays open before one probe request"
    )
    upstream_concurrency: int = Field(
        4, ge=1, description="upstream requests in flight at once (partitions fetched concurrently)"
    )
    upstream_export_downloads: int = Field(
        4, ge=1, description="$export output files downloaded at once (each held whole until its turn)"
    )
    upstream_max_results: int = Field(
        10_000, ge=1, description="result cap of one national search; a search reaching it is split"
    )
    upstream_validation_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of upstream resources validated against FHIR R4B (counted, never rejected)",
    )

    # --- the streamed REST extraction (GET /extraction, `ror-bridge extract`)
    extraction_source: Literal["auto", "export", "search"] = Field(
        "auto",
        description="where an extraction reads the offer: $export, paged searches, or auto ($export when the "
        "upstream CapabilityStatement announces it)",
    )
    extraction_cache_s: float = Field(
        0.0, ge=0, description="seconds a completed extraction is served again from disk; 0 = no cache"
    )
    extraction_cache_dir: Path | None = Field(
        None, description="directory of cached extractions (default: ror-bridge-extractions in the temp dir)"
    )
    extraction_max_concurrent: int = Field(
        2, ge=1, description="extractions running at once; one more is answered 503 with Retry-After"
    )
    changes_max_concurrent: int = Field(
        2,
        ge=1,
        description="changes since a date (ITI-74, establishments-updated-since) computed at once; more "
        "wait, identical waiting requests share one answer",
    )
    mapping_workers: int | None = Field(
        None,
        ge=0,
        description="worker processes mapping a large answer written from a spool (the extraction, ITI-74, "
        "establishments-updated-since: from 20 000 entities of a directory) in parallel; 0: in the "
        "request's own thread (default: one per available CPU core, none on a single core)",
    )

    @property
    def effective_mapping_workers(self) -> int:
        """`mapping_workers`, or its default: the CPU cores this process may use shared among the `serve`
        workers, 0 when that leaves one or none."""
        if self.mapping_workers is not None:
            return self.mapping_workers
        cores = available_cores() // self.workers
        return cores if cores > 1 else 0

    # --- the trust circle on the legacy side (issue 15; README "Trust circle")
    tls_cert: Path | None = Field(
        None, description="PEM server certificate (chain) of `serve`; with tls_key, `serve` speaks HTTPS"
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle client certificates are verified against (asks for one)"
    )
    tls_crl: Path | None = Field(
        None, description="PEM certificate revocation list(s) checked for client certificates"
    )
    clients_file: Path | None = Field(
        None, description="YAML allow-list of the client applications (fingerprints, scopes, profile)"
    )
    trusted_proxies: str = Field(
        "",
        description="comma-separated addresses or CIDRs of TLS-terminating proxies whose client-certificate "
        "header is believed",
    )
    client_cert_header: str = Field(
        "X-SSL-Client-Cert", description="header a trusted proxy puts the URL-encoded client PEM in"
    )
    audit_log: str | None = Field(
        None, description="audit log file (one JSON line per transaction), `-` = standard error"
    )

    # --- embedded demo simulator (upstream_url = demo)
    demo_scale: int = Field(300, ge=1, description="number of offers in the demo dataset")
    demo_seed: int = Field(1, description="seed of the demo dataset (same seed, same data)")

    # --- shadow mode (issue 14): each CSD request also sent to the legacy service, both answers compared
    shadow_legacy_url: str | None = Field(
        None,
        description="legacy CSD endpoint (`{region}`: the request's region); when set, shadow mode is on",
    )
    shadow_log: Path | None = Field(
        None,
        description="JSON-lines file shadow mode appends its comparisons to (`compare shadow-log` reads it)",
    )
    shadow_budget_ms: float = Field(
        1000.0,
        gt=0,
        description="longest wait for the legacy side when it answers the client; slower: the bridge answers",
    )

    @field_validator("upstream_url", "upstream_token_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None or value == DEMO:
            return value
        scheme, separator, rest = value.partition("://")
        if not separator or scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be one of debug, info, warning, error")
        return level

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def is_demo(self) -> bool:
        return self.upstream_url == DEMO

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def available_cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


ENV_PREFIX = "BRIDGE_"


def env_name(field: str) -> str:
    """The environment variable of a setting: `upstream_page_size` → `BRIDGE_UPSTREAM_PAGE_SIZE`."""
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """`BRIDGE_*` variables that name no setting, each with the closest valid name when there is one."""
    environ = os.environ if environ is None else environ
    valid = {env_name(name) for name in Settings.model_fields}
    problems = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in valid:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(valid), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{name} is not a setting{hint}")
    return problems


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from flags (`overrides`, None values ignored), then BRIDGE_* variables, then the TOML file.

    A `BRIDGE_*` variable that names no setting is refused (ConfigurationError naming the closest one).
    """
    problems = unknown_variables()
    if problems:
        raise ConfigurationError("; ".join(problems))
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"configuration file not found: {config_file}")
    values = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**values)

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    return FileSettings(**values)
