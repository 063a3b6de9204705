"""The ROR national FHIR API simulator and its deterministic synthetic dataset (simulator/).

`dataset` generates and indexes the data, `search` evaluates FHIR searches, `paging` keeps HAPI-style
search snapshots, `bundle` and `capability` shape the answers, `app` serves them over HTTP.
"""
