"""Access control of the ROR simulator (simulator/): OAuth2 token endpoint, bearer and `Ror-*` checks, mTLS.

Like the national API (ror-fhir-api.md §1.2–1.3); with TLS and a CA, a client certificate replaces the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from bridge.simulator.bundle import error_response

TOKEN_PATH = "/auth/realms/ror/protocol/openid-connect/token"  # noqa: S105 (a URL path; ror-fhir-api.md §1.1)
ROR_HEADERS = (  # ror-fhir-api.md §1.3: mandatory on every FHIR call
    "Ror-Profil-Utilisateur-Code",
    "Ror-Profil-Utilisateur-System",
    "Ror-Role-Metier-Code",
    "Ror-Role-Metier-System",
)
CERT_STATE_KEY = "client_cert_der"  # set by CertH11Protocol in each request's scope["state"]
MAX_FORM_BYTES = 16_384


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenStore:
    """Issues and checks bearer tokens: HS256 JWTs carrying `exp`, signed with a key of this instance.

    JWT-shaped because the ANS Python example decodes the token's `exp` to renew it before it expires
    (ror-fhir-api.md §1.2). `clock` (wall-clock seconds) is replaceable so tests age tokens without sleeping.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if ttl_s <= 0:
            raise ValueError("token_ttl_s must be > 0")
        self.ttl_s = ttl_s
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._revoked: set[str] = set()

    def issue(self, client_id: str) -> dict[str, Any]:
        """The token endpoint's JSON answer for `client_id` (Keycloak field names)."""
        now = self.clock()
        claims = {
            "exp": int(now + self.ttl_s),
            "iat": int(now),
            "jti": secrets.token_hex(16),
            "azp": client_id,
            "typ": "Bearer",
        }
        head = _b64url(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        body = _b64url(orjson.dumps(claims))
        signature = _b64url(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return {
            "access_token": f"{head}.{body}.{signature}",
            "token_type": "Bearer",
            "expires_in": int(self.ttl_s),
            "refresh_expires_in": 0,
            "not-before-policy": 0,
            "scope": "",
        }

    def _claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this store signed, or None (forged or malformed)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        head, body, signature = parts
        expected = _b64url(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            claims = orjson.loads(_b64url_decode(body))
        except (binascii.Error, ValueError):
            return None
        return claims if isinstance(claims, dict) else None

    def check(self, token: str) -> str | None:
        """None when the token is valid now; otherwise why it is not (for `error_description`)."""
        claims = self._claims(token)
        if claims is None:
            return "The access token is not valid"
        if claims.get("jti") in self._revoked or self.clock() >= claims.get("exp", 0):
            return "The access token expired"
        return None

    def expire(self, token: str) -> None:
        """Treat a token as expired from now on (the `token-expiry` fault)."""
        claims = self._claims(token)
        if claims is not None:
            self._revoked.add(str(claims.get("jti")))


def cert_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, lower-case hex: the allow-list key (engineering-notes §6.1–6.2)."""
    return hashlib.sha256(der).hexdigest()


def normalise_fingerprint(text: str) -> str:
    """`AB:CD:…` or `abcd…` → `abcd…` (openssl prints colon-separated upper case)."""
    value = text.replace(":", "").strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return value


class TokenEndpoint:
    """ASGI app of `POST /auth/realms/ror/protocol/openid-connect/token` (grant_type=client_credentials).

    Client authentication, in order: an allow-listed client certificate (mTLS, RFC 8705), then
    `client_id`/`client_secret` in the form or in HTTP Basic (RFC 6749 §2.3.1). Errors follow RFC 6749 §5.2.
    """

    def __init__(self, store: TokenStore, clients: Mapping[str, str], certs: Mapping[str, str]) -> None:
        self.store = store
        self.clients = dict(clients)
        self.certs = {normalise_fingerprint(fp): client for fp, client in certs.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._answer(scope, receive)
        response.headers["Cache-Control"] = "no-store"
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Response:
        if scope.get("method") != "POST":
            return _oauth_error(405, "invalid_request", "use POST")
        body = await _read_body(receive, MAX_FORM_BYTES)
        if body is None:
            return _oauth_error(413, "invalid_request", "form too large")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        basic = _basic_credentials(Headers(scope=scope).get("authorization", ""))
        if basic is not None:
            client_id, secret = basic
        der = scope.get("state", {}).get(CERT_STATE_KEY)
        if isinstance(der, bytes):
            certified = self.certs.get(cert_fingerprint(der))
            if certified is not None and client_id in (None, certified):
                return JSONResponse(self.store.issue(certified))
        if client_id is not None and secret is not None:
            expected = self.clients.get(client_id)
            if expected is not None and hmac.compare_digest(expected.encode(), secret.encode()):
                return JSONResponse(self.store.issue(client_id))
        return _oauth_error(401, "invalid_client", "Invalid client or Invalid client credentials")


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class AccessMiddleware:
    """ASGI middleware of the simulator's FHIR app: bearer token (401) then the four `Ror-*` headers (403).

    `GET …/metadata` stays open, so readiness probes and clients can discover the server before they hold a
    token ([INFER] as HAPI servers usually allow the CapabilityStatement; the ROR docs say nothing).
    """

    def __init__(self, app: ASGIApp, store: TokenStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        if scope["type"] != "http" or path.rstrip("/") == "/metadata":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers) -> Response | None:
        auth = headers.get("authorization", "")
        if auth[:7].lower() != "bearer " or not auth[7:].strip():
            response = error_response(401, "Missing bearer token (Authorization: Bearer …)", code="login")
            response.headers["WWW-Authenticate"] = 'Bearer realm="ror"'
            return response
        problem = self.store.check(auth[7:].strip())
        if problem is not None:
            response = error_response(401, problem, code="login")
            response.headers["WWW-Authenticate"] = (
                f'Bearer realm="ror", error="invalid_token", error_description="{problem}"'
            )
            return response
        for name in ROR_HEADERS:
            if not headers.get(name, "").strip():
                return error_response(403, f"Missing mandatory header {name}", code="forbidden")
        return None


class WithTokenEndpoint:
    """The simulator's server root: the token endpoint at `TOKEN_PATH`, everything else to `app`."""

    def __init__(self, app: ASGIApp, endpoint: TokenEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == TOKEN_PATH:
            await self.endpoint(scope, receive, send)
            return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------------------------
# mTLS: uvicorn puts no TLS information in the scope (engineering-notes §6.1, encode/uvicorn#400, #3132);
# this protocol subclass (h11; the TLS server runs with it) copies the peer certificate into a per-connection
# copy of the app state, which uvicorn copies into each request's scope["state"].


def _with_peer_cert(app_state: dict[str, Any], transport: Any) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return app_state
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return app_state
    return {**app_state, CERT_STATE_KEY: der}


class CertH11Protocol(H11Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.app_state = _with_peer_cert(self.app_state, transport)
