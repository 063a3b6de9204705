"""Changes since a date (ITI-74, establishments-updated-since): what changed, each once.

translate/: pure. The queries of a delta function (functions.yaml `delta`) search what changed; the matches of
every query are the changed resources, and the entities to report are derived from the tables (feeds.py:
those whose record reads a changed resource for its content), then completed (bridge/pipeline/changes.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bridge.model import Directory, Resource

# What a delta answer is made of (closed list; functions.yaml `delta`), and the post step each one takes
# (the answer is written from a disk spool, bridge/pipeline/changes.py, which implements both):
# - entities: every changed resource that maps to a CSD entity of the function's directories (ITI-74);
# - organization-chains: the organisation chain (providing organisation, then partOf up to the root) of every
#   changed organisation and offer, of which the `establishments` step keeps the EJ and EG
#   (establishments-updated-since).
ENTITIES = "entities"
ORGANIZATION_CHAINS = "organization-chains"
SELECTIONS = (ENTITIES, ORGANIZATION_CHAINS)
POST_STEP: dict[str, str | None] = {ENTITIES: None, ORGANIZATION_CHAINS: "establishments"}


def feed_directories(delta: str, directories: Collection[Directory]) -> frozenset[Directory]:
    """The directories whose records decide what changed: the function's own (ITI-74), or for
    organization-chains every directory but deviceDirectory (an establishment changed when an entity of its
    offer did). A device is in a reading only as the équipement of a UE's lieu, which the UE's record reads
    for its content (entities/unit.yaml `location`): a changed lieu already reports the UE's chain, and the
    lieu's own managingOrganization is not where a reading writes its devices (tests/translate/test_delta.py
    checks the unit table still reads every resource a device is made of)."""
    if delta == ORGANIZATION_CHAINS:
        return frozenset(Directory) - {Directory.DEVICE}
    return frozenset(directories)


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


def links(resource: Resource) -> list[tuple[str, str]]:
    """(element, `Type/id`) of each literal reference of the resource's top-level Reference elements."""
    out: list[tuple[str, str]] = []
    for element, value in resource.items():
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, Mapping) and (key := _reference_key(item)) is not None:
                out.append((element, key))
    return out


def chain_parent(resource: Resource) -> str | None:
    """`Type/id` of the next link up the organisation chain: an organisation's `partOf`, an offer's
    `providedBy` (its providing organisation); None for other types or when absent."""
    element = _UP.get(str(resource.get("resourceType")))
    return _reference_key(resource.get(element)) if element is not None else None
