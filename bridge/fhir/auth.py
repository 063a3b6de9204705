"""OAuth2 client credentials for the national API: token cache, renewal before expiry, mTLS (outbound edge).

The ROR's Keycloak realm issues bearer tokens (ror-fhir-api.md §1.2): profile 0 authenticates with a
client secret, profiles 1–4 with an IGC-Santé client certificate (RFC 8705). Secrets are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx
import orjson

from bridge.errors import ConfigurationError, UpstreamStatusError, UpstreamUnavailableError
from bridge.fhir.observe import NULL_OBSERVER, UpstreamObserver

log = logging.getLogger(__name__)

# The ANS Python example renews the token when fewer than 10 s remain (ror-fhir-api.md §1.2); a short-lived
# token (tests, or a strict realm) is renewed at half its life instead.
REFRESH_MARGIN_S = 10.0


class LogEvent(StrEnum):
    TOKEN_ISSUED = "upstream-token-issued"  # noqa: S105  # an event name, not a password
    TOKEN_REJECTED = "upstream-token-rejected"  # noqa: S105  # an event name, not a password


def build_ssl_context(
    ca_bundle: Path | None = None, client_cert: Path | None = None, client_key: Path | None = None
) -> ssl.SSLContext | None:
    """A TLS context with the server CA bundle and the client certificate, or None for the system default.

    Built by hand because httpx 0.28 silently drops `cert=` when `verify` is a path (engineering-notes §6.3).
    """
    if ca_bundle is None and client_cert is None:
        if client_key is not None:
            raise ConfigurationError("a client key was given without a client certificate")
        return None
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle is not None else None)
    if client_cert is not None:
        try:
            context.load_cert_chain(str(client_cert), str(client_key) if client_key is not None else None)
        except (OSError, ssl.SSLError) as exc:
            # The exception names the file only, never its content.
            raise ConfigurationError(f"cannot load the client certificate {client_cert}: {exc}") from None
    return context


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float  # clock seconds

    def __repr__(self) -> str:  # a token in a traceback or a debug log would be a credential leak
        return f"Token(expires_at={self.expires_at:.0f})"


class TokenProvider:
    """Client-credentials tokens from one token endpoint; one request in flight, renewed before expiry."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
        observer: UpstreamObserver | None = None,
    ) -> None:
        self.token_url = token_url
        self._observer = observer or NULL_OBSERVER
        self.client_id = client_id
        self._secret = client_secret  # None with mTLS: the certificate replaces the secret (RFC 8705 §2)
        self._http = http
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.issued = 0  # tokens obtained so far (observability, and tests of single-flight)

    def __repr__(self) -> str:
        return f"TokenProvider(token_url={self.token_url!r}, client_id={self.client_id!r})"

    async def token(self) -> str:
        """A valid bearer token, fetched only when none is cached or the cached one is about to expire."""
        current = self._token
        if current is not None and self._fresh(current):
            return current.value
        async with self._lock:  # one refresh in flight: the others wait for its result
            current = self._token
            if current is None or not self._fresh(current):
                current = self._token = await self._fetch()
            return current.value

    def invalidate(self, rejected: str) -> None:
        """The upstream refused `rejected` (401): forget it unless another task already replaced it."""
        if self._token is not None and self._token.value == rejected:
            log.info("%s: the cached token is dropped", LogEvent.TOKEN_REJECTED)
            self._token = None

    def _fresh(self, token: Token) -> bool:
        return token.expires_at > self._clock()

    async def _fetch(self) -> Token:
        form = {"grant_type": "client_credentials", "client_id": self.client_id}
        if self._secret is not None:
            form["client_secret"] = self._secret
        try:
            response = await self._http.post(
                self.token_url, data=form, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(
                f"token endpoint unreachable ({type(exc).__name__})", request=f"POST {self.token_url}"
            ) from None
        if response.status_code != 200:
            raise UpstreamStatusError(
                "the token endpoint refused the client credentials",
                request=f"POST {self.token_url}",
                status=response.status_code,
                outcome=_oauth_error(response.content),
            )
        try:
            body = orjson.loads(response.content)
            value = str(body["access_token"])
            ttl = float(body.get("expires_in", 60))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamStatusError(
                "the token endpoint answered without an access_token",
                request=f"POST {self.token_url}",
                status=response.status_code,
            ) from None
        margin = min(REFRESH_MARGIN_S, ttl / 2)
        self.issued += 1
        self._observer.token_issued()
        log.info("%s client_id=%s expires_in=%.0fs", LogEvent.TOKEN_ISSUED, self.client_id, ttl)
        return Token(value, self._clock() + ttl - margin)


def _oauth_error(content: bytes) -> str | None:
    """RFC 6749 §5.2 `error` (and description) of a token endpoint refusal."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or "error" not in body:
        return None
    description = body.get("error_description")
    return f"{body['error']}: {description}" if description else str(body["error"])
