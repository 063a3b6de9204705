"""Outbound edge: the national ROR FHIR API client."""
