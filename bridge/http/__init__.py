"""The HTTP surface of `serve`: one module per group of routes, wired by `bridge.app.create_app`.

`csd_routes` (POST /csd[/{region}], the WSDL and its schemas), `extraction_routes` (GET /extraction),
`health_routes` (/healthz, /readyz, /metrics), `streams` (answers still streaming), `middleware` (correlation)
and `wiring` (the objects the routes use, built by app.py from the settings).
"""
