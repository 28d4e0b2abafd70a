"""A two-level cache that is never wrong: L1 in process, L2 in Redis, invalidation after commit.

from kit.cache import TieredCache, MISSING
cache = TieredCache(redis_url=redis_url, namespace="app")
project = cache.get_or_load(f"project:{pid}", lambda: load(pid), ttl=600, tags=[f"project:{pid}"])
"""

from __future__ import annotations

from kit.cache.base import MISSING, ManualClock, dumps, loads
from kit.cache.invalidation import AfterCommit
from kit.cache.l1 import L1Cache
from kit.cache.l2 import L2Cache
from kit.cache.stats import CacheStats
from kit.cache.tiered import CacheConfig, TieredCache
from kit.cache.warming import WarmResult, warm

__all__ = [
    "MISSING",
    "AfterCommit",
    "CacheConfig",
    "CacheStats",
    "L1Cache",
    "L2Cache",
    "ManualClock",
    "TieredCache",
    "WarmResult",
    "dumps",
    "loads",
    "warm",
]
