"""CSD request → FHIR query plan, from the stored-function registry (mappings/functions.yaml).

translate/: pure mapping engine.
"""

from __future__ import annotations

import re

from bridge.errors import InvalidParameterError, UnknownFunctionError
from bridge.model import CsdRequest, FhirQuery, QueryPlan
from bridge.translate.resolvers import RESOLVERS, present_parameters
from bridge.translate.tables import Mappings

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def to_fhir_plan(mappings: Mappings, request: CsdRequest) -> QueryPlan:
    """The FHIR searches answering a stored-function call (UnknownFunctionError, InvalidParameterError)."""
    if not request.function_urn:
        raise UnknownFunctionError("")
    spec = mappings.function(request.function_urn)
    refused = [name for name in present_parameters(request.params) if name not in spec.parameters]
    if refused:
        # IHE semantics are the AND of the parameters present: ignoring one would widen the answer silently.
        raise InvalidParameterError(
            f"{spec.urn} does not accept {', '.join(refused)} (accepted: {', '.join(spec.parameters)})"
        )
    resolved: dict[str, str] = {}

    def fill(match: re.Match[str]) -> str:
        name = match[1]
        if name not in resolved:
            resolved[name] = RESOLVERS[name](request.params, mappings.identities, mappings.systems)
        return resolved[name]

    # A legacy regional endpoint answers with its own region's data only: the "région source" tag that
    # every national resource carries (ror-fhir-api §3; comma = OR across the codes it covers).
    scope: tuple[tuple[str, str], ...] = ()
    if request.region is not None:
        region = mappings.region(request.region)
        scope = (("_tag", ",".join(f"{mappings.region_tag_system}|{code}" for code in region.region_codes)),)
    queries = tuple(
        FhirQuery(
            resource_type=query.resource,
            params=tuple((name, _PLACEHOLDER.sub(fill, value)) for name, value in query.params) + scope,
            purpose=query.purpose,
        )
        for query in spec.queries
    )
    return QueryPlan(function=spec.urn, queries=queries, directories=spec.directories)
