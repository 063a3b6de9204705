"""`ror-bridge` for tests/bench/soak.py: under tracemalloc (SIGUSR1 writes a snapshot to $SOAK_SNAPSHOT.N), or
with bridge/memory.py switched off (SOAK_NO_RELEASE=1), to measure what it changes (A/B in the README).
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tracemalloc
from typing import Any

from bridge.cli import main

_numbers = itertools.count(1)


def _dump(_signum: int, _frame: Any) -> None:
    tracemalloc.take_snapshot().dump(f"{os.environ['SOAK_SNAPSHOT']}.{next(_numbers)}")


if __name__ == "__main__":
    if os.environ.get("SOAK_NO_RELEASE"):
        from bridge import memory

        memory.cap_arenas = memory.release = lambda: False  # type: ignore[assignment]
    if os.environ.get("SOAK_SNAPSHOT"):
        tracemalloc.start(int(os.environ.get("SOAK_FRAMES", "12")))
        signal.signal(signal.SIGUSR1, _dump)
    sys.exit(main(sys.argv[1:]))
