"""The serving process imports cryptography only when it reads its first client certificate (issue 13 item 4):
its OpenSSL build is ~7 MiB of RSS that a bridge without a trust circle never pays."""

from __future__ import annotations

import ssl
import subprocess
import sys

import trustme

CHILD = """import sys
import bridge.app, bridge.trust.gate
before = "cryptography" in sys.modules
from bridge.trust.certs import from_der
peer = from_der(bytes.fromhex(sys.argv[1]), "tls")
print(before, "cryptography" in sys.modules, peer.subject, sep="\\n")
"""


def test_cryptography_is_imported_on_the_first_certificate_read() -> None:
    leaf = trustme.CA().issue_cert("sih.example.org")
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    done = subprocess.run(
        [sys.executable, "-c", CHILD, der.hex()], capture_output=True, text=True, check=True, timeout=120
    )
    before, after, subject = done.stdout.splitlines()
    assert before == "False", "the application and its trust gate import no cryptography"
    assert after == "True", "reading a certificate imports it"
    assert "trustme" in subject, f"the certificate was read: {subject!r}"
