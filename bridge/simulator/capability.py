"""The simulator's CapabilityStatement, generated from what the search engine supports (simulator/).

Shaped like the production one (HAPI FHIR 6.4.4, ror-fhir-api.md §2.1) but listing only this simulator's
interactions, parameters, includes and operations, so a client reading `/metadata` learns exactly what it
may ask; the tables it reads (search.SEARCH_PARAMS, dataset.REFERENCE_PARAMS) are the ones the parser uses.
"""

from __future__ import annotations

from typing import Any

from bridge.simulator import vocab
from bridge.simulator.dataset import REFERENCE_PARAMS, RESOURCE_TYPES
from bridge.simulator.search import SEARCH_PARAMS, SORT_KEYS, revinclude_served

SOFTWARE_NAME = "ror-csd-bridge ROR national API simulator"
SOFTWARE_VERSION = "0.1.0"
BULK_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"


def capability_statement(
    base: str,
    *,
    page_size_default: int,
    page_size_max: int,
    max_results: int = 10_000,
    strict: bool = True,
) -> dict[str, Any]:
    includes = [f"{source}:{param}" for source, param in REFERENCE_PARAMS]
    resources = []
    for rtype in RESOURCE_TYPES:
        search_params = []
        for spec in SEARCH_PARAMS[rtype]:
            modifiers = sorted(m for m in spec.modifiers if m)
            doc = spec.documentation + (
                f" Modifiers: {', '.join(':' + m for m in modifiers)}." if modifiers else ""
            )
            # A parameter served only with a modifier is listed under that name, as the national
            # CapabilityStatement lists `organization.identifier:above`.
            names = [spec.name] if "" in spec.modifiers else [f"{spec.name}:{m}" for m in modifiers]
            search_params += [{"name": name, "type": spec.type, "documentation": doc} for name in names]
        search_params += [
            {
                "name": "_count",
                "type": "number",
                "documentation": f"Page size; default {page_size_default}, capped at {page_size_max}.",
            },
            {"name": "_sort", "type": "special", "documentation": f"One of {', '.join(SORT_KEYS)}."},
        ]
        resources.append(
            {
                "type": rtype,
                "profile": vocab.PROFILE[rtype],
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                # Every include is accepted on every type (and with :iterate); only matching sources add.
                # `_revinclude` only where the national API declares it (strict mode; search.py).
                "searchInclude": includes,
                "searchRevInclude": includes if revinclude_served(rtype, strict=strict) else [],
                "searchParam": search_params,
            }
        )
    unknown = "answered 400 (strict mode)" if strict else "ignored (lenient mode)"
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        # A fixed date: the statement describes this build, not the moment it was asked.
        "date": "2026-01-01",
        "publisher": "ror-csd-bridge",
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "Simulator of the national ROR FHIR API (synthetic data)",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Paging: HAPI-style `_getpages` next links; snapshots expire after a configured time "
                    f"(410 Gone). A search serves its first {max_results} matches only (no next link after "
                    "them) while Bundle.total gives the real count. `_include` / `_revinclude` accept "
                    "`:iterate`; `_revinclude` on the types the national API declares it for (strict mode). "
                    f"Unknown search parameters or modifiers are {unknown}."
                ),
                "resource": resources,
                "operation": [{"name": "export", "definition": BULK_EXPORT}],
            }
        ],
    }
