"""The ROR CSD v2.4 profile's typed extensions: which ones each entity carries and their element order.

Leaf module read by translate/ (tables check rule targets against it) and csd/ (the writer orders the typed
elements by it). Source: the sequences of the profile's extended schema (IHE_ProfilCSD-ExtensionROR_fr-v2.4).
"""

from collections.abc import Mapping
from typing import Final

# `csd:extension/@urn` of the profile's typed extensions. The profile requires the attribute but fixes no
# value: the bridge writes its WSDL's namespace [INFER] (mappings/README.md, "The profile's placement").
URN: Final = "urn:asip:ror:2015"

# Each typed extension's elements, in the order of its schema sequence (repeatable elements repeat in place).
SEQUENCES: Final[Mapping[str, tuple[str, ...]]] = {
    "organisationExtension": (
        "contact", "useName", "healthCareTerritorial", "location", "price", "dropZone", "financialHelpType",
        "accomodationFamily", "nbTemporarySocialeHelpPlace", "nbPermanentSocialHelpPlace",
        "careWithoutPatientApproval", "creationDate", "closingDate", "closingReason", "accessibilityLocation",
        "levelRecourseORSAN",
    ),
    "facilityExtension": (
        "contact", "mailBoxMSS", "finalClosingDate", "creationDate", "typeActivity", "careMode",
        "patientsType", "accommodationCapacity", "crisisAccomodationCapacity", "residentialCapactity",
        "resourcesSkills",
        "equipment", "receptionType", "receptionMode", "takingCareSpeciality", "facilityType", "location",
        "interventionZone", "annualOpenning", "psychiatricSector", "specificAct", "parentFacility",
        "managementType", "maternityHospitalType", "sensitiveUnit",
    ),
    "serviceExtension": ("actFamily",),
    "providerExtension": ("operationalStatus", "mailBoxMSS"),
    "deviceExtension": ("nbInService",),
    "contactPointExtension": ("confidentialityLevel", "record"),
    "operatingHoursExtension": ("operatingHoursType", "record"),
    "nameExtension": ("title",),
    "credentialsExtension": (
        "speciality", "competence", "exclusiveCompetence", "particularSkills", "capacity", "qualificationPAC",
        "DESCNonQualifiant", "complementarySkills", "record",
    ),
}  # fmt: skip

# A typed element that holds one of several repeated things of an entity in its own extension: each occurrence
# opens a new `csd:extension` of its type (providerExtension holds exactly one operationalStatus, and a
# professional has one per situation opérationnelle).
OPENS_EXTENSION: Final[Mapping[str, str]] = {"providerExtension": "operationalStatus"}

# The typed extension of each CSD entity kind (the `extension` element of organization, facility, …).
BY_ENTITY: Final[Mapping[str, str]] = {
    "organization": "organisationExtension",
    "facility": "facilityExtension",
    "service": "serviceExtension",
    "provider": "providerExtension",
    "device": "deviceExtension",
}


def position(extension_type: str, element: str) -> int:
    """Where `element` goes in the sequence of `extension_type`; ValueError when it has no place there."""
    sequence = SEQUENCES.get(extension_type, ())
    if element not in sequence:
        raise ValueError(f"{element!r} is not an element of the ROR v2.4 profile's {extension_type!r}")
    return sequence.index(element)
