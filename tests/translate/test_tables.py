"""Loading the tables: the shipped set loads; every broken table names its table, rule and path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bridge import ns
from bridge.errors import MappingTableError, UnknownFunctionError
from bridge.model import CsdRequest, Directory, Envelope, RequestForm, Transaction
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings
from bridge.translate.tables import ExtensionSpec

from .conftest import FIXTURES

BROKEN = FIXTURES / "mappings-broken"
CASES = sorted(p.name for p in BROKEN.iterdir() if p.is_dir())


def overlay(tmp_path: Path, case: str) -> Path:
    """A copy of the shipped tables with the case's broken files laid over it."""
    target = tmp_path / "mappings"
    shutil.copytree(shipped_dir("mappings"), target)
    for file in (BROKEN / case).rglob("*"):
        if file.is_file() and file.name != "expected.yaml":
            destination = target / file.relative_to(BROKEN / case)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, destination)
    return target


def test_there_are_broken_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES)
def test_broken_table_error_names_table_rule_and_path(case: str, tmp_path: Path) -> None:
    expected = yaml.safe_load((BROKEN / case / "expected.yaml").read_text(encoding="utf-8"))
    with pytest.raises(MappingTableError) as caught:
        load_mappings(overlay(tmp_path, case))
    error = caught.value
    assert (error.table, error.rule, error.path) == (expected["table"], expected["rule"], expected["path"])
    assert expected["problem"] in error.reason
    assert expected["table"] in str(error)


def test_shipped_tables_load(mappings: Mappings) -> None:
    assert set(mappings.entities) == {
        "organization",
        "internal-organization",
        "unit",
        "service",
        "provider",
        "device",
    }
    kinds = {name: (t.kind.name, t.resource, t.select) for name, t in mappings.entities.items()}
    assert kinds["organization"] == ("organization", "Organization", "establishment")
    assert kinds["internal-organization"] == ("facility", "Organization", "internal-organization")
    assert kinds["unit"] == ("facility", "HealthcareService", None)
    assert kinds["service"] == ("service", "HealthcareService", None)
    assert kinds["device"] == ("device", "Location", None)
    spec = mappings.function("urn:ror:csd:stored-function:internal-organization")
    assert spec.directories == frozenset(
        {Directory.ORGANIZATION, Directory.SERVICE, Directory.FACILITY, Directory.DEVICE}
    )
    assert mappings.timezone.key == "Europe/Paris"


def test_alias_and_unknown_urn(mappings: Mappings) -> None:
    canonical = mappings.function("urn:ror:csd:stored-function:internal-organization")
    assert mappings.function(" urn:ror:csd:stored-function:organisation-interne ") is canonical
    with pytest.raises(UnknownFunctionError) as caught:
        mappings.function("urn:ihe:iti:csd:2014:stored-function:teleport")
    assert caught.value.urn == "urn:ihe:iti:csd:2014:stored-function:teleport"


@pytest.mark.parametrize(
    ("envelope", "attribute", "expected"),
    [
        (Envelope.SOAP12, None, True),
        (Envelope.SOAP11, None, True),
        (Envelope.BARE, None, False),
        (Envelope.BARE, True, True),
        (Envelope.SOAP12, False, False),
    ],
)
def test_encapsulated_default_per_envelope(
    mappings: Mappings, envelope: Envelope, attribute: bool | None, expected: bool
) -> None:
    request = CsdRequest(Transaction.CARE_SERVICES, RequestForm.FUNCTION_URN_2014, encapsulated=attribute)
    assert mappings.encapsulated(request, envelope) is expected


def test_missing_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingTableError, match="mappings directory not found"):
        load_mappings(tmp_path / "nowhere")
    copy = tmp_path / "m"
    shutil.copytree(shipped_dir("mappings"), copy)
    (copy / "identities.yaml").unlink()
    with pytest.raises(MappingTableError) as caught:
        load_mappings(copy)
    assert caught.value.table == "identities.yaml"


def test_every_rule_has_a_note_and_every_system_row_a_source(mappings: Mappings) -> None:
    for table in mappings.entities.values():
        for rule in table.rules:
            assert rule.note.strip(), (table.table, rule.id)
    for row in mappings.systems.by_url.values():
        assert row.source
        # only OIDs checked against the NOS sources are shipped (nomenclatures-extract)
        assert (row.oid is None) == (row.confidence == "unknown")


def _with_tarif_extension(tmp_path: Path, spec: str) -> Path:
    """The shipped tables with the organisation's `price` rule's extension spec replaced by `spec`."""
    copy = tmp_path / "m"
    shutil.copytree(shipped_dir("mappings"), copy)
    table = copy / "entities" / "organization.yaml"
    text = table.read_text(encoding="utf-8")
    assert text.count("extension: {type: tarif}") == 1
    table.write_text(text.replace("extension: {type: tarif}", f"extension: {spec}"), encoding="utf-8")
    return copy


def _tarif_spec(mappings: Mappings) -> ExtensionSpec | None:
    return next(r.extension for r in mappings.entities["organization"].rules if r.id == "price")


def test_an_extension_spec_defaults_element_to_its_type_and_urn_to_ours(mappings: Mappings) -> None:
    assert _tarif_spec(mappings) == ExtensionSpec("tarif", ns.ROR_EXT, "tarif")


def test_the_explicit_extension_spec_still_holds(tmp_path: Path) -> None:
    loaded = load_mappings(_with_tarif_extension(tmp_path, "{type: price, urn: 'urn:x:y', element: tariff}"))
    assert _tarif_spec(loaded) == ExtensionSpec("price", "urn:x:y", "tariff")
    loaded = load_mappings(_with_tarif_extension(tmp_path / "2", "{type: price, element: tariff}"))
    assert _tarif_spec(loaded) == ExtensionSpec("price", ns.ROR_EXT, "tariff")


def test_a_type_that_cannot_be_the_element_is_refused_naming_the_type(tmp_path: Path) -> None:
    with pytest.raises(MappingTableError) as caught:
        load_mappings(_with_tarif_extension(tmp_path, "{type: 'tarif du jour'}"))
    assert caught.value.path.endswith("extension.type")
    assert "not an XML element name" in caught.value.reason
    loaded = load_mappings(_with_tarif_extension(tmp_path / "2", "{type: 'tarif du jour', element: tarif}"))
    assert _tarif_spec(loaded) == ExtensionSpec("tarif du jour", ns.ROR_EXT, "tarif")
