"""Code systems, identifier systems and profile canonicals of the ROR simulator (simulator/).

Code lists are read from the CSV files under `data/` (sources named in `data/README.md`); the constants
below are fixed by the ROR IG profiles and examples (docs/ror-fhir-api.md §3, §4).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

NOS = "https://mos.esante.gouv.fr/NOS"
IG_SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition"


def _tre(name: str) -> str:
    """Canonical URL of a NOS TRE: `…/NOS/TRE_Rnn-Name/FHIR/TRE-Rnn-Name` (IG aliases.fsh pattern)."""
    return f"{NOS}/{name}/FHIR/{name.replace('_', '-')}"


# Code systems (IG aliases.fsh; docs/ror-fhir-api.md §4)
TRE_R30_REGION = _tre("TRE_R30-RegionOM")
TRE_R207_TYPE_OI = _tre("TRE_R207-TypeOrganisationInterne")
TRE_R227_CHAMP_ACTIVITE = _tre("TRE_R227-ChampActivite")
TRE_R211_ACTIVITE_OPERATIONNELLE = _tre("TRE_R211-ActiviteOperationnelle")
TRE_R213_MODE_PRISE_EN_CHARGE = _tre("TRE_R213-ModePriseEnCharge")
TRE_R210_ACTE_SPECIFIQUE = _tre("TRE_R210-ActeSpecifique")
TRE_R66_CATEGORIE_ETABLISSEMENT = _tre("TRE_R66-CategorieEtablissement")
TRE_R72_STATUT_JURIDIQUE = _tre("TRE_R72-FinessStatutJuridique")
TRE_G15_PROFESSION_SANTE = _tre("TRE_G15-ProfessionSante")
TRE_R23_MODE_EXERCICE = _tre("TRE_R23-ModeExercice")
TRE_R343_FONCTION_LIEU = _tre("TRE_R343-FonctionLieu")
# The IG Location example says TRE_R13-Commune; the query examples use TRE_R13-CommuneOM (ror-fhir-api.md §4).
TRE_R13_COMMUNE = _tre("TRE_R13-CommuneOM")
# Contacts of EJ / EG (ROROrganization.contact): nature, confidentiality level (of the contact and of each
# telecom) and communication channel.
TRE_R287_NATURE_CONTACT = _tre("TRE_R287-NatureContact")
TRE_R283_NIVEAU_CONFIDENTIALITE = _tre("TRE_R283-NiveauConfidentialite")
TRE_R200_CANAL_COMMUNICATION = _tre("TRE_R200-CanalCommunication")
EXT_CONTACT_CONFIDENTIALITY = f"{IG_SD}/ror-contact-confidentiality-level"
EXT_TELECOM_CONFIDENTIALITY = f"{IG_SD}/ror-telecom-confidentiality-level"
EXT_TELECOM_CHANNEL = f"{IG_SD}/ror-telecom-communication-channel"
TRE_R338_MODALITE_ACCUEIL = _tre("TRE_R338-ModaliteAccueil")
TRE_R245_SPECIALISATION = _tre("TRE_R245-SpecialisationDePriseEnCharge")
TRE_R244_CATEGORIE_ORGANISATION = _tre("TRE_R244-CategorieOrganisation")
TRE_R04_TYPE_SAVOIR_FAIRE = _tre("TRE_R04-TypeSavoirFaire")
# The IG scenarios spell R330 both StatutCapacite and TypeStatutCapacite; the first (scenario 4) is kept.
TRE_R330_STATUT_CAPACITE = _tre("TRE_R330-StatutCapacite")
TRE_R333_TYPE_FERMETURE_CAPACITE = _tre("TRE_R333-TypeFermetureCapacite")
# Équipement spécifique (JDV_J18 → TRE_R212), its limit's characteristic (JDV_J228 → TRE_R340) and the type
# d'habitation of a residential capacity (JDV_J32 → TRE_R242): data/README.md names the sources.
TRE_R212_EQUIPEMENT = _tre("TRE_R212-Equipement")
TRE_R340_TYPE_CARACTERISTIQUE_EQUIPEMENT = _tre("TRE_R340-TypeCaracteristiqueEquipement")
TRE_R242_TYPE_HABITATION = _tre("TRE_R242-TypeHabitation")
TRE_G07_TYPE_IDENTIFIANT_STRUCTURE = _tre("TRE_G07-TypeIdentifiantStructure")
TRE_R354_TYPE_IDENTIFIANT_RESSOURCE = _tre("TRE_R354-TypeIdentifiantRessourceOperationnelle")
# The IG alias spells this one with an underscore in its last segment (aliases.fsh); kept verbatim.
TRE_R345_TYPE_IDENTIFIANT_AUTRE = f"{NOS}/TRE_R345-TypeIdentifiantAutre/FHIR/TRE_R345-TypeIdentifiantAutre"
UCUM = "http://unitsofmeasure.org"

# Identifier systems (docs/ror-fhir-api.md §3.1, §3.4)
ID_NAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
FINESS = "https://finess.esante.gouv.fr"
SIRENE = "https://sirene.fr"  # the examples' https form (profile says http://; §7 lists the conflict)
OI = "https://oi.esante.gouv.fr"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
# [INFER] Production systems are not documented (ror-fhir-api.md §8): our own choices, documented.
OFFER = "https://ror.esante.gouv.fr/offre"
LOCATION = "https://ror.esante.gouv.fr/lieu"

# Identifier type codes (IG profiles ROROrganization.fsh, RORLocation.fsh)
G07_FINESS = ("1", "FINESS")
G07_SIREN = ("2", "SIREN")
G07_SIRET = ("3", "SIRET")
G07_ID_NAT_STRUCT = ("40", "Identifiant national de structure")
R345_OI = ("42", "Identifiant OI")
R354_ID_LOCATION = ("25", "Identifiant fonctionnel")

# Profiles (docs/ror-fhir-api.md §3) and extensions
PROFILE = {
    "Organization": f"{IG_SD}/ror-organization",
    "HealthcareService": f"{IG_SD}/ror-healthcareservice",
    "Location": f"{IG_SD}/ror-location",
    "PractitionerRole": f"{IG_SD}/ror-practitionerrole",
    "Practitioner": f"{IG_SD}/ror-practitioner",
}
EXT_CREATION_DATE = f"{IG_SD}/ror-meta-creation-date"
EXT_PATIENT_TYPE = f"{IG_SD}/ror-healthcareservice-patient-type"
EXT_SENSITIVE_UNIT = f"{IG_SD}/ror-healthcareservice-sensitive-unit"
EXT_ACT_TYPE = f"{IG_SD}/ror-act-type"
EXT_COMMUNE_COG = f"{IG_SD}/ror-commune-cog"
EXT_TERRITORIAL_DIVISION = f"{IG_SD}/ror-territorial-division"
EXT_SUPPORTED_CAPACITY = f"{IG_SD}/ror-location-supported-capacity"
EXT_EQUIPMENT = f"{IG_SD}/ror-location-equipment"
EXT_EQUIPMENT_LIMIT = f"{IG_SD}/ror-location-equipment-limit"  # nested in ror-location-equipment
EXT_RESIDENTIAL_CAPACITY = f"{IG_SD}/ror-location-residential-capacity"
EXT_UNIT_EXERCISE_MODE = f"{IG_SD}/ror-practitionerrole-unit-exercise-mode"
EXT_ORGANIZATION_PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"


def coding(system: str, code: str, display: str) -> dict[str, str]:
    """A FHIR Coding of a fixed code (the few codes the simulator writes without a code list)."""
    return {"system": system, "code": code, "display": display}


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    display: str  # "" when the source gives the code alone


@dataclass(frozen=True, slots=True)
class CodeList:
    """One code system's codes kept by the simulator, in file order."""

    system: str
    codes: tuple[Code, ...]

    def coding(self, code: Code) -> dict[str, str]:
        out = {"system": self.system, "code": code.code}
        if code.display:
            out["display"] = code.display
        return out

    def codes_set(self) -> frozenset[str]:
        return frozenset(c.code for c in self.codes)


def _read(file: str) -> list[dict[str, str]]:
    with (DATA_DIR / file).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _load(file: str, system: str, *, skip_closed: bool = False) -> CodeList:
    rows = _read(file)
    return CodeList(
        system,
        tuple(
            Code(row["code"], row["display"])
            for row in rows
            if not (skip_closed and row.get("closed") == "true")
        ),
    )


@dataclass(frozen=True, slots=True)
class Commune:
    cog: str
    name: str
    postal_code: str
    latitude: float  # where the simulator places the commune's locations (data/README.md)
    longitude: float


@dataclass(frozen=True, slots=True)
class Equipment:
    """One TRE_R212 equipment with where the simulator places it and the limit its display states
    (data/README.md: both are the simulator's choices [INFER], the code and display are the list's)."""

    code: Code
    champs: frozenset[str]  # TRE_R227 codes of the offers whose locations may hold it
    limit_feature: str  # TRE_R340 code of the limit the display states, "" when it states none
    limit_value: int
    limit_unit: str  # UCUM code


@dataclass(frozen=True, slots=True)
class CodeLists:
    """Every code list the dataset generator draws from."""

    regions: CodeList
    oi_types: CodeList
    champs: CodeList
    activities: CodeList
    care_modes: CodeList  # open codes only
    acts: CodeList
    eg_categories: CodeList
    legal_statuses: CodeList
    professions: CodeList
    exercise_modes: CodeList
    place_functions: CodeList
    modalities: CodeList  # characteristic[receptionModality]
    specialities: CodeList  # characteristic[takingCareSpeciality]
    offer_categories: CodeList  # category (typeOffre), searched as service-category
    expertise_types: CodeList  # PractitionerRole specialty[expertiseType]
    capacity_statuses: CodeList  # ror-location-supported-capacity capacityStatus
    capacity_closings: CodeList  # ror-location-supported-capacity capacityClosingType
    equipment_types: CodeList  # ror-location-equipment equipmentType
    equipments: tuple[Equipment, ...]  # the same codes, with placement and limit
    equipment_features: CodeList  # ror-location-equipment-limit equipmentFeature
    residential_types: CodeList  # ror-location-residential-capacity residentialType
    communes: tuple[Commune, ...]


def _equipments(rows: list[dict[str, str]]) -> tuple[Equipment, ...]:
    return tuple(
        Equipment(
            Code(row["code"], row["display"]),
            frozenset(row["champs"].split()),
            row["limit_feature"],
            int(row["limit_value"] or 0),
            row["limit_unit"],
        )
        for row in rows
    )


@cache
def code_lists() -> CodeLists:
    """The simulator's code lists, read once from `data/`."""
    return CodeLists(
        regions=_load("tre_r30_region.csv", TRE_R30_REGION),
        oi_types=_load("tre_r207_type_organisation_interne.csv", TRE_R207_TYPE_OI),
        champs=_load("tre_r227_champ_activite.csv", TRE_R227_CHAMP_ACTIVITE),
        activities=_load("tre_r211_activite_operationnelle.csv", TRE_R211_ACTIVITE_OPERATIONNELLE),
        care_modes=_load(
            "tre_r213_mode_prise_en_charge.csv", TRE_R213_MODE_PRISE_EN_CHARGE, skip_closed=True
        ),
        acts=_load("tre_r210_acte_specifique.csv", TRE_R210_ACTE_SPECIFIQUE),
        eg_categories=_load("tre_r66_categorie_etablissement.csv", TRE_R66_CATEGORIE_ETABLISSEMENT),
        legal_statuses=_load("tre_r72_statut_juridique.csv", TRE_R72_STATUT_JURIDIQUE),
        professions=_load("tre_g15_profession_sante.csv", TRE_G15_PROFESSION_SANTE),
        exercise_modes=_load("tre_r23_mode_exercice.csv", TRE_R23_MODE_EXERCICE),
        place_functions=_load("tre_r343_fonction_lieu.csv", TRE_R343_FONCTION_LIEU),
        modalities=_load("tre_r338_modalite_accueil.csv", TRE_R338_MODALITE_ACCUEIL),
        specialities=_load("tre_r245_specialisation_prise_en_charge.csv", TRE_R245_SPECIALISATION),
        offer_categories=_load("tre_r244_categorie_organisation.csv", TRE_R244_CATEGORIE_ORGANISATION),
        expertise_types=_load("tre_r04_type_savoir_faire.csv", TRE_R04_TYPE_SAVOIR_FAIRE),
        capacity_statuses=_load("tre_r330_statut_capacite.csv", TRE_R330_STATUT_CAPACITE),
        capacity_closings=_load("tre_r333_type_fermeture_capacite.csv", TRE_R333_TYPE_FERMETURE_CAPACITE),
        equipment_types=_load("tre_r212_equipement.csv", TRE_R212_EQUIPEMENT),
        equipments=_equipments(_read("tre_r212_equipement.csv")),
        equipment_features=_load(
            "tre_r340_type_caracteristique_equipement.csv", TRE_R340_TYPE_CARACTERISTIQUE_EQUIPEMENT
        ),
        residential_types=_load("tre_r242_type_habitation.csv", TRE_R242_TYPE_HABITATION),
        communes=tuple(
            Commune(
                row["code"],
                row["display"],
                row["postal_code"],
                float(row["latitude"]),
                float(row["longitude"]),
            )
            for row in _read("tre_r13_commune.csv")
        ),
    )
