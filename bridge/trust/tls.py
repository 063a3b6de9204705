"""HTTPS for `serve`: the server TLS context (client CA, CRL) and uvicorn protocols exposing the peer.

Part of trust/. uvicorn verifies client certificates but does not hand them to the application
(engineering-notes §6.1): the protocol subclasses below put the peer's DER certificate and the real peer
address (before any X-Forwarded-For rewrite) in a per-connection copy of the ASGI `state`. Everything is
built from plain paths inside each worker (`ssl_context_factory` is a picklable partial), so it holds with
`--workers N`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from bridge.config import Settings
from bridge.errors import ConfigurationError

# Keys of the ASGI scope["state"] the protocols fill in (read by trust/gate.py).
PEER_CERT = "bridge.peer_cert_der"
PEER_ADDRESS = "bridge.peer_address"


def build_server_context(
    cert: Path, key: Path, client_ca: Path | None = None, crl: Path | None = None
) -> ssl.SSLContext:
    """TLS ≥ 1.2 server context; with `client_ca`, client certificates are asked for and verified.

    CERT_OPTIONAL: a certificate that does not chain to `client_ca` (or is revoked in `crl`) fails the
    handshake; a client sending none gets through the handshake and a readable 403 from the application
    (engineering-notes §6.2), except on the probes.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            context.load_verify_locations(cafile=str(client_ca))
            context.verify_mode = ssl.CERT_OPTIONAL
            if crl is not None:
                context.load_verify_locations(cafile=str(crl))
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(f"TLS files: {error}") from None
    if crl is not None and client_ca is None:
        raise ConfigurationError("tls_crl is set without tls_client_ca: there are no client certificates")
    return context


def _context_factory(
    cert: Path, key: Path, client_ca: Path | None, crl: Path | None, _config: Any, _default: Any
) -> ssl.SSLContext:
    return build_server_context(cert, key, client_ca, crl)


def _remember_peer(protocol: Any, transport: asyncio.BaseTransport) -> None:
    """Per-connection copy of the app state with the peer's certificate (DER) and real address."""
    state = dict(protocol.app_state)
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        state[PEER_ADDRESS] = str(peer[0])
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            state[PEER_CERT] = der
    protocol.app_state = state


class PeerH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _remember_peer(self, transport)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
    PROTOCOL = "bridge.trust.tls:PeerH11Protocol"
else:

    class PeerHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            _remember_peer(self, transport)

    PROTOCOL = "bridge.trust.tls:PeerHttpToolsProtocol"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config`: the peer-aware protocol, and TLS when set.

    Strings and a partial of a module function only, so that uvicorn's worker processes rebuild them.
    """
    options: dict[str, Any] = {"http": PROTOCOL}
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigurationError("tls_cert and tls_key go together (both PEM files)")
    if settings.tls_cert is not None and settings.tls_key is not None:
        # Fail at start-up, not at the first connection, when a file is missing or wrong.
        build_server_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.tls_crl)
        factory: Callable[[Any, Any], ssl.SSLContext] = functools.partial(
            _context_factory, settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.tls_crl
        )
        options.update(
            ssl_certfile=str(settings.tls_cert),
            ssl_keyfile=str(settings.tls_key),
            ssl_context_factory=factory,
        )
    elif settings.tls_client_ca is not None or settings.tls_crl is not None:
        raise ConfigurationError("tls_client_ca / tls_crl need tls_cert and tls_key (HTTPS)")
    proxies = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    if proxies:
        options["forwarded_allow_ips"] = proxies
    return options
