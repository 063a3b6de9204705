"""Liveness, readiness and metrics: GET /healthz, /readyz, /metrics.

Part of the HTTP surface (`bridge/http/`): readiness asks the national API (fhir/ probe), metrics are
bridge/metrics.py's exposition.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from bridge.http.wiring import Wiring

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def router(wiring: Wiring) -> APIRouter:
    """The three operations routes."""
    client, metrics = wiring.client, wiring.metrics
    routes = APIRouter()

    @routes.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @routes.get("/readyz")
    async def readyz() -> Response:
        # An authenticated probe outside the retry policy and the breaker: it never opens the breaker,
        # and a national API that refuses this deployment's credentials is "not ready".
        if client.breaker.is_cooling_down():
            reason = "circuit breaker open: the national API failed repeatedly"
            return JSONResponse({"status": "not ready", "upstream": reason}, status_code=503)
        try:
            await client.probe()
        except Exception as error:  # any upstream failure means "not ready"
            reason = getattr(error, "reason", type(error).__name__)
            status = getattr(error, "status", None)
            if status is not None:
                reason = f"{reason} (HTTP {status})"
            return JSONResponse({"status": "not ready", "upstream": reason}, status_code=503)
        return JSONResponse(
            {"status": "ready", "upstream": "reachable, credentials accepted", "mappings": "loaded"}
        )

    @routes.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    return routes
