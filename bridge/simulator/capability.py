"""The simulator's CapabilityStatement, generated from what the search engine supports (simulator/).

Shaped like the production one (HAPI FHIR 6.4.4, ror-fhir-api.md §2.1) but listing only this simulator's
interactions and parameters, so a client reading `/metadata` learns exactly what it may ask.
"""

from __future__ import annotations

from typing import Any

from bridge.simulator import codes
from bridge.simulator.dataset import REFERENCE_PARAMS, RESOURCE_TYPES
from bridge.simulator.search import SEARCH_PARAMS

SOFTWARE_NAME = "ror-csd-bridge ROR national API simulator"
SOFTWARE_VERSION = "0.1.0"


def capability_statement(base: str, *, page_size_default: int, page_size_max: int) -> dict[str, Any]:
    includes = [f"{source}:{param}" for source, param in REFERENCE_PARAMS]
    resources = []
    for rtype in RESOURCE_TYPES:
        search_params = [
            {"name": spec.name, "type": spec.type, "documentation": spec.documentation}
            for spec in SEARCH_PARAMS[rtype]
        ]
        search_params += [
            {
                "name": "_count",
                "type": "number",
                "documentation": f"Page size; default {page_size_default}, capped at {page_size_max}.",
            },
        ]
        resources.append(
            {
                "type": rtype,
                "profile": codes.PROFILE[rtype],
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchInclude": includes,
                "searchRevInclude": includes,
                "searchParam": search_params,
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        # A fixed date: the statement describes this build, not the moment it was asked.
        "date": "2026-01-01",
        "publisher": "ror-csd-bridge",
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "Simulator of the national ROR FHIR API (synthetic data, open access)",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Paging: HAPI-style `_getpages` next links, snapshots expire after a configured time "
                    "(410 Gone). `_include` / `_revinclude` accept `:iterate`."
                ),
                "resource": resources,
            }
        ],
    }
