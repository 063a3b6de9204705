"""translate/: the pure mapping engine over the `mappings/` tables (no network, no web framework, no XML).

CSD request → FHIR query plan (`to_fhir_plan`), FHIR resources → CSD records (`from_fhir_results`).
"""

from bridge.translate.engine import from_fhir_results
from bridge.translate.loaders import load_mappings
from bridge.translate.plan import to_fhir_plan
from bridge.translate.report import coverage_report
from bridge.translate.tables import FunctionSpec, Mappings

__all__ = [
    "FunctionSpec",
    "Mappings",
    "coverage_report",
    "from_fhir_results",
    "load_mappings",
    "to_fhir_plan",
]
