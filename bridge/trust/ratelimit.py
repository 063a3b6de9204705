"""Per-client request rates (`rate_per_minute` of the allow-list): a token bucket per client and process.

Part of trust/. With N worker processes each holds 1/N of the budget (rounded up), so the whole server
admits about `rate_per_minute` a minute however the kernel spreads connections.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """`take(key, rate)`: 0 when the request may go, else the seconds to wait before the next one."""

    def __init__(self, workers: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = max(1, workers)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str, rate_per_minute: int) -> int:
        capacity = max(1.0, math.ceil(rate_per_minute / self.workers))
        per_second = capacity / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / per_second))
