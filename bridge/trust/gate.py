"""The trust gate: an ASGI middleware admitting each request by client certificate, scope and rate.

Part of trust/. With BRIDGE_CLIENTS_FILE set every request but the probes (/healthz, /readyz) needs an
admitted certificate: none, an unlisted one, a region or function outside the client's scope → 403, over
`rate_per_minute` → 429 with Retry-After. SOAP fault on POST to the CSD routes, plain text elsewhere. The
certificate comes from this server's TLS handshake, or from BRIDGE_CLIENT_CERT_HEADER when the connection
comes from BRIDGE_TRUSTED_PROXIES (ignored and logged from anywhere else). Every transaction is audited.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bridge.client_profile import ACCESS_PROFILE
from bridge.config import Settings
from bridge.errors import AccessRefusedError, RateLimitedError
from bridge.soap.faults import render_fault
from bridge.soap.parser import guess_envelope
from bridge.trust.allowlist import EXTRACTION, AllowList, Client, load_allowlist
from bridge.trust.audit import CURRENT, AuditLog, Transaction
from bridge.trust.certs import PeerCertificate, der_from_header, from_der
from bridge.trust.ratelimit import RateLimiter
from bridge.trust.tls import PEER_ADDRESS, PEER_CERT

log = logging.getLogger(__name__)

PROBES = frozenset({"/healthz", "/readyz"})

Scope = dict[str, Any]
Message = dict[str, Any]


class LogEvent(StrEnum):
    """What the trust gate logs (house style: events are enum members)."""

    ACCESS_REFUSED = "access-refused"
    PROXY_HEADER_IGNORED = "proxy-cert-header-ignored"
    PROXY_HEADER_INVALID = "proxy-cert-header-invalid"
    AUDIT_FAILED = "audit-write-failed"


@dataclass(frozen=True, slots=True)
class Route:
    """What the gate needs to know of a path: its kind and, for CSD and extraction routes, the region."""

    kind: str  # csd, extraction, probe, other
    region: str | None = None  # None: national (or not region-scoped)
    scoped: bool = False  # the client's regions apply

    @property
    def name(self) -> str:
        return self.kind if self.region is None else f"{self.kind}/{self.region}"


def classify(path: str) -> Route:
    if path in PROBES:
        return Route("probe")
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["csd"]:
        if len(parts) == 1:
            return Route("csd", None, True)
        if len(parts) == 2 and parts[1] != "schemas":
            return Route("csd", parts[1].lower(), True)
        return Route("other")
    if parts[:1] == ["extraction"]:
        if len(parts) == 1:
            return Route("extraction", None, True)
        if len(parts) == 2:
            return Route("extraction", parts[1].lower(), True)
    return Route("other")


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    from bridge.errors import ConfigurationError

    networks = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(f"trusted_proxies: {item!r} is not an address or CIDR") from None
    return tuple(networks)


@dataclass
class TrustPolicy:
    """Everything the gate decides with, built once per process from the settings."""

    allowlist: AllowList | None
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    cert_header: bytes  # lower case
    limiter: RateLimiter
    audit: AuditLog | None

    def trusted_proxy(self, address: str | None) -> bool:
        if address is None or not self.proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)


def build_policy(settings: Settings, *, regions: Iterable[str], functions: Iterable[str]) -> TrustPolicy:
    allowlist = None
    if settings.clients_file is not None:
        allowlist = load_allowlist(settings.clients_file, regions=regions, functions=functions)
    workers = int(getattr(settings, "workers", 1) or 1)  # BRIDGE_WORKERS (operations work), when present
    return TrustPolicy(
        allowlist=allowlist,
        proxies=_networks(settings.trusted_proxies),
        cert_header=settings.client_cert_header.strip().lower().encode("latin-1"),
        limiter=RateLimiter(workers),
        audit=AuditLog(settings.audit_log) if settings.audit_log else None,
    )


def admit_function(function: str) -> None:
    """Refuse (FunctionNotAllowed) a stored function, `modifications` or `extraction` outside the scope of
    the client being answered; no-op without an allow-list."""
    transaction = CURRENT.get()
    client = transaction.admitted if transaction is not None else None
    if client is not None and not client.may_call(function):
        raise AccessRefusedError(
            "FunctionNotAllowed",
            f"refused by the allow-list: client {client.id!r} may not call {function!r} "
            f"(its functions: {', '.join(sorted(client.functions))})",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class TrustGate:
    """Pure ASGI middleware (no body buffering, streaming answers pass through untouched)."""

    def __init__(
        self, app: Any, policy: TrustPolicy, on_refusal: Callable[[str | None, str], None] | None = None
    ) -> None:
        self.app = app
        self.policy = policy
        self.on_refusal = on_refusal  # (client id or None, subcode): the bridge's metrics

    def _certificate(self, scope: Scope, transaction: Transaction) -> PeerCertificate | None:
        state = scope.get("state") or {}
        forwarded = _header(scope, self.policy.cert_header)
        if forwarded is not None:
            if self.policy.trusted_proxy(transaction.remote):
                if not forwarded.strip():
                    return None  # the proxy says: no client certificate
                try:
                    return from_der(der_from_header(forwarded), "proxy")
                except ValueError as error:
                    log.warning("%s from %s: %s", LogEvent.PROXY_HEADER_INVALID, transaction.remote, error)
                    transaction.notes.append("forwarded certificate header unreadable")
                    return None
            log.warning(
                "%s: %s sent by %s, not a trusted proxy",
                LogEvent.PROXY_HEADER_IGNORED,
                self.policy.cert_header.decode(),
                transaction.remote,
            )
            transaction.notes.append("forwarded certificate header ignored: not from a trusted proxy")
        der = state.get(PEER_CERT)
        if isinstance(der, bytes) and der:
            return from_der(der, "tls")
        return None

    def _admit(self, route: Route, certificate: PeerCertificate | None, transaction: Transaction) -> None:
        allowlist = self.policy.allowlist
        if allowlist is None or route.kind == "probe":
            return
        if certificate is None:
            raise AccessRefusedError(
                "NoClientCertificate",
                "refused by the allow-list: no client certificate was presented (every request needs one)",
            )
        client = allowlist.find(certificate.fingerprint)
        if client is None:
            raise AccessRefusedError(
                "UnknownClient",
                f"refused by the allow-list: certificate SHA-256 {certificate.fingerprint} is not listed",
            )
        transaction.admitted = client
        transaction.client = client.id
        transaction.profile = client.profile
        self._scope(route, client)
        if client.rate_per_minute is not None:
            wait = self.policy.limiter.take(client.id, client.rate_per_minute)
            if wait:
                raise RateLimitedError(
                    f"refused by the allow-list: client {client.id!r} is over its rate_per_minute "
                    f"({client.rate_per_minute}); retry in {wait} s",
                    wait,
                )

    @staticmethod
    def _scope(route: Route, client: Client) -> None:
        if route.scoped and not client.may_use_region(route.region):
            asked = route.region or "national"
            raise AccessRefusedError(
                "RegionNotAllowed",
                f"refused by the allow-list: client {client.id!r} may not use region {asked!r} "
                f"(its regions: {', '.join(sorted(client.regions))})",
            )
        if route.kind == "extraction" and not client.may_call(EXTRACTION):
            raise AccessRefusedError(
                "FunctionNotAllowed",
                f"refused by the allow-list: client {client.id!r} may not call 'extraction' "
                f"(its functions: {', '.join(sorted(client.functions))})",
            )

    async def _refuse(self, scope: Scope, send: Any, route: Route, error: AccessRefusedError) -> int:
        headers: list[tuple[bytes, bytes]] = []
        if isinstance(error, RateLimitedError):
            headers.append((b"retry-after", str(error.retry_after_s).encode()))
        if route.kind == "csd" and scope.get("method") == "POST":
            envelope = guess_envelope(_header(scope, b"content-type"), _header(scope, b"soapaction"))
            body, _, content_type = render_fault(error, envelope, None)
        else:
            body = f"{error.http_status} {error.subcode}: {error.reason}\n".encode()
            content_type = "text/plain; charset=utf-8"
        status = error.http_status
        headers += [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = classify(str(scope.get("path", "")))
        state = scope.get("state") or {}
        client_address = scope.get("client")
        remote = state.get(PEER_ADDRESS) or (client_address[0] if client_address else None)
        transaction = Transaction(route=route.name, method=str(scope.get("method")), remote=remote)
        if route.kind in ("csd", "extraction"):
            transaction.region = route.region
        if route.kind == "extraction":
            transaction.function = EXTRACTION
        certificate = self._certificate(scope, transaction)
        if certificate is not None:
            transaction.fingerprint = certificate.fingerprint
            transaction.subject = certificate.subject
            transaction.certificate_source = certificate.source
        refusal: AccessRefusedError | None = None
        try:
            self._admit(route, certificate, transaction)
        except AccessRefusedError as error:
            refusal = error
        tx_token = CURRENT.set(transaction)
        profile_token = ACCESS_PROFILE.set(transaction.profile)
        try:
            if refusal is not None:
                log.warning(
                    "%s %s %s from %s: %s",
                    LogEvent.ACCESS_REFUSED,
                    refusal.subcode,
                    route.name,
                    remote,
                    refusal.reason,
                )
                transaction.status = await self._refuse(scope, send, route, refusal)
                transaction.outcome = f"refused:{refusal.subcode}"
                return

            async def watch(message: Message) -> None:
                if message["type"] == "http.response.start":
                    transaction.status = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, watch)
            except BaseException:
                transaction.outcome = transaction.outcome or "aborted"
                raise
            if transaction.outcome is None:
                status = transaction.status or 500
                transaction.outcome = "answered" if status < 400 else f"http:{status}"
        finally:
            ACCESS_PROFILE.reset(profile_token)
            CURRENT.reset(tx_token)
            outcome = transaction.outcome or ""
            # Refused by the gate, or (FunctionNotAllowed) by the endpoint once the function was known.
            if self.on_refusal is not None and transaction.status in (403, 429) and ":" in outcome:
                self.on_refusal(transaction.client, outcome.partition(":")[2])
            if self.policy.audit is not None and route.kind != "probe":
                try:
                    self.policy.audit.write(transaction)
                except OSError as error:  # the answer was given; losing a line is logged, not raised
                    log.error("%s: %s", LogEvent.AUDIT_FAILED, error)
