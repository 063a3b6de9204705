"""httpx event hooks on the national API client: the `Ror-*` headers of the client's access profile, and
the upstream calls (path, status) recorded in the running transaction's audit record.

Part of trust/. Hooks read context variables (bridge/client_profile.py, trust/audit.py) that the gate sets per
request and that asyncio copies into every task the request starts.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from bridge.client_profile import current_profile
from bridge.trust.audit import MAX_UPSTREAM_CALLS, current

HEADER_OF = {
    "ror_profile_code": "Ror-Profil-Utilisateur-Code",
    "ror_profile_system": "Ror-Profil-Utilisateur-System",
    "ror_role_code": "Ror-Role-Metier-Code",
    "ror_role_system": "Ror-Role-Metier-System",
}


class UpstreamHooks:
    """The request and response hooks for `FhirClient.add_event_hooks`."""

    def __init__(self, profile_headers: Mapping[int, Mapping[str, str]]) -> None:
        self.profile_headers = profile_headers

    async def on_request(self, request: httpx.Request) -> None:
        profile = current_profile()
        if profile is not None:
            for key, value in self.profile_headers.get(profile, {}).items():
                request.headers[HEADER_OF[key]] = value
        transaction = current()
        if transaction is not None:
            transaction.upstream_count += 1
            if len(transaction.upstream) < MAX_UPSTREAM_CALLS:
                # The path only: the query may hold search terms.
                entry: list[object] = [request.method, request.url.path, None]
                transaction.upstream.append(entry)
                request.extensions["bridge_audit_entry"] = entry

    async def on_response(self, response: httpx.Response) -> None:
        entry = response.request.extensions.get("bridge_audit_entry")
        if isinstance(entry, list):
            entry[2] = response.status_code
