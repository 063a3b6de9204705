"""What the simulator's dataset holds for an extraction: the oracle of the extraction tests.

Computed from the dataset itself, never through the bridge: the offers of the scope (région-source tag) and
champ d'activité, their providing organisations and the whole `partOf` chain, their lieux, and the
practitioner roles of those offers (the "offre complète" / `_myCompleteExtract` set), placed as the ROR v2.4
profile places them (EJ / EG organisations; internal organisations and UEs facilities; one provider per
professional).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any
from urllib.parse import quote

from lxml import etree

from bridge import ns
from bridge.model import Directory
from bridge.simulator.dataset import Dataset
from bridge.translate import Mappings

Resource = dict[str, Any]


def resources(dataset: Dataset, resource_type: str) -> Iterator[Resource]:
    for index in range(dataset.count(resource_type)):
        resource = dataset.get(resource_type, dataset.id_of(resource_type, index))
        assert resource is not None
        yield resource


EQUIPMENT = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-location-equipment"


def device_ids(lieu: dict[str, Any]) -> list[str]:
    """The entityIDs of a lieu's équipements (mappings/README.md, reimplemented): urn:ror:equipement: +
    `<lieu identifier>/<TRE_R212 code>[/<rank among that code>]`, percent-encoded; none without a type."""
    codes = [
        [c["code"] for c in part["valueCodeableConcept"]["coding"][:1]]
        for e in lieu.get("extension", [])
        if e.get("url") == EQUIPMENT
        for part in e.get("extension", [])
        if part.get("url") == "equipmentType"
    ]
    keys = [c[0] for c in codes if c]
    out = []
    for n, key in enumerate(keys):
        rank = f"/{keys[:n].count(key) + 1}" if keys.count(key) > 1 else ""
        out.append(
            "urn:ror:equipement:" + quote(f"{lieu['identifier'][0]['value']}/{key}{rank}", safe="-._~")
        )
    return out


def _ref(reference: dict[str, Any] | None) -> str | None:
    return reference.get("reference") if isinstance(reference, dict) else None


def expected_entities(
    dataset: Dataset,
    mappings: Mappings,
    *,
    region_codes: Collection[str] | None = None,
    champs: Collection[str] | None = None,
) -> dict[Directory, set[str]]:
    """entityIDs per directory for a scope (None = national) and a champ filter (None = every champ)."""
    offers = {}
    for offer in resources(dataset, "HealthcareService"):
        tags = {t["code"] for t in offer["meta"].get("tag", ())}
        codes = {c["code"] for t in offer.get("type", ()) for c in t.get("coding", ())}
        if region_codes is not None and not tags & set(region_codes):
            continue
        if champs is not None and not codes & set(champs):
            continue
        offers[f"HealthcareService/{offer['id']}"] = offer
    organizations: dict[str, Resource] = {}
    locations: dict[str, Resource] = {}
    for offer in offers.values():
        key = _ref(offer.get("providedBy"))
        while key is not None and key not in organizations:
            parent = dataset.get(*key.split("/"))
            assert parent is not None
            organizations[key] = parent
            key = _ref(parent.get("partOf"))
        for place in offer.get("location", ()):
            key = _ref(place)
            assert key is not None
            found = dataset.get(*key.split("/"))
            assert found is not None
            locations[key] = found
    roles = [
        role
        for role in resources(dataset, "PractitionerRole")
        if any(_ref(r) in offers for r in role.get("healthcareService", ()))
    ]

    def ids(found: Collection[Resource]) -> set[str]:
        return {mappings.identities.derive(r)[0] for r in found}

    # The ROR v2.4 profile's placement: EJ and EG are organisations; pôles, services and UFs facilities, and
    # every offer a UE facility (its lieu inside it); a v3 organisation typed UE is written as no entity; one
    # provider per professional.
    internal = [o for o in organizations.values() if _is_internal(o)]
    practitioners = []
    for role in roles:
        key = _ref(role.get("practitioner"))
        found = dataset.get(*key.split("/")) if key is not None else None
        if found is not None:
            practitioners.append(found)
    return {
        Directory.ORGANIZATION: ids([o for o in organizations.values() if o not in internal]),
        Directory.SERVICE: ids(list(offers.values())),
        Directory.FACILITY: ids([o for o in internal if not _is_unit(o)]) | ids(list(offers.values())),
        Directory.PROVIDER: ids(practitioners),
        # the équipements of the lieux the offers are given at (entities/device.yaml)
        Directory.DEVICE: {d for lieu in locations.values() for d in device_ids(lieu)},
    }


OI_SYSTEM = "https://oi.esante.gouv.fr"
R207 = "TRE_R207"


def _is_internal(organization: Resource) -> bool:
    """An internal organisation: the OI identifier, or a TRE_R207 type (the IG's slices)."""
    return any(i.get("system") == OI_SYSTEM for i in organization.get("identifier", ())) or any(
        R207 in str(c.get("system")) for t in organization.get("type", ()) for c in t.get("coding", ())
    )


def _is_unit(organization: Resource) -> bool:
    """A v3 organisation typed unité élémentaire (TRE_R207 #4)."""
    return any(
        R207 in str(c.get("system")) and c.get("code") == "4"
        for t in organization.get("type", ())
        for c in t.get("coding", ())
    )


def entity_ids(document: bytes) -> dict[Directory, list[str]]:
    """entityIDs per directory of a `csd:CSD` document, in document order (repeats kept)."""
    root = etree.fromstring(document, etree.XMLParser(huge_tree=True, resolve_entities=False))
    assert root.tag == ns.qn(ns.CSD, "CSD")
    found = {}
    for directory in Directory:
        element = root.find(ns.qn(ns.CSD, directory.value))
        assert element is not None, f"{directory.value} is missing"
        found[directory] = [str(child.get("entityID")) for child in element]
    return found


def answer_csd(answer: etree._Element) -> etree._Element:
    """The one CSD of an answer: `csd:CSD` (bare, ITI-74), or the ROR v2.4 profile's
    `careServicesResponse/result/queryResult` (of type CSD) as a standalone `csd:CSD` copy, so that it
    validates as a document."""
    found = answer.xpath("//csd:CSD | //csd:queryResult", namespaces={"csd": ns.CSD})
    assert isinstance(found, list)
    assert len(found) == 1, f"{len(found)} CSD documents in the answer"
    element = found[0]
    assert isinstance(element, etree._Element)
    if etree.QName(element).localname == "CSD":
        return element
    copy = etree.fromstring(etree.tostring(element))
    copy.tag = ns.qn(ns.CSD, "CSD")
    return copy
