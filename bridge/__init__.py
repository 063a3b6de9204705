"""ROR CSD bridge: legacy IHE CSD v2.4 SOAP clients in front of the national ROR FHIR API."""

__version__ = "0.1.0"
