"""The ROR national FHIR API simulator and its deterministic synthetic dataset."""
