"""The bridge's exception tree; each class maps to one SOAP fault and HTTP status, in `soap/faults.py`.

Leaf module, importable by every part::

    BridgeError
    ├── SenderError                    the client's request is wrong       → soap:Sender, HTTP 400
    │   ├── RequestTooLargeError       body over the byte cap
    │   ├── RequestTimeoutError        body not received in time (slow-loris)
    │   ├── MalformedXmlError          not well-formed, DTD, entities, parser limits
    │   ├── UnsupportedMediaTypeError  neither XML nor SOAP
    │   ├── UnsupportedRequestError    Body child is not a CSD request, or a required part is missing
    │   ├── UnknownFunctionError       stored-function URN not in mappings/functions.yaml
    │   ├── InvalidParameterError      a requestParams value the function cannot use
    │   ├── UnknownEntityError         a ROR v2.4 reading names an entity that does not exist
    │   ├── UnknownRegionError         /csd/{region} not in mappings/regions.csv
    │   ├── MustUnderstandError        header block with mustUnderstand="1" we do not process
    │   ├── VersionMismatchError       unknown SOAP envelope namespace
    │   └── AccessRefusedError         the trust circle refuses the caller (its subcode; HTTP 403)
    │       └── RateLimitedError       the caller is over its rate_per_minute (HTTP 429, Retry-After)
    ├── ReceiverError                  the bridge or the national API failed → soap:Receiver, HTTP 500
    │   ├── UpstreamError              the national API failed (status, OperationOutcome text, request)
    │   │   ├── UpstreamUnavailableError   connection refused / reset, breaker open
    │   │   │   └── UpstreamTimeoutError   no answer in time, or the transaction's deadline passed
    │   │   ├── UpstreamStatusError        an HTTP error status
    │   │   ├── UpstreamProtocolError      malformed JSON or Bundle, broken paging
    │   │   └── IncompleteResultError      the answer cannot be made complete
    │   ├── MappingError               a mapping rule failed on real data (table, rule, path)
    │   └── ExtractionBusyError        as many extractions as allowed are running (HTTP 503, Retry-After)
    ├── ConfigurationError             bad settings or mapping tables at start-up (never reaches a client)
    │   ├── MappingTableError          a mapping table is invalid (table, rule, path)
    │   └── CompareRulesError          mappings/compare.yaml is invalid
    ├── CompareInputError              `ror-bridge compare` cannot read one of its inputs
    ├── CatalogueError (ValueError)    `ror-bridge selftest`'s scenario file is not a valid catalogue
    ├── PathSyntaxError (ValueError)   a mapping table's source path does not parse (translate/paths.py)
    ├── TransformError                 a named transform met data it cannot map (→ MappingError)
    ├── SimulatorError (ValueError)    the ROR simulator refuses (it stands for the national API)
    │   ├── SearchError                a search it refuses: HTTP 400 with an OperationOutcome
    │   └── FaultSpecError             a fault spec that does not parse
    └── ResultCapError                 fhir/'s signal that a walk hit the national API's result cap: the
                                       window splitter (fhir/cap_windows.py) splits it; never reaches a client
"""

from __future__ import annotations

from datetime import datetime


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SenderError(BridgeError):
    """The request is at fault; the client must change it."""


class RequestTooLargeError(SenderError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than the {limit}-byte limit")
        self.limit = limit


class RequestTimeoutError(SenderError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"request body not received within {seconds:g} s")
        self.seconds = seconds


class MalformedXmlError(SenderError):
    pass


class UnsupportedMediaTypeError(SenderError):
    pass


class UnsupportedRequestError(SenderError):
    pass


class UnknownFunctionError(SenderError):
    def __init__(self, urn: str) -> None:
        super().__init__(f"unknown stored function {urn!r}")
        self.urn = urn


class InvalidParameterError(SenderError):
    pass


class UnknownEntityError(SenderError):
    """The ROR v2.4 profile's readings name one entity: none found is the client's error, not an empty
    answer."""

    def __init__(self, what: str, identifier: str) -> None:
        super().__init__(f"no {what} with identifier {identifier!r}")
        self.identifier = identifier


class UnknownRegionError(SenderError):
    def __init__(self, region: str) -> None:
        super().__init__(f"unknown region {region!r}")
        self.region = region


class MustUnderstandError(SenderError):
    def __init__(self, header: str) -> None:
        super().__init__(f"header block {header} is marked mustUnderstand but is not understood")
        self.header = header


class VersionMismatchError(SenderError):
    def __init__(self, namespace: str) -> None:
        super().__init__(f"unsupported SOAP envelope namespace {namespace!r}")
        self.namespace = namespace


class AccessRefusedError(SenderError):
    """The trust circle (bridge/trust/) refuses the caller; `subcode` names the rule (FunctionNotAllowed…)."""

    http_status = 403

    def __init__(self, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.subcode = subcode


class RateLimitedError(AccessRefusedError):
    """The caller exceeded its `rate_per_minute`; it may retry after `retry_after_s` seconds."""

    http_status = 429

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__("RateLimited", reason)
        self.retry_after_s = retry_after_s


class ReceiverError(BridgeError):
    """The bridge or the national API failed; the same request may succeed later."""


class UpstreamError(ReceiverError):
    """The national API did not give a usable answer."""

    def __init__(
        self,
        reason: str,
        *,
        request: str | None = None,
        status: int | None = None,
        outcome: str | None = None,
    ) -> None:
        parts = [reason]
        if status is not None:
            parts.append(f"HTTP {status}")
        if outcome:
            parts.append(f"OperationOutcome: {outcome}")
        if request:
            parts.append(f"request: {request}")
        super().__init__("; ".join(parts))
        self.request = request
        self.status = status
        self.outcome = outcome


class UpstreamUnavailableError(UpstreamError):
    pass


class UpstreamTimeoutError(UpstreamUnavailableError):
    """The national API did not answer in time, or the transaction's deadline passed (a gateway timeout)."""


class UpstreamStatusError(UpstreamError):
    pass


class UpstreamProtocolError(UpstreamError):
    pass


class IncompleteResultError(UpstreamError):
    pass


class MappingError(ReceiverError):
    def __init__(self, table: str, rule: str, path: str, problem: str) -> None:
        super().__init__(f"{table}: rule {rule!r} at {path}: {problem}")
        self.table = table
        self.rule = rule
        self.path = path
        self.problem = problem

    def __reduce__(self) -> tuple[type[MappingError], tuple[str, str, str, str]]:
        # Raised in a mapping worker process (pipeline/workers.py), it comes back to the parent pickled.
        return type(self), (self.table, self.rule, self.path, self.problem)


class ExtractionBusyError(ReceiverError):
    """As many extractions as allowed are running; the client should retry later (HTTP 503)."""


class ConfigurationError(BridgeError):
    pass


class MappingTableError(ConfigurationError):
    def __init__(self, table: str, rule: str | None, path: str | None, problem: str) -> None:
        where = table
        if rule:
            where += f": rule {rule!r}"
        if path:
            where += f" at {path}"
        super().__init__(f"{where}: {problem}")
        self.table = table
        self.rule = rule
        self.path = path


class CompareRulesError(ConfigurationError):
    """`mappings/compare.yaml` (or a table it names) is invalid: the message names the file and the key."""


class CompareInputError(BridgeError):
    """`ror-bridge compare` cannot read one of its inputs (not XML, no CSD in it, a missing pair file…)."""


class ResultCapError(BridgeError):
    """A search walk hit the national API's result cap (`total` announced, or exactly the cap received): the
    caller splits the query into `_lastUpdated` windows (fhir/cap_windows.py), cut at `dates` (the truncated
    page's meta.lastUpdated, `cap_windows.sample`) when they sample the window. Internal to fhir/."""

    def __init__(self, total: int | None, dates: tuple[datetime, ...] = ()) -> None:
        super().__init__(f"truncated (total {total})")
        self.total = total
        self.dates = dates


class CatalogueError(BridgeError, ValueError):
    """The scenario file of `ror-bridge selftest` is not a valid catalogue (names the scenario and the
    problem)."""


class PathSyntaxError(BridgeError, ValueError):
    """The text is not a valid source path; the message says where. The table loader reports it as a
    MappingTableError."""


class TransformError(BridgeError):
    """A transform met data it cannot map; the engine reports it as MappingError(table, rule, path, …)."""


class SimulatorError(BridgeError, ValueError):
    """The ROR simulator (bridge/simulator/) refuses what it was asked; it never reaches a CSD client."""


class SearchError(SimulatorError):
    """A search the simulator refuses: HTTP 400 with an OperationOutcome naming the parameter."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code  # OperationOutcome.issue.code


class FaultSpecError(SimulatorError):
    """A fault spec that does not parse: the CLI exits 2, the header gets a 400 OperationOutcome."""
