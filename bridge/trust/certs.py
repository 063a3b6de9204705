"""Client certificates as the trust circle sees them: DER → SHA-256 fingerprint and subject; proxy headers.

Part of trust/. Matching is by the SHA-256 of the DER certificate only; the subject is for the audit log.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from cryptography import x509

MAX_HEADER_BYTES = 16 * 1024  # a forwarded PEM larger than this is refused unread


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """One client certificate: fingerprint (64 hex, lower case), subject (RFC 4514), where it came from."""

    fingerprint: str
    subject: str
    source: str  # "tls" (this server's handshake) or "proxy" (a trusted proxy's header)


def _certificate(der: bytes) -> x509.Certificate:
    """The certificate read from its DER (ValueError when it is not one). cryptography is imported on the
    first certificate: its OpenSSL build costs the serving process ~7 MiB of RSS, which a bridge that never
    sees a client certificate does not pay (issue 13 item 4)."""
    from cryptography import x509

    return x509.load_der_x509_certificate(der)


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@lru_cache(maxsize=1024)  # the same few client certificates come back on every request
def subject_of(der: bytes) -> str:
    """The subject as an RFC 4514 string, or "" when the DER cannot be read (it is then never admitted)."""
    try:
        return _certificate(der).subject.rfc4514_string()
    except ValueError:
        return ""


def from_der(der: bytes, source: str) -> PeerCertificate:
    return PeerCertificate(fingerprint(der), subject_of(der), source)


def der_from_header(value: str) -> bytes:
    """The DER of a URL-encoded PEM (nginx `$ssl_client_escaped_cert`); ValueError when it is not one.

    Also accepts a PEM whose newlines a proxy replaced with spaces or tabs (Apache, older nginx).
    """
    if len(value) > MAX_HEADER_BYTES:
        raise ValueError("forwarded certificate header too large")
    text = unquote(value).strip()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    if not text.startswith(begin) or end not in text:
        raise ValueError("forwarded certificate header is not a PEM certificate")
    body = text[len(begin) : text.index(end)]
    pem = f"{begin}\n{''.join(body.split())}\n{end}\n"
    try:
        der = ssl.PEM_cert_to_DER_cert(pem)
        _certificate(der)
    except ValueError as error:
        raise ValueError(f"forwarded certificate header is not a readable certificate: {error}") from None
    return der
