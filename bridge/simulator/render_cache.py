"""Serialised resources of the simulator (simulator/): pages and `$export` files splice each resource's JSON
bytes, built and serialised once and kept up to a bound, so that a benchmark's upstream answers at the pace of
a real server rather than at the pace of building resources in Python (issue 13 item 3).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import orjson

from bridge.simulator.dataset import RESOURCE_TYPES, Dataset
from bridge.simulator.search import Key


class RenderCache:
    """Each resource as an `orjson.Fragment` (its exact bytes), the `capacity` most recently used kept; with
    capacity 0 nothing is kept and every call builds. Safe across threads (export files build in workers)."""

    def __init__(self, dataset: Dataset, capacity: int = 0) -> None:
        if capacity < 0:
            raise ValueError("the render cache capacity must be >= 0")
        self.dataset = dataset
        self.capacity = capacity
        self._kept: OrderedDict[Key, orjson.Fragment] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def warm(self) -> int:
        """Serialise resources up front, type after type, until the capacity is reached; how many."""
        for rtype in RESOURCE_TYPES:
            count = min(self.dataset.count(rtype), self.capacity - len(self._kept))
            index_keys = [(rtype, self.dataset.id_of(rtype, i)) for i in range(count)]
            self.rendered(index_keys)
        return len(self._kept)

    def rendered(self, keys: Sequence[Key]) -> list[tuple[Key, orjson.Fragment]]:
        """The resources of `keys` that exist, in order, each with its serialised form."""
        found: list[tuple[Key, orjson.Fragment]] = []
        for key in keys:
            with self._lock:
                fragment = self._kept.get(key)
                if fragment is not None:
                    self._kept.move_to_end(key)
            if fragment is None:
                resource = self.dataset.get(*key)
                if resource is None:
                    continue
                fragment = orjson.Fragment(orjson.dumps(resource))
                if self.capacity:
                    with self._lock:
                        self._kept[key] = fragment
                        while len(self._kept) > self.capacity:
                            self._kept.popitem(last=False)
            found.append((key, fragment))
        return found
