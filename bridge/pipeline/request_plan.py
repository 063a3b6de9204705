"""What one CSD request asks, resolved once per request: the stored function, its parameters, the region's
"région source" tags, and the label metrics and traces name it by.

Pipeline level (`bridge/pipeline/`): the CSD route makes it (translate/plan.py resolves), the trust circle
admits its function, the transaction (transaction.py) plans its FHIR queries from it; nothing resolves the
function or checks the region a second time.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.model import CsdRequest, RequestParams
from bridge.translate import FunctionSpec, Mappings
from bridge.translate.plan import function_of, region_tags


@dataclass(frozen=True, slots=True)
class TransactionPlan:
    """One request's function (functions.yaml entry) and the parameters its resolvers read (for ITI-74 its
    `lastModified` as the typed, time-zone-aware `params.since`), and the region's tags (None: national)."""

    request: CsdRequest
    spec: FunctionSpec
    params: RequestParams
    region_tags: tuple[str, ...] | None

    @property
    def label(self) -> str:
        """The bounded `function` label: the last part of the function's canonical URN."""
        return self.spec.urn.rsplit(":", 1)[-1]


def scope_of(mappings: Mappings, region: str | None) -> tuple[str, ...] | None:
    """The one check of a `/csd/{region}` (UnknownRegionError): its "région source" tags; None: national."""
    return region_tags(mappings, region)


def plan_transaction(
    mappings: Mappings, request: CsdRequest, tags: tuple[str, ...] | None
) -> TransactionPlan:
    """The request's function resolved once (UnknownFunctionError, UnsupportedRequestError,
    InvalidParameterError for a missing ITI-74 `lastModified`), for the region whose tags `scope_of` gave."""
    spec, params = function_of(mappings, request)
    return TransactionPlan(request, spec, params, tags)
