"""The four `ror-bridge compare` modes: replay, archive, documents, shadow-log; and two answers compared.

compare/ (side-by-side comparison). Answers are spooled to temporary files and read back with `iterparse`,
entities kept in the run's on-disk store, so memory stays flat whatever the size; progress goes to a callback.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import orjson
from lxml import etree

from bridge.compare.entities import iter_entities
from bridge.compare.matching import BRIDGE, LEGACY, Counts, Difference, Store
from bridge.compare.rules import CompareRules
from bridge.errors import CompareInputError

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
CSD_ACTION = "urn:ihe:iti:csd:2013:GetCareServicesRequest"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)


@dataclass
class Progress:
    """What a run has done so far, handed to the progress callback."""

    phase: str
    done: int = 0
    total: int = 0
    entities: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


ProgressCallback = Callable[[Progress], None]


def _ignore(_: Progress) -> None:
    return None


# --- requests and answers
def request_function(body: bytes, rules: CompareRules) -> str:
    """The stored function (functions.yaml name) or request kind of a CSD request, SOAP or bare."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return "(not XML)"
    first = root
    if etree.QName(root).localname == "Envelope":
        bodies = [c for c in root if isinstance(c.tag, str) and etree.QName(c).localname == "Body"]
        children = [c for c in bodies[0] if isinstance(c.tag, str)] if bodies else []
        first = children[0] if children else root
    urn = first.get("urn") or ""
    for element in first.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == "function":
            urn = element.get("urn") or element.get("uuid") or urn
            break
    if urn:
        return rules.functions.get(urn, urn)
    name = etree.QName(first).localname
    return "modifications" if name == "getModificationsRequest" else name


def request_headers(body: bytes) -> dict[str, str]:
    """Content-Type (and SOAPAction) matching the request's envelope, as a legacy client sends them."""
    head = body[:4096]
    if SOAP12.encode() in head:
        return {"Content-Type": f'application/soap+xml; charset=utf-8; action="{CSD_ACTION}"'}
    if SOAP11.encode() in head:
        return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{CSD_ACTION}"'}
    return {"Content-Type": "application/xml; charset=utf-8"}


def region_of(url: str) -> str:
    """The legacy region of a bridge URL ending in /csd/{region}, else ''."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    return parts[-1] if len(parts) >= 2 and parts[-2] == "csd" else ""


def answer_problem(status: int, source: str | Path | IO[bytes]) -> str:
    """'' for a usable answer; else why not (HTTP status, SOAP fault and its reason, not XML)."""
    if isinstance(source, str | Path):
        with Path(source).open("rb") as stream:
            return answer_problem(status, stream)
    reason = ""
    try:
        for event, element in etree.iterparse(
            source, events=("start", "end"), resolve_entities=False, no_network=True
        ):
            name = etree.QName(element).localname
            if event == "start" and name in ("CSD", "careServicesResponse", "getModificationsResponse"):
                break
            if event == "end" and name in ("Text", "faultstring"):
                reason = (element.text or "").strip()
            if event == "end" and name == "Fault":
                return f"SOAP fault: {reason[:200]}"
    except etree.XMLSyntaxError as error:
        return f"HTTP {status}, not XML ({error})"
    return f"HTTP {status}" if status >= 400 else ""


def _spool(response: httpx.Response, into: IO[bytes]) -> None:
    for chunk in response.iter_bytes():
        into.write(chunk)
    into.flush()
    into.seek(0)


def _post(client: httpx.Client, url: str, body: bytes, into: IO[bytes]) -> tuple[int, str]:
    """POST a request, spool the answer; (HTTP status or 0, a label for the report)."""
    try:
        with client.stream("POST", url, content=body, headers=request_headers(body)) as response:
            _spool(response, into)
            return response.status_code, str(response.status_code)
    except httpx.HTTPError as error:
        return 0, f"unreachable ({type(error).__name__})"


def _compare_unit(
    store: Store,
    unit: int,
    legacy: IO[bytes] | Path,
    legacy_status: tuple[int, str],
    bridge: IO[bytes] | Path,
    bridge_status: tuple[int, str],
    progress: Progress,
    on_progress: ProgressCallback,
) -> Counts:
    problems = []
    for side, source, (code, label) in (("legacy", legacy, legacy_status), ("bridge", bridge, bridge_status)):
        problem = answer_problem(code, source) if code else label
        if not isinstance(source, Path):
            source.seek(0)
        if problem:
            problems.append(f"{side}: {problem}")
    store.set_status(unit, legacy_status[1], bridge_status[1], "; ".join(problems))
    if problems:
        return Counts()

    def tick() -> None:
        progress.entities += 1
        if progress.entities % 2000 == 0:
            on_progress(progress)

    store.add(unit, LEGACY, iter_entities(legacy, store.rules), tick)
    store.add(unit, BRIDGE, iter_entities(bridge, store.rules), tick)
    return store.settle(unit)


def replay(
    store: Store,
    requests: Path,
    legacy_url: str,
    bridge_url: str,
    *,
    timeout_s: float = 120.0,
    on_progress: ProgressCallback = _ignore,
) -> None:
    """Every request of the folder sent to both services; their answers compared."""
    files = sorted(p for p in requests.iterdir() if p.is_file() and p.suffix == ".xml")
    if not files:
        raise CompareInputError(f"{requests}: no *.xml request in this folder")
    progress = Progress("replay", total=len(files))
    with httpx.Client(timeout=timeout_s) as client:
        for path in files:
            body = path.read_bytes()
            unit = store.new_unit(path.name, request_function(body, store.rules), region_of(bridge_url))
            with tempfile.TemporaryFile() as legacy, tempfile.TemporaryFile() as bridge:
                legacy_status = _post(client, legacy_url, body, legacy)
                bridge_status = _post(client, bridge_url, body, bridge)
                _compare_unit(
                    store, unit, legacy, legacy_status, bridge, bridge_status, progress, on_progress
                )
            progress.done += 1
            on_progress(progress)


def archive(
    store: Store,
    pairs: Path,
    bridge_url: str,
    *,
    timeout_s: float = 120.0,
    on_progress: ProgressCallback = _ignore,
) -> None:
    """Archived legacy exchanges (NAME.request.xml / NAME.response.xml) replayed against the bridge."""
    requests = sorted(pairs.glob("*.request.xml"))
    if not requests:
        raise CompareInputError(f"{pairs}: no NAME.request.xml / NAME.response.xml pair in this folder")
    progress = Progress("archive", total=len(requests))
    with httpx.Client(timeout=timeout_s) as client:
        for path in requests:
            name = path.name.removesuffix(".request.xml")
            answer = path.with_name(f"{name}.response.xml")
            body = path.read_bytes()
            unit = store.new_unit(name, request_function(body, store.rules), region_of(bridge_url))
            if not answer.exists():
                store.set_status(unit, "missing", "", f"legacy: no {answer.name} next to {path.name}")
            else:
                with tempfile.TemporaryFile() as bridge:
                    bridge_status = _post(client, bridge_url, body, bridge)
                    _compare_unit(
                        store, unit, answer, (200, "archived"), bridge, bridge_status, progress, on_progress
                    )
            progress.done += 1
            on_progress(progress)


class _Counting(io.RawIOBase):
    """A file read through, counting bytes for the progress bar."""

    def __init__(self, path: Path, on_read: Callable[[int], None]) -> None:
        self._file = path.open("rb")
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._on_read(len(data))
        return data

    def close(self) -> None:
        self._file.close()
        super().close()


def documents(
    store: Store,
    legacy: Path,
    bridge: Path,
    *,
    function: str = "extraction",
    region: str = "",
    on_progress: ProgressCallback = _ignore,
) -> None:
    """Two csd:CSD documents (each possibly several GB), streamed one after the other."""
    for path in (legacy, bridge):
        if not path.is_file():
            raise CompareInputError(f"{path}: no such file")
    progress = Progress("documents", total=legacy.stat().st_size + bridge.stat().st_size)
    last = [0.0]

    def read(count: int) -> None:
        progress.done += count
        now = time.monotonic()
        if now - last[0] > 0.2:
            last[0] = now
            on_progress(progress)

    def tick() -> None:
        progress.entities += 1

    unit = store.new_unit(f"{legacy.name} vs {bridge.name}", function, region)
    store.set_status(unit, "document", "document")
    for side, path in ((LEGACY, legacy), (BRIDGE, bridge)):
        with _Counting(path, read) as stream:
            store.add(unit, side, iter_entities(stream, store.rules), tick)  # type: ignore[arg-type]
    progress.phase = "matching"
    on_progress(progress)
    store.settle(unit)
    progress.phase = "done"
    on_progress(progress)


# --- shadow mode's records
def compare_answers(
    rules: CompareRules, legacy: bytes, bridge: bytes, *, function: str, region: str = ""
) -> dict[str, Any]:
    """Two in-memory answers compared: the record shadow mode writes (counts, outcomes, differences)."""
    store = Store(rules)
    try:
        unit = store.new_unit("shadow", function, region)
        store.add(unit, LEGACY, iter_entities(io.BytesIO(legacy), rules))
        store.add(unit, BRIDGE, iter_entities(io.BytesIO(bridge), rules))
        counts = store.settle(unit)
        outcomes = []
        for entity in store.drill(limit=10_000_000):
            item: dict[str, Any] = {
                "kind": entity["kind"],
                "region": entity["region"],
                "status": entity["status"],
                "legacy_entity": entity["legacy_entity"],
                "bridge_entity": entity["bridge_entity"],
            }
            if entity["status"] != "equal":
                item["legacy"], item["bridge"] = entity["legacy"], entity["bridge"]
            outcomes.append(item)
        differences = [
            {
                "entity": d["entity"],
                "kind": d["kind"],
                "path": d["path"],
                "legacy": d["legacy"],
                "bridge": d["bridge"],
            }
            for d in store.differences()
        ]
    finally:
        store.close()
    return {"entities": counts.as_json(), "outcomes": outcomes, "differences": differences}


def read_shadow_log(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a shadow log, one JSON object a line; a line that is not one is a clear error."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise CompareInputError(f"{path}:{number}: not a JSON line ({error})") from error
            if not isinstance(record, dict) or "function" not in record:
                raise CompareInputError(f"{path}:{number}: not a shadow-mode record")
            yield record


def shadow_log(store: Store, path: Path, *, on_progress: ProgressCallback = _ignore) -> None:
    """What shadow mode recorded, summarised as one unit per recorded request."""
    if not path.is_file():
        raise CompareInputError(f"{path}: no such file")
    progress = Progress("shadow-log", total=path.stat().st_size)
    for index, record in enumerate(read_shadow_log(path), 1):
        name = f"{record.get('time', '')} #{index}".strip()
        unit = store.new_unit(name, str(record["function"]), str(record.get("region") or ""))
        problem = str(record.get("problem") or "")
        store.set_status(
            unit, str(record.get("legacy_status", "")), str(record.get("bridge_status", "")), problem
        )
        # by entity and kind: two entities of different kinds may share an entityID (a UE facility and its
        # offer's activity service, the ROR v2.4 profile's placement)
        differences: dict[tuple[str, str], list[Difference]] = {}
        for d in record.get("differences") or []:
            differences.setdefault((str(d["entity"]), str(d.get("kind", ""))), []).append(
                Difference(d["path"], d["legacy"], d["bridge"])
            )
        for outcome in record.get("outcomes") or []:
            entity = outcome.get("bridge_entity") or outcome.get("legacy_entity") or ""
            store.add_outcome(
                unit,
                str(outcome["kind"]),
                str(outcome.get("region") or record.get("region") or ""),
                str(outcome["status"]),
                outcome.get("legacy_entity"),
                outcome.get("bridge_entity"),
                differences.get((str(entity), str(outcome["kind"])), [])
                if outcome["status"] == "different"
                else (),
                (outcome.get("legacy"), outcome.get("bridge")),
            )
        progress.done = index
        progress.entities += len(record.get("outcomes") or [])
        on_progress(progress)
