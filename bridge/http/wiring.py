"""The objects the HTTP routes answer with, built once by `bridge.app.create_app` from the settings.

Part of the HTTP surface (`bridge/http/`): the routes receive this, never the settings' raw values to build
something from.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from bridge.compare.shadow import Shadow
from bridge.config import Settings
from bridge.fhir.client import FhirClient
from bridge.metrics import Metrics
from bridge.pipeline.cache import ExtractionCache
from bridge.pipeline.extraction import Extractor
from bridge.pipeline.transaction import Pipeline
from bridge.tracing import Tracing
from bridge.translate import Mappings

# The media type of every XML answer that is not SOAP (the WSDL, schemas, extraction documents).
XSD_MEDIA_TYPE = "application/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Wiring:
    """What `create_app` built: the routes' only way to the pipeline, the upstream and the operations."""

    settings: Settings
    mappings: Mappings
    metrics: Metrics
    tracing: Tracing
    client: FhirClient  # the national API (readiness)
    pipeline: Pipeline
    extractor: Extractor
    shadow: Shadow | None
    caches: Mapping[int | None, ExtractionCache]  # per access profile (None: the deployment's own)
    in_flight: set[AsyncGenerator[bytes, None]]  # answers still streaming (graceful shutdown)
