"""Counters of a cache, per level, as a plain dict, a DataFrame or Prometheus counters (pure).

Like psycopg_pool's ``get_stats()``/``pop_stats()``: ``snapshot()`` reads, ``pop()`` reads and
resets (handy per benchmark phase).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from prometheus_client.core import CounterMetricFamily

LEVELS = ("l1", "l2", "db")
EVENTS = (
    "hits",
    "misses",
    "sets",
    "evictions",
    "expirations",
    "invalidations_sent",
    "invalidations_received",
    "errors",
    "lock_waits",
    "stores_refused",
    "loads",
    "invalidation_failures",
    "invalidations_replayed",  # undelivered to Redis; delivered later
)
# Prometheus names follow the seed's `cache_hits_total` / `cache_misses_total`, with a level label.
_PROM_PREFIX = "cache_"


class CacheStats:
    """Thread-safe counters keyed by (level, event).

    ``lock`` is re-entrant and public so the L1 cache can guard its store with it too: a hit then
    takes one lock acquisition for the lookup and its counter (see :meth:`incr_held`).
    """

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.RLock()

    def incr(self, level: str, event: str, n: int = 1) -> None:
        with self.lock:
            self._counts[(level, event)] += n

    def incr_held(self, level: str, event: str) -> None:
        """:meth:`incr` by one, for a caller that already holds :attr:`lock`."""
        self._counts[(level, event)] += 1

    def get(self, level: str, event: str) -> int:
        with self.lock:
            return self._counts[(level, event)]

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{level: {event: count}}`` with every known level and event present."""
        with self.lock:
            return _as_dict(dict(self._counts))

    def pop(self) -> dict[str, dict[str, int]]:
        """The snapshot, then every counter back to zero."""
        with self.lock:
            counts = dict(self._counts)
            self._counts.clear()
        return _as_dict(counts)

    def hit_rate(self, level: str | None = None) -> float:
        """Hits over lookups at ``level``, or overall (any level's hit over all requests)."""
        snap = self.snapshot()
        if level is not None:
            hits, misses = snap[level]["hits"], snap[level]["misses"]
            return hits / (hits + misses) if hits + misses else 0.0
        hits = snap["l1"]["hits"] + snap["l2"]["hits"]
        total = hits + snap["db"]["loads"]
        return hits / total if total else 0.0

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.snapshot()).T.rename_axis("level")

    def export_prometheus(self, registry: Any) -> None:
        """Register ``cache_<event>_total{level=...}`` counters on ``registry`` reading these stats."""
        stats = self

        class _Collector:
            def collect(self):
                snap = stats.snapshot()
                for event in EVENTS:
                    fam = CounterMetricFamily(f"{_PROM_PREFIX}{event}", f"cache {event}", labels=["level"])
                    for level, counts in snap.items():
                        fam.add_metric([level], counts[event])
                    yield fam

        registry.register(_Collector())


def _as_dict(counts: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    levels = list(LEVELS) + sorted({lv for lv, _ in counts} - set(LEVELS))
    return {lv: {ev: counts.get((lv, ev), 0) for ev in EVENTS} for lv in levels}
