"""ROR CSD bridge: legacy IHE CSD v2.4 SOAP clients in front of the national ROR FHIR API."""

from bridge import hot_path as _hot_path

__version__ = "0.1.0"

# Before any module of the hot path is imported: compiled (`make compiled`) or not (bridge/hot_path.py).
_hot_path.guard()
