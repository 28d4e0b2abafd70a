"""Warming: reload the hottest keys into the cache, each under the stampede lock (talks to Redis).

The keys come from the cache's own access counts (``TieredCache.hot_keys``) and their last
loaders; a key is only loaded when absent from L2, so several processes warming at start-up load
each key once between them.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from kit.cache.base import MISSING


@dataclass(frozen=True)
class WarmResult:
    keys: tuple[str, ...]
    loaded: int
    already_cached: int
    seconds: float
    latency_ms: dict[str, float] = field(default_factory=dict)

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "keys": len(self.keys),
                    "loaded": self.loaded,
                    "already_cached": self.already_cached,
                    "seconds": self.seconds,
                    **{f"{k}_ms": v for k, v in self.latency_ms.items()},
                }
            ]
        )


def warm(cache: Any, *, keys: list[str] | None = None, top: int = 50) -> WarmResult:
    """Load ``keys`` (default: the ``top`` hottest) with their registered loaders, under the lock."""
    keys = list(keys if keys is not None else cache.hot_keys(top))
    started, loaded, cached = time.perf_counter(), 0, 0
    saved_lock, cache.lock = cache.lock, cache.l2 is not None
    try:
        for key in keys:
            known = cache.loader_of(key)
            if known is None:
                continue
            loader, ttl, tags = known
            before = cache.stats.get("db", "loads")
            if cache.get(key) is MISSING:
                cache.get_or_load(key, loader, ttl=ttl, tags=tags)
            if cache.stats.get("db", "loads") > before:
                loaded += 1
            else:
                cached += 1
    finally:
        cache.lock = saved_lock
    return WarmResult(tuple(keys), loaded, cached, time.perf_counter() - started)


def cold_vs_warm(cache: Any, keys: list[str], *, repeat: int = 3) -> dict[str, float]:
    """Median ms per ``get_or_load`` over ``keys`` right after a flush (cold) and after warming."""

    def one_pass() -> float:
        t0 = time.perf_counter()
        for key in keys:
            loader, ttl, tags = cache.loader_of(key)
            cache.get_or_load(key, loader, ttl=ttl, tags=tags)
        return (time.perf_counter() - t0) * 1000 / max(len(keys), 1)

    cold, warm_ = [], []
    for _ in range(repeat):
        cache.clear()
        cold.append(one_pass())
        cache.clear()
        warm(cache, keys=keys)
        warm_.append(one_pass())
    return {"cold": statistics.median(cold), "warm": statistics.median(warm_)}
