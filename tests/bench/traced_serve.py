"""`ror-bridge` under tracemalloc (soak --tracemalloc): SIGUSR1 writes a snapshot to $SOAK_SNAPSHOT.N.

Used only by tests/bench/soak.py to find where the bridge's memory grows between two moments of a load run.
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
    tracemalloc.start(int(os.environ.get("SOAK_FRAMES", "12")))
    signal.signal(signal.SIGUSR1, _dump)
    sys.exit(main(sys.argv[1:]))
