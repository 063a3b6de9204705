"""The hostile corpus (tests/fixtures/hostile/cases.yaml) against a real bridge over HTTP, case by case.

Each case: the right status and fault subcode (or plain-text error) with its reason, in bounded time, without
any connection to a 127.0.0.1 listener the payloads point at, without file content, stack trace, internal
path or secret in the answer, and with the server healthy afterwards.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml
from lxml import etree

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from tests.server import running_server

HOSTILE = Path(__file__).resolve().parent.parent / "fixtures" / "hostile"
CASES: list[dict[str, Any]] = yaml.safe_load((HOSTILE / "cases.yaml").read_text(encoding="utf-8"))
MARKER = "MARKER-7f3c-hostile-file-content"
SECRET = "s3cret-never-in-an-answer"
BODY_TIMEOUT_S = 1.0
MEDIA = {
    "soap12": {"Content-Type": "application/soap+xml; charset=utf-8"},
    "soap11": {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    "json": {"Content-Type": "application/json"},
    "none": {},
}
# What must never be in an answer: Python stack traces, paths of this machine, configuration secrets.
LEAKS = ("Traceback", 'File "', "site-packages", "/work/", str(HOSTILE.parent), "[build-system]", "root:x:0")


@dataclass
class Hostile:
    url: str
    upstream: list[str]  # URLs the bridge asked of the national API (the in-process simulator)
    marker_file: Path
    listener: socket.socket

    def connections(self) -> int:
        count = 0
        self.listener.setblocking(False)
        while True:
            try:
                connection, _ = self.listener.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    marker_file = tmp_path_factory.mktemp("hostile") / "marker.txt"
    marker_file.write_text(MARKER, encoding="utf-8")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    settings = load_settings(
        demo_scale=60,
        demo_seed=3,
        max_request_bytes=65536,
        request_body_timeout_s=BODY_TIMEOUT_S,
        upstream_client_secret=SECRET,
        mapping_workers=0,
    )
    app = create_app(settings)
    upstream: list[str] = []

    async def record(request: httpx.Request) -> None:
        upstream.append(str(request.url))

    async def ignore(_: httpx.Response) -> None:
        return None

    app.state.upstream.client.add_event_hooks(record, ignore)
    with running_server(app) as url:
        yield Hostile(url, upstream, marker_file, listener)
    listener.close()


def _payload(case: dict[str, Any], hostile: Hostile) -> bytes:
    raw = (HOSTILE / case["file"]).read_bytes()
    port = str(hostile.listener.getsockname()[1]).encode()
    return raw.replace(b"@@MARKER_FILE@@", str(hostile.marker_file).encode()).replace(b"@@PORT@@", port)


def _slow_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send the headers and a first slice of the body, then trickle nothing: a slow-loris client."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n"
        sock.sendall(head.encode() + body[:50])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"Envelope>"):
                break
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _send(case: dict[str, Any], hostile: Hostile) -> tuple[int, bytes, dict[str, str]]:
    if "path" in case:
        response = httpx.get(hostile.url + case["path"], timeout=30)
        return response.status_code, response.content, dict(response.headers)
    headers = MEDIA[case.get("media", "soap12")]
    body = _payload(case, hostile)
    send = case.get("send")
    if send == "slow":
        status, content = _slow_post(hostile.url + "/csd", body, headers)
        return status, content, {}
    if send == "chunked":

        def pieces() -> Iterator[bytes]:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        response = httpx.post(hostile.url + "/csd", content=pieces(), headers=headers, timeout=30)
    else:
        response = httpx.post(hostile.url + "/csd", content=body, headers=headers, timeout=30)
    return response.status_code, response.content, dict(response.headers)


def _fault(content: bytes) -> tuple[str, str]:
    """(subcode, reason) of a SOAP 1.2 or 1.1 fault of the bridge."""
    root = etree.fromstring(content)
    subcode = root.xpath("string(//*[local-name()='error']/@subcode)")
    reason = root.xpath("string(//*[local-name()='Reason']/*[local-name()='Text'] | //faultstring)")
    return str(subcode), str(reason)


def _query_names(url: str) -> list[str]:
    return sorted(name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_the_corpus_has_at_least_sixty_hostile_cases() -> None:
    assert len(CASES) >= 60
    files = {case["file"] for case in CASES if "file" in case}
    assert files <= {path.name for path in HOSTILE.iterdir()}
    # Every hostile file of the folder is used by a case (the benign baseline and the table excepted).
    unused = (
        {p.name for p in HOSTILE.iterdir()}
        - files
        - {"README.md", "cases.yaml", "benign-organization-search.xml"}
    )
    assert not unused


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{n:02d}-{c.get('file') or c['path']}-{c.get('send', '')}" for n, c in enumerate(CASES)],
)
def test_hostile_case(case: dict[str, Any], hostile: Hostile) -> None:
    before = len(hostile.upstream)
    started = time.perf_counter()
    status, content, headers = _send(case, hostile)
    elapsed = time.perf_counter() - started
    bound = BODY_TIMEOUT_S + 4 if case.get("send") == "slow" else 5
    assert elapsed < bound, f"took {elapsed:.1f} s"
    assert status == case["status"], content[:300]
    text = content.decode("utf-8", "replace")
    kind = case["subcode"]
    if kind == "answer":
        root = etree.fromstring(content)
        csd = f"{{{ns.CSD}}}CSD"
        assert root.tag == csd or root.find(f".//{csd}") is not None or "careServicesResponse" in text
    elif kind == "text":
        assert headers.get("content-type", "").startswith(("text/plain", "application/json")), headers
        if case.get("reason"):
            assert case["reason"] in text
    else:
        subcode, reason = _fault(content)
        assert subcode == kind, reason
        assert case["reason"] in reason
    assert MARKER not in text
    assert SECRET not in text
    for leak in LEAKS:
        assert leak not in text, leak
    assert len(content) < 64 * 1024 or kind == "answer"  # a fault never grows with the request
    assert hostile.connections() == 0
    if case.get("inject"):
        _check_injection(case, hostile, hostile.upstream[before:])
    assert httpx.get(hostile.url + "/healthz", timeout=5).status_code == 200


def _check_injection(case: dict[str, Any], hostile: Hostile, calls: list[str]) -> None:
    """The injected text adds no parameter to the upstream query, and its FHIR separators are escaped."""
    before = len(hostile.upstream)
    benign = (HOSTILE / "benign-organization-search.xml").read_bytes()
    assert httpx.post(hostile.url + "/csd", content=benign, headers=MEDIA["soap12"]).status_code == 200
    baseline = hostile.upstream[before:]
    assert calls
    assert [_query_names(url) for url in calls] == [_query_names(url) for url in baseline], case["file"]
    usual = {value for url in baseline for _, value in parse_qsl(urlsplit(url).query)}
    injected = [v for url in calls for _, v in parse_qsl(urlsplit(url).query) if v not in usual]
    assert injected  # the hostile text reached the query, as one value of the same parameter
    for value in injected:
        assert not re.search(r"(?<!\\)[,|$]", value), value  # FHIR separators escaped
