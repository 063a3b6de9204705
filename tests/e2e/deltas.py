"""The test oracle for changes since a date: what the simulator's dataset says changed, from its arrays.

Computed independently of the bridge (no translate/ code): meta.lastUpdated arrays, the organisation tree, the
offer → lieu and role → offer / practitioner links, the région source of each entity, and the entityIDs the
bridge must issue (mappings/identities.yaml, reimplemented).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from bridge.simulator.dataset import EPOCH_UTC, Dataset

OI = "https://oi.esante.gouv.fr"
IDNAT = "urn:oid:1.2.250.1.71.4.2.2"


@dataclass(frozen=True)
class Changes:
    """Indexes (into the dataset arrays) of what changed at or after an instant, in one scope."""

    organizations: npt.NDArray[np.int64]
    services: npt.NDArray[np.int64]
    facilities: npt.NDArray[np.int64]
    providers: npt.NDArray[np.int64]


def _encode(value: str) -> str:
    return quote(value, safe="-._~")


def entity_id(resource: dict[str, Any]) -> str:
    """The entityID the bridge must issue for a simulator resource (identities.yaml, reimplemented)."""
    rtype = resource["resourceType"]
    identifiers = {i.get("system"): i["value"] for i in resource.get("identifier", [])}
    if rtype == "Organization":
        if OI in identifiers:
            return "urn:ror:oi:" + _encode(identifiers[OI])
        return "urn:ror:idnatstruct:" + _encode(identifiers[IDNAT])
    if rtype == "HealthcareService":
        return "urn:ror:offre:" + _encode(resource["identifier"][0]["value"])
    if rtype == "Location":
        return "urn:ror:lieu:" + _encode(resource["identifier"][0]["value"])
    assert rtype == "PractitionerRole"
    assert not resource.get("identifier")  # simulator roles carry none: the FHIR-id fallback
    return f"urn:ror:fhir:PractitionerRole/{_encode(resource['id'])}"


def _region_mask(dataset: Dataset, rtype: str, region_codes: Collection[str] | None) -> npt.NDArray[np.bool_]:
    if region_codes is None:
        return np.ones(dataset.count(rtype), dtype=bool)
    wanted = [n for n, code in enumerate(dataset.lists.regions.codes) if code.code in region_codes]
    return np.isin(dataset.derived(f"region:{rtype}"), wanted)


def changes(
    dataset: Dataset,
    since: datetime,
    region_codes: Collection[str] | None = None,
    *,
    lieux_and_professionals: bool = True,
) -> Changes:
    """ITI-74 semantics: an entity whose record changed, i.e. its own meta.lastUpdated >= since, or that of
    a resource its record shows more of than an entityID: a lieu lists the offers given there (name, hours);
    a provider (situation opérationnelle) carries its practitioner and its offer's name. A parent, a providing
    organisation or a lieu named by entityID does not change a record.
    `lieux_and_professionals=False` leaves what lieux and providers read out (to show it matters)."""
    t0 = (since - EPOCH_UTC).total_seconds()
    updated = {rtype: dataset.updated[rtype] >= t0 for rtype in dataset.updated}
    orgs = updated["Organization"]
    offers = updated["HealthcareService"]
    lieux = updated["Location"].copy()
    roles = updated["PractitionerRole"].copy()
    if lieux_and_professionals:
        lieux[dataset.offer_location[offers]] = True
        roles |= updated["Practitioner"][dataset.role_practitioner] | offers[dataset.role_offer]
    return Changes(
        organizations=np.flatnonzero(orgs & _region_mask(dataset, "Organization", region_codes)),
        services=np.flatnonzero(offers & _region_mask(dataset, "HealthcareService", region_codes)),
        facilities=np.flatnonzero(lieux & _region_mask(dataset, "Location", region_codes)),
        providers=np.flatnonzero(roles & _region_mask(dataset, "PractitionerRole", region_codes)),
    )


def chain_starts(dataset: Dataset, found: Changes) -> set[int]:
    """The organisations the chains of the changed entities start at (TR-Notif): a changed organisation; an
    offer's providing organisation; a lieu's managing organisation (its EG); a provider's organisation (its
    offer's); the children of a changed EJ (their reading holds it)."""
    starts = {int(i) for i in found.organizations}
    starts |= {int(dataset.offer_provider[i]) for i in found.services}
    starts |= {int(dataset.loc_eg[i]) for i in found.facilities}
    starts |= {int(dataset.offer_provider[dataset.role_offer[i]]) for i in found.providers}
    roots = {int(i) for i in found.organizations if int(dataset.org_parent[i]) < 0}
    starts |= {int(i) for i in np.flatnonzero(np.isin(dataset.org_parent, list(roots)))} if roots else set()
    return starts


def entity_ids(dataset: Dataset, rtype: str, indexes: npt.NDArray[np.int64]) -> set[str]:
    return {entity_id(dataset.build(rtype, int(i))) for i in indexes}


def expected_modifications(
    dataset: Dataset, since: datetime, region_codes: Collection[str] | None = None
) -> dict[str, set[str]]:
    """Directory local name → the entityIDs an ITI-74 answer must hold, exactly."""
    found = changes(dataset, since, region_codes)
    return {
        "organizationDirectory": entity_ids(dataset, "Organization", found.organizations),
        "serviceDirectory": entity_ids(dataset, "HealthcareService", found.services),
        "facilityDirectory": entity_ids(dataset, "Location", found.facilities),
        "providerDirectory": entity_ids(dataset, "PractitionerRole", found.providers),
        "deviceDirectory": set(),  # equipment is not mapped to devices yet
    }


def expected_establishments(
    dataset: Dataset,
    since: datetime,
    region_codes: Collection[str] | None = None,
    *,
    lieux_and_professionals: bool = True,
) -> set[str]:
    """The EJ and EG on the chain of every changed entity (chain_starts)."""
    found = changes(dataset, since, region_codes, lieux_and_professionals=lieux_and_professionals)
    starts = chain_starts(dataset, found)
    establishments: set[int] = set()
    for org in starts:
        chain = [org]
        while int(dataset.org_parent[chain[-1]]) >= 0:
            chain.append(int(dataset.org_parent[chain[-1]]))
        establishments.update(chain[-2:])  # the EJ (root) and the EG under it; an EJ alone for an EJ
    return {entity_id(dataset.build("Organization", i)) for i in establishments}


def closed_offers(dataset: Dataset, indexes: npt.NDArray[np.int64], today: date) -> set[str]:
    """EntityIDs of the offers whose notAvailable[closingReopeningDate] has started and not ended."""
    closed = set()
    for i in indexes:
        offer = dataset.build("HealthcareService", int(i))
        for slot in offer.get("notAvailable", []):
            during = slot.get("during", {})
            start = date.fromisoformat(during["start"])
            end = date.fromisoformat(during["end"]) if "end" in during else None
            if slot.get("id") == "closingReopeningDate" and start <= today and (end is None or end > today):
                closed.add(entity_id(offer))
    return closed
