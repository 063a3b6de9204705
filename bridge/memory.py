"""Native memory hygiene of the serving process: fewer glibc malloc arenas, and freed memory handed back.

Leaf module, used by app.py. Under load the bridge's Python heap stays flat (tracemalloc, README "Soak"), but
glibc keeps the memory that lxml, SQLite spools and worker threads freed in per-thread arenas, so the RSS
crept up round after round. Capping the arenas and calling malloc_trim periodically keeps it flat. Elsewhere
than glibc (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # glibc mallopt parameter
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def cap_arenas() -> bool:
    """At most ARENA_MAX malloc arenas for the threads created from now on (True when glibc took it)."""
    return _LIBC is not None and bool(_LIBC.mallopt(M_ARENA_MAX, ARENA_MAX))


def release() -> bool:
    """Return the free memory at the top of the heaps and in the arenas to the system (malloc_trim(0))."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))
