"""The test oracle for changes since a date: what the simulator's dataset says changed, from its arrays.

Computed independently of the bridge (no translate/ code): meta.lastUpdated arrays, the organisation tree, the
offer → lieu and role → offer / practitioner links, the région source of each entity, and the entityIDs the
bridge must issue (mappings/identities.yaml, reimplemented), in the ROR v2.4 profile's placement: EJ and EG
as organizations, internal organisations (pôle, service, UF) and each offer's unité élémentaire as
facilities, one provider per professional.
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
from tests.expected import device_ids

OI = "https://oi.esante.gouv.fr"
IDNAT = "urn:oid:1.2.250.1.71.4.2.2"


EJ, EG, UE = 0, 1, 5  # Dataset.org_kind


@dataclass(frozen=True)
class Changes:
    """Indexes (into the dataset arrays) of what changed at or after an instant, in one scope: organisations
    (EJ, EG), services (offers), internal organisations and units (offers) as facilities, providers
    (practitioners); `roles`: the situations whose own change or professional or offer reaches their
    organisation chain (TR-Notif)."""

    organizations: npt.NDArray[np.int64]
    services: npt.NDArray[np.int64]
    internal: npt.NDArray[np.int64]
    units: npt.NDArray[np.int64]
    providers: npt.NDArray[np.int64]
    roles: npt.NDArray[np.int64]
    lieux: npt.NDArray[np.int64]  # changed lieux: their équipements are the answer's devices


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
    assert rtype == "Practitioner"  # a provider is its professional (one per RPPS)
    return "urn:ror:rpps:" + _encode(resource["identifier"][0]["value"])


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
    a resource its record shows more of than an entityID: an internal organisation the offers anywhere below
    it (typeActivity, patientsType); a unit (an offer's UE) its lieu; a provider (a professional) its
    practitioner, each of its situations and their offers' names. A parent, an EG named by entityID does not
    change a record. `lieux_and_professionals=False` leaves what units and providers read out (to show it
    matters)."""
    t0 = (since - EPOCH_UTC).total_seconds()
    mask = {rtype: _region_mask(dataset, rtype, region_codes) for rtype in dataset.updated}
    # A change is seen when its resource is in the scope (the delta searches are scoped to the region).
    updated = {rtype: (dataset.updated[rtype] >= t0) & mask[rtype] for rtype in dataset.updated}
    orgs, offers = updated["Organization"], updated["HealthcareService"]
    kind = dataset.org_kind
    # Internal organisations (not EJ, EG nor a v3 UE organisation): their own change or an offer below.
    below = np.zeros(len(kind), dtype=bool)
    changed_offer_positions = np.concatenate(([0], np.cumsum(offers)))
    for i in np.flatnonzero((kind != EJ) & (kind != EG) & (kind != UE)):
        lo, hi = dataset.offers_of_orgs(int(i), int(dataset.org_end[i]))
        below[i] = changed_offer_positions[hi] > changed_offer_positions[lo]
    internal = (kind != EJ) & (kind != EG) & (kind != UE) & (orgs | below)
    units = offers.copy()
    roles = updated["PractitionerRole"].copy()
    if lieux_and_professionals:
        units |= updated["Location"][dataset.offer_location]
        roles |= updated["Practitioner"][dataset.role_practitioner] | offers[dataset.role_offer]
    # A provider merges the situations of its professional: one of them changed, the provider did.
    providers = np.zeros(dataset.count("Practitioner"), dtype=bool)
    providers[dataset.role_practitioner[roles]] = True
    if lieux_and_professionals:
        providers |= updated["Practitioner"]
    in_scope = np.zeros(dataset.count("Practitioner"), dtype=bool)
    in_scope[dataset.role_practitioner[mask["PractitionerRole"]]] = True
    return Changes(
        organizations=np.flatnonzero(orgs & ((kind == EJ) | (kind == EG))),
        services=np.flatnonzero(offers),
        internal=np.flatnonzero(internal & mask["Organization"]),
        units=np.flatnonzero(units & mask["HealthcareService"]),
        providers=np.flatnonzero(providers & in_scope),
        roles=np.flatnonzero(roles & mask["PractitionerRole"]),
        lieux=np.flatnonzero(updated["Location"]),
    )


def searched(
    dataset: Dataset, since: datetime, rtype: str, region_codes: Collection[str] | None = None
) -> int:
    """How many resources of a type the delta search of that type matches (changed, in the scope)."""
    t0 = (since - EPOCH_UTC).total_seconds()
    return int(((dataset.updated[rtype] >= t0) & _region_mask(dataset, rtype, region_codes)).sum())


def chain_starts(dataset: Dataset, found: Changes) -> set[int]:
    """The organisations the chains of the changed entities start at (TR-Notif): a changed organisation (an
    establishment or an internal organisation); an offer's providing organisation (its service or unit
    changed); a situation's organisation (its offer's), the situation changed itself, in its professional or
    its offer (not through the professional's other situations); the children of a changed EJ."""
    starts = {int(i) for i in found.organizations} | {int(i) for i in found.internal}
    starts |= {int(dataset.offer_provider[i]) for i in (*found.services, *found.units)}
    starts |= {int(dataset.offer_provider[dataset.role_offer[i]]) for i in found.roles}
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
        "facilityDirectory": entity_ids(dataset, "Organization", found.internal)
        | entity_ids(dataset, "HealthcareService", found.units),
        "providerDirectory": entity_ids(dataset, "Practitioner", found.providers),
        # the équipements of the changed lieux (a device is made of its lieu alone)
        "deviceDirectory": {d for i in found.lieux for d in device_ids(dataset.build("Location", int(i)))},
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
