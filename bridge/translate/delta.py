"""Changes since a date (ITI-74, establishments-updated-since): what changed, each once, with propagation.

translate/: pure. The queries of a delta function (functions.yaml `delta`) are gathered page by page; the
matches of every query count as changed, and so do its included resources of the types it `propagates`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from bridge.errors import TooManyChangesError
from bridge.model import Resource

if TYPE_CHECKING:
    from bridge.translate.tables import FunctionSpec

# What a delta answer is made of (closed list; functions.yaml `delta`):
# - entities: every changed resource that maps to a CSD entity of the function's directories (ITI-74);
# - organization-chains: the organisation chain (providing organisation, then partOf up to the root) of every
#   changed organisation and offer, for the `establishments` post step (establishments-updated-since).
ENTITIES = "entities"
ORGANIZATION_CHAINS = "organization-chains"
SELECTIONS = (ENTITIES, ORGANIZATION_CHAINS)

# The links of the ROR organisation chain (ror-fhir-api §3): offer → providing organisation → partOf → … → EJ.
_UP = {"Organization": "partOf", "HealthcareService": "providedBy"}


def resource_key(resource: Resource) -> str | None:
    resource_type, logical_id = resource.get("resourceType"), resource.get("id")
    if isinstance(resource_type, str) and isinstance(logical_id, str) and resource_type and logical_id:
        return f"{resource_type}/{logical_id}"
    return None


def _reference_key(reference: object) -> str | None:
    """`Type/id` of a relative or absolute literal reference (a FHIR Reference object)."""
    text = reference.get("reference") if isinstance(reference, Mapping) else None
    if not isinstance(text, str):
        return None
    parts = [p for p in text.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 and parts[-2][:1].isupper() else None


class DeltaCollector:
    """Gathers the pages of a delta plan: every resource once (by `Type/id`), and which of them changed.

    `counted` are the resource types that make CSD entities; when more than `limit` of them have changed,
    `add` raises TooManyChangesError at once, so memory stays bounded by the ceiling and the client is never
    given part of the answer. `region_tags` (`system|code`): a regional request keeps only the changes of
    resources tagged with its "région source" (a propagated resource of another region is not its data).
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        counted: Collection[str],
        limit: int,
        since: str,
        region_tags: Collection[str] | None = None,
    ) -> None:
        self.spec = spec
        self.counted = frozenset(counted)
        self.limit = limit
        self.since = since
        self.region_tags = frozenset(region_tags) if region_tags is not None else None
        self.index: dict[str, Resource] = {}
        self.changed: dict[str, None] = {}  # an ordered set, in the order the changes arrived
        self.count = 0  # changed resources of a counted type

    def add(self, query: int, matches: Sequence[Resource], includes: Sequence[Resource]) -> None:
        """One page of the plan's query number `query`."""
        propagates = self.spec.queries[query].propagates
        for resource in matches:
            self._keep(resource, changed=True)
        for resource in includes:
            self._keep(resource, changed=resource.get("resourceType") in propagates)

    def _keep(self, resource: Resource, *, changed: bool) -> None:
        key = resource_key(resource)
        if key is None:
            return
        self.index.setdefault(key, resource)
        if not changed or key in self.changed or not self._in_region(resource):
            return
        self.changed[key] = None
        if resource.get("resourceType") in self.counted:
            self.count += 1
            if self.count > self.limit:
                raise TooManyChangesError(
                    f"more than {self.limit} entities changed since {self.since}: an answer this large is "
                    "refused rather than cut short. Ask again with a more recent date, or reload the whole "
                    "directory with GET /extraction (or /extraction/{region}) and then ask for the changes "
                    "since that extraction",
                    self.limit,
                )

    def _in_region(self, resource: Resource) -> bool:
        return in_region(resource, self.region_tags)

    def selected(self) -> list[str]:
        """The `Type/id` of the resources the answer is made of (functions.yaml `delta`)."""
        if self.spec.delta == ORGANIZATION_CHAINS:
            return organization_chains(self.changed, self.index)
        return list(self.changed)


def in_region(resource: Resource, region_tags: Collection[str] | None) -> bool:
    """Whether the resource carries one of the "région source" tags (`system|code`); None: any region."""
    if region_tags is None:
        return True
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, Mapping) else None
    return any(
        isinstance(tag, Mapping) and f"{tag.get('system')}|{tag.get('code')}" in region_tags
        for tag in tags or ()
    )


def changed_keys(
    spec: FunctionSpec,
    query: int,
    matches: Sequence[Resource],
    includes: Sequence[Resource],
    region_tags: Collection[str] | None = None,
) -> list[str]:
    """The `Type/id` of what one page of the plan's query number `query` says changed, by the rules
    DeltaCollector applies (the matches, and the includes of a type the query `propagates`; in the region)."""
    propagates = spec.queries[query].propagates
    chosen = [*matches, *(r for r in includes if r.get("resourceType") in propagates)]
    return [
        key
        for resource in chosen
        if (key := resource_key(resource)) is not None and in_region(resource, region_tags)
    ]


def organization_chains(changed: Collection[str], index: Mapping[str, Resource]) -> list[str]:
    """The organisations on the chain of each changed organisation or offer: the organisation itself (an
    offer's providing organisation), then its partOf ancestors among the resources received, each once."""
    chosen: dict[str, None] = {}
    for key in changed:
        resource = index.get(key)
        if resource is None or resource.get("resourceType") not in _UP:
            continue
        current = _reference_key(resource.get(_UP[str(resource["resourceType"])]))
        if resource["resourceType"] == "Organization":
            current = key
        while current is not None and current not in chosen and current in index:
            chosen[current] = None
            current = _reference_key(index[current].get("partOf"))
    return list(chosen)
