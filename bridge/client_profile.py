"""The ROR access profile (0–3) of the client a transaction is answered for, as a context variable.

Leaf module: set by the trust circle (bridge/trust/gate.py) for each admitted request, read by whatever
answers it (the upstream `Ror-*` headers; the pipeline's answer filter, translate/access_profiles.py).
"""

from __future__ import annotations

from contextvars import ContextVar

# None: no allow-list; the bridge answers unfiltered, with its own profile (BRIDGE_ROR_PROFILE_CODE).
ACCESS_PROFILE: ContextVar[int | None] = ContextVar("bridge_access_profile", default=None)

PROFILES = (0, 1, 2, 3)


def current_profile() -> int | None:
    """The access profile of the client being answered, or None when no allow-list is in force."""
    return ACCESS_PROFILE.get()
