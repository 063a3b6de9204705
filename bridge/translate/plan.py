"""CSD request → FHIR query plan, from the stored-function registry (mappings/functions.yaml).

translate/: pure mapping engine. A `[name, value]` pair whose placeholder resolves to nothing (an optional
parameter the request did not send) is left out of the query.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.errors import InvalidParameterError, UnknownFunctionError, UnsupportedRequestError
from bridge.model import CsdRequest, FhirQuery, QueryPlan, RequestParams, Since, Transaction
from bridge.translate.delta import feed_directories
from bridge.translate.feeds import back_params
from bridge.translate.resolvers import RESOLVERS, extra_value, present_parameters, read_since
from bridge.translate.select import needed_matches
from bridge.translate.tables import FunctionSpec, Mappings, Region

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# A "changed since" instant later than now by more than this is refused [INFER]: it can only be a client
# error (nothing has changed in the future); the margin absorbs a client clock slightly ahead of ours.
FUTURE_MARGIN = timedelta(minutes=5)


def function_of(mappings: Mappings, request: CsdRequest) -> tuple[FunctionSpec, RequestParams]:
    """The functions.yaml entry answering a request, and the parameters its resolvers read.

    ITI-74 is the `modifications` entry; its `lastModified` is the parameters' typed `since` (a time without
    offset read in `request_timezone`, searched in UTC).
    """
    if request.transaction is Transaction.MODIFICATIONS:
        spec = mappings.modifications
        if spec is None:
            raise UnsupportedRequestError(
                "ITI-74 getModificationsRequest is not served: functions.yaml has no `modifications` entry"
            )
        if request.last_modified is None:
            raise InvalidParameterError("getModificationsRequest/lastModified is required (xs:dateTime)")
        # functions.yaml defaults.request_timezone [INFER]
        return spec, RequestParams(since=Since.at(request.last_modified, mappings.timezone, wall_clock=False))
    if request.selector is not None:  # ROR v2.4 profile: functions.yaml `official`
        return mappings.official_function(request.function_urn, request.selector), request.params
    if not request.function_urn:
        raise UnknownFunctionError("")
    return mappings.function(request.function_urn), request.params


def to_fhir_plan(mappings: Mappings, request: CsdRequest, *, now: datetime | None = None) -> QueryPlan:
    """The FHIR searches answering a stored-function call or an ITI-74 request (UnknownFunctionError,
    InvalidParameterError). `now` (default: the current time) decides what "in the future" means."""
    spec, params = function_of(mappings, request)
    return plan_queries(mappings, spec, params, region_tags(mappings, request.region), now=now)


def plan_queries(
    mappings: Mappings,
    spec: FunctionSpec,
    params: RequestParams,
    tags: tuple[str, ...] | None,
    *,
    now: datetime | None = None,
) -> QueryPlan:
    """The FHIR searches of a function already resolved (`function_of`) for a scope already checked
    (`region_tags`): what a caller that resolved them once gives, instead of the request."""
    refused = [name for name in present_parameters(params) if name not in spec.parameters]
    if refused:
        # IHE semantics are the AND of the parameters present: ignoring one would widen the answer silently.
        raise InvalidParameterError(
            f"{spec.urn} does not accept {', '.join(refused)} (accepted: {', '.join(spec.parameters)})"
        )
    if extra_value(params, "restrictedOrganisation") == "true" and mappings.access.restriction is None:
        raise InvalidParameterError(
            "restrictedOrganisation=true (the ROR v2.4 profile's restricted answer, RG_ALIM_015) is not "
            "served: the mapping tables' access-profiles.yaml has no restricted-organisation section"
        )
    if params.start is not None and params.start < 1:
        raise InvalidParameterError(f"start is 1-based: {params.start} is not allowed")
    # The "changed since" instant, typed once for every resolver (ITI-74's came typed from `function_of`).
    params = replace(params, since=read_since(params, mappings.timezone))
    if spec.delta is not None and params.since is not None:  # else the resolver says which one is missing
        _refuse_future(params.since, now or datetime.now(UTC))
    resolved: dict[str, str | None] = {}

    def value_of(name: str) -> str | None:
        if name not in resolved:
            resolved[name] = RESOLVERS[name](params, mappings.identities, mappings.systems)
        return resolved[name]

    def fill(template: str) -> str | None:
        names = _PLACEHOLDER.findall(template)
        values = {name: value_of(name) for name in names}
        if any(value is None for value in values.values()):
            return None
        return _PLACEHOLDER.sub(lambda m: values[m[1]] or "", template)

    # A legacy regional endpoint answers with its own region's data only: the "région source" tag that
    # every national resource carries (ror-fhir-api §3; comma = OR across the codes it covers).
    scope = (("_tag", ",".join(tags)),) if tags is not None else ()
    queries = []
    for query in spec.queries:
        pairs = []
        for name, template in query.params:
            value = fill(template)
            if value is not None:
                pairs.append((name, value))
        if spec.delta is not None:
            # With what changed, the entities whose records read it (derived from the entity tables).
            directories = feed_directories(spec.delta, spec.directories)
            pairs += [p for p in back_params(mappings, directories, query.resource) if p not in pairs]
        queries.append(
            FhirQuery(resource_type=query.resource, params=tuple(pairs) + scope, purpose=query.purpose)
        )
    # A search around a point: the answer states each lieu's distance from it (calculatedDistance).
    point = resolved.get("near_point")
    origin = None
    if point:
        latitude, longitude = point.split("|")[:2]
        origin = (float(latitude), float(longitude))
    return QueryPlan(
        function=spec.urn,
        queries=tuple(queries),
        directories=spec.directories,
        limit=needed_matches(spec, params),
        result=spec.result,
        origin=origin,
    )


def region_tags(mappings: Mappings, region: str | None) -> tuple[str, ...] | None:
    """The `system|code` "région source" tags of a legacy regional endpoint; None for the national one."""
    if region is None:
        return None
    return tags_of(mappings, mappings.region(region))


def tags_of(mappings: Mappings, region: Region) -> tuple[str, ...]:
    """The `system|code` "région source" tags of a legacy regional endpoint already found (checked once)."""
    return tuple(f"{mappings.region_tag_system}|{code}" for code in region.region_codes)


def _refuse_future(since: Since, now: datetime) -> None:
    when = since.instant
    if when > now + FUTURE_MARGIN:
        raise InvalidParameterError(
            f"the date of the last update {when.isoformat()} is in the future (now {now.isoformat()}): "
            "send the instant of your previous update"
        )
