"""Shared test fixtures: the reference data folder, the official CSD schema, and a network guard.

No test may reach beyond 127.0.0.1: the guard below refuses any other socket connection.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

# The suite runs the hot path as written, interpreted, whatever `make compiled` left beside it: some tests
# instrument the engine by monkeypatching, which compiled modules do not see. tests/test_hot_path.py builds
# the compiled hot path and runs it (BRIDGE_HOT_PATH=auto in its own processes). Before `bridge` is imported.
os.environ.setdefault("BRIDGE_HOT_PATH", "interpreted")

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference"
OFFICIAL_CSD_2014 = REFERENCE / "csd" / "local" / "CSD-2014.xsd"
OUR_XSD = REPO / "xsd"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # AF_UNIX paths and the like stay on the machine
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may not reach beyond 127.0.0.1 (tried {address!r})")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may not reach beyond 127.0.0.1 (tried {address!r})")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """`../shared/reference`; tests that read it skip cleanly when it is absent."""
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is not present next to the repository")
    return REFERENCE


class Csd2014WithDevices:
    """The official IHE CSD 2014 schema, applied to a document from which the ROR v2.4 profile's additions
    are taken out first — its `deviceDirectory` (after the four IHE directories) and the content of its typed
    extensions (`csd:extension` of urn `urn:asip:ror:2015`, several children where CSD 2014 allows one, and
    the whole extension in operatingHours and in a name, which have none in CSD 2014; the official v2.4
    schema checks them) and the attributes of a name's `honorific` (coded TRE_R11 in the profile, text in
    CSD 2014): every other element of an answer must still be CSD 2014. Same `validate` / `assertValid` /
    `error_log` as an `etree.XMLSchema`."""

    _DEVICES = "{urn:ihe:iti:csd:2013}deviceDirectory"
    _EXTENSION = "{urn:ihe:iti:csd:2013}extension"
    _PROFILE_URN = "urn:asip:ror:2015"
    _HOURS = "{urn:ihe:iti:csd:2013}operatingHours"
    _NAME = "{urn:ihe:iti:csd:2013}name"
    _HONORIFIC = "{urn:ihe:iti:csd:2013}honorific"

    def __init__(self, schema: etree.XMLSchema) -> None:
        self.schema = schema

    def validate(self, document: Any) -> bool:
        root = document.getroot() if isinstance(document, etree._ElementTree) else document
        copy = deepcopy(root)
        for devices in list(copy.iter(self._DEVICES)):
            parent = devices.getparent()
            if parent is not None:
                parent.remove(devices)
        for honorific in copy.iter(self._HONORIFIC):
            for attribute in ("code", "codingScheme"):
                honorific.attrib.pop(attribute, None)
        for extension in list(copy.iter(self._EXTENSION)):
            if extension.get("urn") != self._PROFILE_URN:
                continue
            parent = extension.getparent()
            if parent is not None and parent.tag in (self._HOURS, self._NAME):  # no extension in CSD 2014
                parent.remove(extension)
                continue
            for typed in list(extension):
                extension.remove(typed)
        return bool(self.schema.validate(etree.ElementTree(copy)))

    def assertValid(self, document: Any) -> None:  # noqa: N802 -- etree.XMLSchema's name
        if not self.validate(document):
            raise etree.DocumentInvalid(str(self.schema.error_log))

    @property
    def error_log(self) -> Any:
        return self.schema.error_log


@pytest.fixture(scope="session")
def official_csd_schema() -> Csd2014WithDevices:
    """The official IHE CSD 2014 schema (offline copy in ../shared/reference/csd/local/), the profile's
    deviceDirectory aside (Csd2014WithDevices)."""
    if not OFFICIAL_CSD_2014.is_file():
        pytest.skip("../shared/reference/csd/local/CSD-2014.xsd is not present")
    return Csd2014WithDevices(etree.XMLSchema(etree.parse(str(OFFICIAL_CSD_2014))))


@pytest.fixture(scope="session")
def our_csd_schema() -> etree.XMLSchema:
    """The project's own CSD schema set (xsd/csd.xsd)."""
    return etree.XMLSchema(etree.parse(str(OUR_XSD / "csd.xsd")))


@pytest.fixture(scope="session")
def official_profile() -> Any:
    """ANS's ROR CSD v2.4 profile as a test oracle (schema, Schematron rules, PLATINES assertions): see
    tests/profile/harness.py. Its NOS tables of 2023-06-14 are completed with the simulator code lists'
    newer real codes (`simulator_codes()`); the run's summary lists each code accepted that way. Skips when
    ../shared/reference/ror-v24/ is absent."""
    if not (REFERENCE / "ror-v24" / "local").is_dir():
        pytest.skip("../shared/reference/ror-v24/ is not present")
    from tests.profile.harness import OfficialProfile, simulator_codes

    profile = OfficialProfile(REFERENCE, newer_codes=simulator_codes())
    _PROFILES.append(profile)
    return profile


# The official_profile of the run, kept so that the end of the run can say which codes it accepted only
# from the simulator's newer code lists (tests/profile/harness.py, `newer_codes_report`). Under pytest-xdist
# (`make test`) each worker process has its own: a worker hands its codes over when its session ends, and the
# controller, which prints the summary, gathers them as each worker goes down.
_PROFILES: list[Any] = []
_FROM_WORKERS: dict[str, set[str]] = {}


def _accepted_newer() -> dict[str, set[str]]:
    accepted: dict[str, set[str]] = {key: set(codes) for key, codes in _FROM_WORKERS.items()}
    for profile in _PROFILES:
        for key, codes in profile.accepted_newer.items():
            accepted.setdefault(key, set()).update(codes)
    return accepted


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)  # set in an xdist worker only
    if workeroutput is not None:
        workeroutput["accepted_newer"] = {key: sorted(codes) for key, codes in _accepted_newer().items()}


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown, and never called, without it
def pytest_testnodedown(node: Any, error: Any) -> None:
    for key, codes in getattr(node, "workeroutput", {}).get("accepted_newer", {}).items():
        _FROM_WORKERS.setdefault(key, set()).update(codes)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.profile.harness import newer_codes_report

    lines = newer_codes_report(_accepted_newer())
    if lines:
        terminalreporter.section("official ROR profile: codes accepted from the newer code lists only")
        for line in lines:
            terminalreporter.write_line(line)
