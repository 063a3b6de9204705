"""The one error table decides the plain HTTP status of an extraction refused before its first byte from the
error's class (soap/faults.py `plain_status`), never from its text; the SOAP fault of the same class is
unchanged by it."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import (
    ExtractionBusyError,
    IncompleteResultError,
    InvalidParameterError,
    MappingError,
    UnknownFunctionError,
    UnknownRegionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from bridge.fhir.resilience import Deadline
from bridge.http.extraction_routes import extraction_failure
from bridge.soap.faults import fault_spec


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnknownRegionError("atlantis"), 404),
        (InvalidParameterError("the extraction does not accept 'x'"), 400),
        (ExtractionBusyError("2 extraction(s) already running"), 503),
        # The words the old text test looked for, on the wrong classes: the class decides.
        (UpstreamUnavailableError("timeout? no: connection refused, deadline unknown"), 503),
        (UpstreamTimeoutError("no answer"), 504),
        (UpstreamStatusError("refused", status=500), 502),
        (UpstreamProtocolError("not JSON"), 502),
        (IncompleteResultError("missing 3"), 502),
        (UnknownFunctionError("urn:x"), 500),  # a sender error the extraction never raises: internal
        (MappingError("t", "r", "p", "boom"), 500),
        (RuntimeError("a defect"), 500),
    ],
)
def test_the_status_comes_from_the_class(
    error: Exception, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL)
    answer = extraction_failure(error)
    assert answer.status_code == status
    body = bytes(answer.body).decode()
    if status == 500:
        assert body == "the extraction failed: internal error (see the bridge's log)\n"
    if status == 503 and isinstance(error, ExtractionBusyError):
        assert answer.headers["retry-after"] == "60"
        assert "the bridge is busy" in body
    if status in (502, 503, 504) and not isinstance(error, ExtractionBusyError):
        assert body.startswith("extraction not started: the national API")


def test_a_passed_deadline_is_a_gateway_timeout_and_the_same_soap_fault_as_before() -> None:
    deadline = Deadline(0.0)
    with pytest.raises(UpstreamTimeoutError) as raised:
        deadline.check("http://upstream/HealthcareService")
    assert extraction_failure(raised.value).status_code == 504
    # The SOAP fault of a timeout is still the unavailable upstream's (201), whatever the plain status.
    spec = fault_spec(raised.value)
    assert (spec.subcode, spec.number, spec.http_status) == ("UpstreamUnavailable", 201, 500)
