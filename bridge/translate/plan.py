"""CSD request → FHIR query plan, from the stored-function registry (mappings/functions.yaml).

translate/: pure mapping engine. A `[name, value]` pair whose placeholder resolves to nothing (an optional
parameter the request did not send) is left out of the query.
"""

from __future__ import annotations

import re

from bridge.errors import InvalidParameterError, UnknownFunctionError
from bridge.model import CsdRequest, FhirQuery, QueryPlan
from bridge.translate.resolvers import RESOLVERS, present_parameters
from bridge.translate.select import needed_matches
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
    if request.params.start is not None and request.params.start < 1:
        raise InvalidParameterError(f"start is 1-based: {request.params.start} is not allowed")
    resolved: dict[str, str | None] = {}

    def value_of(name: str) -> str | None:
        if name not in resolved:
            resolved[name] = RESOLVERS[name](request.params, mappings.identities, mappings.systems)
        return resolved[name]

    def fill(template: str) -> str | None:
        names = _PLACEHOLDER.findall(template)
        values = {name: value_of(name) for name in names}
        if any(value is None for value in values.values()):
            return None
        return _PLACEHOLDER.sub(lambda m: values[m[1]] or "", template)

    # A legacy regional endpoint answers with its own region's data only: the "région source" tag that
    # every national resource carries (ror-fhir-api §3; comma = OR across the codes it covers).
    scope: tuple[tuple[str, str], ...] = ()
    if request.region is not None:
        region = mappings.region(request.region)
        scope = (("_tag", ",".join(f"{mappings.region_tag_system}|{code}" for code in region.region_codes)),)
    queries = []
    for query in spec.queries:
        params = []
        for name, template in query.params:
            value = fill(template)
            if value is not None:
                params.append((name, value))
        queries.append(
            FhirQuery(resource_type=query.resource, params=tuple(params) + scope, purpose=query.purpose)
        )
    return QueryPlan(
        function=spec.urn,
        queries=tuple(queries),
        directories=spec.directories,
        limit=needed_matches(spec, request.params),
    )
