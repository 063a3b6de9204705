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

from bridge.simulator.dataset import EPOCH_UTC, K_EG, K_EJ, K_POLE, K_SERVICE, K_UF, Dataset

OI = "https://oi.esante.gouv.fr"
IDNAT = "urn:oid:1.2.250.1.71.4.2.2"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"


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
    if rtype == "Practitioner":
        return "urn:ror:rpps:" + _encode(identifiers[RPPS])
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
    """ITI-74 semantics: own meta.lastUpdated >= since; an offer also when its lieu, an organisation of its
    chain, one of its roles or a role's practitioner changed; a role also when its practitioner changed; a
    lieu also when an offer given there changed itself or through its organisation chain.
    `lieux_and_professionals=False` leaves the lieu and role propagation out (to show it matters)."""
    t0 = (since - EPOCH_UTC).total_seconds()
    updated = {rtype: dataset.updated[rtype] >= t0 for rtype in dataset.updated}
    orgs = updated["Organization"]
    chain = orgs.copy()  # the organisation or an ancestor changed (parents come first: depth-first ids)
    for i in range(len(chain)):
        parent = int(dataset.org_parent[i])
        if parent >= 0 and chain[parent]:
            chain[i] = True
    roles = updated["PractitionerRole"] | updated["Practitioner"][dataset.role_practitioner]
    offers = updated["HealthcareService"] | chain[dataset.offer_provider]
    # A lieu's record lists the offers given there: it changed when one of them did (own data or chain).
    lieux = updated["Location"].copy()
    lieux[dataset.offer_location[offers]] = True
    if lieux_and_professionals:
        offers |= updated["Location"][dataset.offer_location]
        offers[dataset.role_offer[roles]] = True
    return Changes(
        organizations=np.flatnonzero(orgs & _region_mask(dataset, "Organization", region_codes)),
        services=np.flatnonzero(offers & _region_mask(dataset, "HealthcareService", region_codes)),
        facilities=np.flatnonzero(lieux & _region_mask(dataset, "Location", region_codes)),
        providers=np.flatnonzero(roles & _region_mask(dataset, "PractitionerRole", region_codes)),
    )


def entity_ids(dataset: Dataset, rtype: str, indexes: npt.NDArray[np.int64]) -> set[str]:
    return {entity_id(dataset.build(rtype, int(i))) for i in indexes}


def expected_modifications(
    dataset: Dataset, since: datetime, region_codes: Collection[str] | None = None
) -> dict[str, set[str]]:
    """Directory local name → the entityIDs an ITI-74 answer must hold, exactly."""
    found = changes(dataset, since, region_codes)
    # The ROR v2.4 profile's placement: EJ / EG organisations; pôles, services, UFs and every offer (its UE)
    # facilities (a lieu is inside its offers' UEs; its change is its offers'); a v3 UE organisation no
    # entity; one provider per professional.
    kinds = dataset.org_kind[found.organizations]
    establishments = found.organizations[np.isin(kinds, (K_EJ, K_EG))]
    internal = found.organizations[np.isin(kinds, (K_POLE, K_SERVICE, K_UF))]
    practitioners = np.unique(dataset.role_practitioner[found.providers])
    return {
        "organizationDirectory": entity_ids(dataset, "Organization", establishments),
        "serviceDirectory": entity_ids(dataset, "HealthcareService", found.services),
        "facilityDirectory": entity_ids(dataset, "Organization", internal)
        | entity_ids(dataset, "HealthcareService", found.services),
        "providerDirectory": entity_ids(dataset, "Practitioner", practitioners),
        "deviceDirectory": set(),  # equipment is not mapped to devices yet
    }


def expected_establishments(
    dataset: Dataset,
    since: datetime,
    region_codes: Collection[str] | None = None,
    *,
    lieux_and_professionals: bool = True,
) -> set[str]:
    """The EJ and EG of every changed organisation and of the provider of every changed offer."""
    found = changes(dataset, since, region_codes, lieux_and_professionals=lieux_and_professionals)
    starts = {int(i) for i in found.organizations} | {int(dataset.offer_provider[i]) for i in found.services}
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
