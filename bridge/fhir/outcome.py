"""Reading the national API's error answers: OperationOutcome text and `Retry-After` (outbound edge)."""

from __future__ import annotations

import orjson


def outcome_text(content: bytes) -> str | None:
    """The diagnostics of an OperationOutcome body, if that is what the server sent."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in body.get("issue") or ():
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                texts.append(str(text))
    return "; ".join(texts) or None


def retry_after_s(value: str | None) -> float | None:
    """Seconds of a `Retry-After` header (RFC 9110 §10.2.3 delta-seconds; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
